package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	k8sjson "sigs.k8s.io/json"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/crun-ci/crun-ci/cmdline"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/pod"
	"github.com/crun-ci/crun-ci/session"
)

const jobPath = "../../deploy/kubernetes/job.yaml"

// stepsFlags is the flag set `crun-ci steps` parses: its own flags and the global ones,
// as run binds them (their defaults read the environment now).
func stepsFlags(t *testing.T) *pflag.FlagSet {
	t.Helper()
	c := &cli{stdout: io.Discard, stderr: io.Discard, global: pflag.NewFlagSet("crun-ci", pflag.ContinueOnError)}
	c.f.AddGlobal(c.global)
	c.global.BoolVar(&c.debug, "debug", false, "")
	c.global.StringVar(&c.logFormat, "log-format", "text", "")
	for _, cmd := range c.commands() {
		if cmd.Name == "steps" {
			fs := cmdline.CommandFlags(cmd)
			fs.AddFlagSet(c.global)
			fs.SetOutput(io.Discard)
			return fs
		}
	}
	t.Fatal("no steps command")
	return nil
}

// placeholders are the CI systems' and Kubernetes' variables in a command line.
var placeholders = regexp.MustCompile(`\$\{\{[^}]*\}\}|\$\([A-Z_]+\)|\$\{?[A-Z_]+\}?`)

// checkInvocation parses args (after `crun-ci steps`, placeholders replaced) with the
// real flags of steps and checks that each flag of need is given; want are flags'
// values as written, placeholders and all. It returns the flags as written.
func checkInvocation(t *testing.T, where string, args []string, need []string, want map[string]string) *pflag.FlagSet {
	t.Helper()
	line := "crun-ci steps " + strings.Join(args, " ")
	fs := stepsFlags(t)
	dummy := make([]string, len(args))
	for i, a := range args {
		dummy[i] = placeholders.ReplaceAllString(a, "x")
	}
	if err := fs.Parse(dummy); err != nil {
		t.Fatalf("%s: %s: %v", where, line, err)
	}
	if fs.NArg() != 0 {
		t.Errorf("%s: arguments %q after the flags", where, fs.Args())
	}
	for _, name := range need {
		if !fs.Changed(name) {
			t.Errorf("%s: %s: no --%s", where, line, name)
		}
	}
	raw := stepsFlags(t)
	if err := raw.Parse(args); err != nil {
		t.Fatalf("%s: %s: %v", where, line, err)
	}
	for name, w := range want {
		if got, _ := raw.GetString(name); got != w {
			t.Errorf("%s: --%s %q, want %q", where, name, got, w)
		}
	}
	return raw
}

