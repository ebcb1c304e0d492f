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
)

// stepsFlags is the flag set `crun-ci steps` parses: its own flags and the global ones,
// as run binds them.
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

// checkInvocation parses args (after `crun-ci steps`) with the real flags of steps,
// and checks that a CI build passes what the examples promise.
func checkInvocation(t *testing.T, where string, args []string) *pflag.FlagSet {
	t.Helper()
	for i, a := range args {
		args[i] = placeholders.ReplaceAllString(a, "x")
	}
	fs := stepsFlags(t)
	if err := fs.Parse(args); err != nil {
		t.Errorf("%s: crun-ci steps %s: %v", where, strings.Join(args, " "), err)
		return fs
	}
	if fs.NArg() != 0 {
		t.Errorf("%s: arguments %q after the flags", where, fs.Args())
	}
	for _, name := range []string{"junit", "tag", "ci-build-id"} {
		if !fs.Changed(name) {
			t.Errorf("%s: no --%s", where, name)
		}
	}
	return fs
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

// The Kubernetes Job decodes strictly into the API's types, and asks for what the
// crun-ci image needs (README: "The crun-ci image").
func TestDeployKubernetesJob(t *testing.T) {
	// As kubectl decodes: field names match exactly (encoding/json would take hostPid
	// for hostPID), unknown and duplicate fields are errors.
	var job batchv1.Job
	j, err := k8syaml.YAMLToJSONStrict(readFile(t, "../../deploy/kubernetes/job.yaml"))
	if err != nil {
		t.Fatalf("deploy/kubernetes/job.yaml: %v", err)
	}
	strict, err := k8sjson.UnmarshalStrict(j, &job, k8sjson.DisallowDuplicateFields, k8sjson.DisallowUnknownFields)
	if err := errors.Join(append(strict, err)...); err != nil {
		t.Fatalf("deploy/kubernetes/job.yaml: %v", err)
	}
	if job.APIVersion != "batch/v1" || job.Kind != "Job" {
		t.Errorf("%s/%s, want a batch/v1 Job", job.APIVersion, job.Kind)
	}
	pod := job.Spec.Template.Spec
	if !pod.HostPID || !pod.HostNetwork || pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("hostPID %v, hostNetwork %v, restartPolicy %q: want the host's PID and network namespaces, and no restart", pod.HostPID, pod.HostNetwork, pod.RestartPolicy)
	}
	if job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit != 0 {
		t.Error("backoffLimit is not 0: a failed build would run again")
	}
	var c *corev1.Container
	for i := range pod.Containers {
		if pod.Containers[i].Name == "crun-ci" {
			c = &pod.Containers[i]
		}
	}
	if c == nil {
		t.Fatal("no crun-ci container")
	}
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("the crun-ci container is not privileged")
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if ns := env["CRUNCI_NAMESPACE"]; ns == "" || ns == "k8s.io" {
		t.Errorf("CRUNCI_NAMESPACE %q: want a namespace of crun-ci's own, not kubelet's", ns)
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounted := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounted[m.MountPath] = m
		if p, ok := hostPaths[m.Name]; ok && p != m.MountPath {
			t.Errorf("hostPath %s is mounted at %s: runc on the node resolves crun-ci's paths, so want its own path", p, m.MountPath)
		}
	}
	state := env["CRUNCI_STATE_DIR"]
	for _, p := range []string{"/run/containerd", "/var/lib/containerd", state, "/run/xtables.lock"} {
		if _, ok := mounted[p]; !ok {
			t.Errorf("%s is not mounted", p)
		}
	}
	if m := mounted[state]; m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationBidirectional {
		t.Errorf("the state directory %s is not mounted Bidirectional: the node would not see the network namespaces crun-ci mounts there", state)
	}
	if !strings.HasPrefix(env["CRUNCI_ADDRESS"], "/run/containerd/") {
		t.Errorf("CRUNCI_ADDRESS %q is not in the mounted /run/containerd", env["CRUNCI_ADDRESS"])
	}
	if len(c.Args) == 0 || c.Args[0] != "steps" {
		t.Fatalf("args %q: want steps first", c.Args)
	}
	fs := checkInvocation(t, "job.yaml", slices.Clone(c.Args[1:]))
	dir, _ := fs.GetString("dir")
	if !strings.HasPrefix(dir, "/var/lib/crun-ci-builds/") {
		t.Errorf("--dir %s is not in the mounted build directories", dir)
	}
	if env["CRUNCI_CACHE_REGISTRY"] == "" {
		t.Error("no CRUNCI_CACHE_REGISTRY: nodes would not share the layer cache")
	}
}

// The CI systems' examples run crun-ci steps with flags it has, with the branch, the
// CI system's build id, the shared cache and a JUnit report that is published.
func TestExampleCISnippets(t *testing.T) {
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
		fs := checkInvocation(t, "gitlab-ci.yml", crunciLine(t, "gitlab-ci.yml", j.Script[0]))
		wantFlag(t, "gitlab-ci.yml", fs, "cache-registry")
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
		if !slices.Contains(j.RunsOn, "self-hosted") {
			t.Errorf("github-actions.yml: runs-on %q, want a self-hosted runner", j.RunsOn)
		}
		var fs *pflag.FlagSet
		uploaded := false
		for _, s := range j.Steps {
			if strings.Contains(s.Run, "crun-ci") {
				fs = checkInvocation(t, "github-actions.yml", crunciLine(t, "github-actions.yml", s.Run))
			}
			if strings.HasPrefix(s.Uses, "actions/upload-artifact@") && s.If == "always()" && fs != nil {
				junit, _ := fs.GetString("junit")
				uploaded = strings.Contains(s.With["path"], junit)
			}
		}
		if fs == nil {
			t.Fatal("github-actions.yml: no step runs crun-ci")
		}
		wantFlag(t, "github-actions.yml", fs, "cache-registry")
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
		fs := checkInvocation(t, "Jenkinsfile", crunciLine(t, "Jenkinsfile", sh[1]))
		wantFlag(t, "Jenkinsfile", fs, "cache-registry")
		junit, _ := fs.GetString("junit")
		if !regexp.MustCompile(`(?s)post \{\s*always \{\s*junit '` + regexp.QuoteMeta(junit) + `'`).MatchString(text) {
			t.Errorf("Jenkinsfile: the report %s is not published in post { always { junit } }", junit)
		}
	})
}

func wantFlag(t *testing.T, where string, fs *pflag.FlagSet, name string) {
	t.Helper()
	if !fs.Changed(name) {
		t.Errorf("%s: no --%s", where, name)
	}
}