// crunciLine splits a shell line that runs `[sudo -E] crun-ci steps …` into the
// arguments after steps.
func crunciLine(t *testing.T, where, line string) []string {
	t.Helper()
	words, err := config.SplitCommand(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	i := slices.Index(words, "crun-ci")
	if i < 0 || i+1 >= len(words) || words[i+1] != "steps" {
		t.Fatalf("%s: %q does not run crun-ci steps", where, line)
	}
	return words[i+2:]
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeJob decodes a manifest as kubectl does: field names match exactly (encoding/json,
// and so sigs.k8s.io/yaml.UnmarshalStrict, would take hostPid for hostPID), unknown and
// duplicate fields are errors.
func decodeJob(data []byte) (*batchv1.Job, error) {
	j, err := k8syaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	var job batchv1.Job
	strict, err := k8sjson.UnmarshalStrict(j, &job, k8sjson.DisallowDuplicateFields, k8sjson.DisallowUnknownFields)
	if err := errors.Join(append(strict, err)...); err != nil {
		return nil, err
	}
	return &job, nil
}

func TestDeployKubernetesJobIsDecodedStrictly(t *testing.T) {
	manifest := string(readFile(t, jobPath))
	for _, tc := range []struct {
		name, old, new, err string
	}{
		{"a misspelt field is an error", "mountPropagation:", "mountPropogation:", `unknown field "spec.template.spec.containers[0].volumeMounts[2].mountPropogation"`},
		{"a field in the wrong case is an error", "hostPID:", "hostPid:", `unknown field "spec.template.spec.hostPid"`},
		{"a duplicate field is an error", "hostPID: true", "hostPID: true\n      hostPID: false", `"hostPID" already set in map`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(manifest, tc.old) {
				t.Fatalf("job.yaml has no %q to change", tc.old)
			}
			_, err := decodeJob([]byte(strings.Replace(manifest, tc.old, tc.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// The Kubernetes Job decodes strictly into the API's types, and asks for what the
// crun-ci image needs (README: "The crun-ci image").
func TestDeployKubernetesJob(t *testing.T) {
	job, err := decodeJob(readFile(t, jobPath))
	if err != nil {
		t.Fatalf("deploy/kubernetes/job.yaml: %v", err)
	}
	if job.APIVersion != "batch/v1" || job.Kind != "Job" {
		t.Errorf("%s/%s, want a batch/v1 Job", job.APIVersion, job.Kind)
	}
	spec := job.Spec.Template.Spec
	if !spec.HostPID || !spec.HostNetwork || spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("hostPID %v, hostNetwork %v, restartPolicy %q: want the host's PID and network namespaces, and no restart", spec.HostPID, spec.HostNetwork, spec.RestartPolicy)
	}
	if job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit != 0 {
		t.Error("backoffLimit is not 0: a failed build would run again")
	}
	var c, checkout *corev1.Container
	for i := range spec.Containers {
		if spec.Containers[i].Name == "crun-ci" {
			c = &spec.Containers[i]
		}
	}
	if len(spec.InitContainers) == 1 {
		checkout = &spec.InitContainers[0]
	}
	if c == nil || checkout == nil {
		t.Fatal("want a crun-ci container and one init container that checks out")
	}
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("the crun-ci container is not privileged")
	}

	hostPaths := map[string]*corev1.HostPathVolumeSource{}
	secrets := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath
		}
		secrets[v.Name] = v.Secret != nil
	}
	// mounts are a container's mounts by their path; hostPaths must be at their own.
	mounts := func(c *corev1.Container) map[string]corev1.VolumeMount {
		m := map[string]corev1.VolumeMount{}
		for _, vm := range c.VolumeMounts {
			m[vm.MountPath] = vm
			if hp, ok := hostPaths[vm.Name]; ok && hp.Path != vm.MountPath {
				t.Errorf("%s: hostPath %s is mounted at %s: runc on the node resolves crun-ci's paths, so want its own path", c.Name, hp.Path, vm.MountPath)
			}
		}
		return m
	}
	mounted, checkoutMounted := mounts(c), mounts(checkout)
	env := envOf(c)

	state := env["CRUNCI_STATE_DIR"]
	for _, p := range []string{"/run/containerd", "/var/lib/containerd", state, "/run/xtables.lock"} {
		if _, ok := mounted[p]; !ok {
			t.Errorf("%s is not mounted", p)
		}
	}
	if m := mounted[state]; m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationBidirectional {
		t.Errorf("the state directory %s is not mounted Bidirectional: the node would not see the network namespaces crun-ci mounts there", state)
	}
	for name, want := range map[string]corev1.HostPathType{state: corev1.HostPathDirectoryOrCreate, "/run/xtables.lock": corev1.HostPathFileOrCreate} {
		if hp := hostPaths[mounted[name].Name]; hp == nil || hp.Type == nil || *hp.Type != want {
			t.Errorf("hostPath %s: want type %s", name, want)
		}
	}
	if !strings.HasPrefix(env["CRUNCI_ADDRESS"], "/run/containerd/") {
		t.Errorf("CRUNCI_ADDRESS %q is not in the mounted /run/containerd", env["CRUNCI_ADDRESS"])
	}
	if ns := env["CRUNCI_NAMESPACE"]; ns == "" || ns == "k8s.io" {
		t.Errorf("CRUNCI_NAMESPACE %q: want a namespace of crun-ci's own, not kubelet's", ns)
	}
	if env["CRUNCI_CACHE_REGISTRY"] == "" {
		t.Error("no CRUNCI_CACHE_REGISTRY: nodes would not share the layer cache")
	}
	for _, name := range unreadEnv(t, env) {
		t.Errorf("%s: crun-ci steps takes no flag's default from it", name)
	}
	if m, ok := mounted[env["DOCKER_CONFIG"]]; !ok || !secrets[m.Name] {
		t.Errorf("DOCKER_CONFIG %q is not where a Secret is mounted: crun-ci would not find the registries' logins", env["DOCKER_CONFIG"])
	}

	if len(c.Args) == 0 || c.Args[0] != "steps" {
		t.Fatalf("args %q: want steps first", c.Args)
	}
	fs := checkInvocation(t, "job.yaml", c.Args[1:], []string{"dir", "junit"}, map[string]string{"tag": "$(GIT_BRANCH)", "ci-build-id": "$(BUILD_ID)"})
	dir, _ := fs.GetString("dir")
	if junit, _ := fs.GetString("junit"); !strings.HasPrefix(junit, dir+"/") {
		t.Errorf("--junit %s is not in the build directory %s", junit, dir)
	}
	// The checkout is the build directory: the same variables, the same node directory.
	checkoutEnv := envOf(checkout)
	for _, name := range []string{"BUILD_ID", "GIT_BRANCH"} {
		if checkoutEnv[name] != env[name] {
			t.Errorf("%s: checkout has %q, crun-ci %q", name, checkoutEnv[name], env[name])
		}
	}
	if len(checkout.Args) == 0 || checkout.Args[len(checkout.Args)-1] != dir {
		t.Errorf("checkout %q does not clone into --dir %s", checkout.Args, dir)
	}
	for who, m := range map[string]map[string]corev1.VolumeMount{"crun-ci": mounted, "checkout": checkoutMounted} {
		below := false
		for p, vm := range m {
			below = below || hostPaths[vm.Name] != nil && strings.HasPrefix(dir, p+"/")
		}
		if !below {
			t.Errorf("%s: --dir %s is not below a mounted hostPath", who, dir)
		}
	}
}

// envOf is a container's variables with a value.
func envOf(c *corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env
}

// unreadEnv are env's CRUNCI_ variables that no flag of steps takes its default from,
// besides those crun-ci reads elsewhere: a misspelt name would otherwise be ignored.
func unreadEnv(t *testing.T, env map[string]string) []string {
	t.Helper()
	defaults := func() map[string]string {
		d := map[string]string{}
		stepsFlags(t).VisitAll(func(f *pflag.Flag) { d[f.Name] = f.DefValue })
		return d
	}
	var names []string
	for name := range env {
		if strings.HasPrefix(name, "CRUNCI_") && name != pod.ContainerizedEnv && name != session.KeyEnv {
			names = append(names, name)
			t.Setenv(name, "")
		}
	}
	slices.Sort(names)
	base := defaults()
	var unread []string
	for _, name := range names {
		// A value of its own: the Job's may well be the default.
		probe := "/probe/" + name
		t.Setenv(name, probe)
		read := false
		for flag, v := range defaults() {
			read = read || v == probe && base[flag] != probe
		}
		t.Setenv(name, "")
		if !read {
			unread = append(unread, name)
		}
	}
	return unread
}

// The CI systems' examples run crun-ci steps with flags it has, with the branch, the
// CI system's build id, the shared cache and a JUnit report that is published.
func TestExampleCISnippets(t *testing.T) {
	need := []string{"junit", "tag", "ci-build-id", "cache-registry"}
	t.Run("gitlab", func(t *testing.T) {
		var jobs map[string]struct {
			Tags      []string
			Variables map[string]string
			Script    []string
			Artifacts struct {
				When    string
				Reports struct{ JUnit string }
			}
		}
		dec := yaml.NewDecoder(bytes.NewReader(readFile(t, "../../examples/ci/gitlab-ci.yml")))
		dec.KnownFields(true)
		if err := dec.Decode(&jobs); err != nil {
			t.Fatalf("gitlab-ci.yml: %v", err)
		}
		j, ok := jobs["test"]
		if !ok || len(j.Script) != 1 {
			t.Fatalf("gitlab-ci.yml: want a job test with one script line: %+v", jobs)
		}
		if !slices.Contains(j.Tags, "crun-ci") {
			t.Errorf("gitlab-ci.yml: tags %q, want crun-ci's runners", j.Tags)
		}
		fs := checkInvocation(t, "gitlab-ci.yml", crunciLine(t, "gitlab-ci.yml", j.Script[0]), need,
			map[string]string{"tag": "$CI_COMMIT_REF_NAME", "ci-build-id": "$CI_PIPELINE_ID"})
		if junit, _ := fs.GetString("junit"); j.Artifacts.Reports.JUnit != junit || j.Artifacts.When != "always" {
			t.Errorf("gitlab-ci.yml: the report %s is not published always (%+v)", junit, j.Artifacts)
		}
	})
	t.Run("github", func(t *testing.T) {
		var wf struct {
			Name string
			On   []string
			Jobs map[string]struct {
				RunsOn []string `yaml:"runs-on"`
				Steps  []struct {
					Name, Uses, Run, If string
					With                map[string]string
				}
			}
		}
		dec := yaml.NewDecoder(bytes.NewReader(readFile(t, "../../examples/ci/github-actions.yml")))
		dec.KnownFields(true)
		if err := dec.Decode(&wf); err != nil {
			t.Fatalf("github-actions.yml: %v", err)
		}
		j := wf.Jobs["test"]
		if !slices.Contains(j.RunsOn, "self-hosted") || !slices.Contains(j.RunsOn, "crun-ci") {
			t.Errorf("github-actions.yml: runs-on %q, want a self-hosted crun-ci runner", j.RunsOn)
		}
		var fs *pflag.FlagSet
		uploaded := false
		for _, s := range j.Steps {
			if strings.Contains(s.Run, "crun-ci") {
				fs = checkInvocation(t, "github-actions.yml", crunciLine(t, "github-actions.yml", s.Run), need,
					map[string]string{"tag": "${{ github.ref_name }}", "ci-build-id": "${{ github.run_id }}"})
			}
			if strings.HasPrefix(s.Uses, "actions/upload-artifact@") && s.If == "always()" && fs != nil {
				junit, _ := fs.GetString("junit")
				uploaded = slices.Contains(strings.Fields(s.With["path"]), junit)
			}
		}
		if fs == nil {
			t.Fatal("github-actions.yml: no step runs crun-ci")
		}
		if !uploaded {
			t.Error("github-actions.yml: the JUnit report is not uploaded always, after the crun-ci step")
		}
	})
	t.Run("jenkins", func(t *testing.T) {
		text := string(readFile(t, "../../examples/ci/Jenkinsfile"))
		sh := regexp.MustCompile(`(?m)^\s*sh '([^']*crun-ci[^']*)'`).FindStringSubmatch(text)
		if sh == nil {
			t.Fatal("Jenkinsfile: no sh step runs crun-ci")
		}
		fs := checkInvocation(t, "Jenkinsfile", crunciLine(t, "Jenkinsfile", sh[1]), need,
			map[string]string{"tag": "$BRANCH_NAME", "ci-build-id": "$BUILD_ID"})
		junit, _ := fs.GetString("junit")
		if !regexp.MustCompile(`(?s)post \{\s*always \{\s*junit '` + regexp.QuoteMeta(junit) + `'`).MatchString(text) {
			t.Errorf("Jenkinsfile: the report %s is not published in post { always { junit } }", junit)
		}
	})
}
