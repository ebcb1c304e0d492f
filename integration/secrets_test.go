package integration

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestEncryptedEnvironmentReachesTheStepMaskedAndNowhereElse(t *testing.T) {
	requireRoot(t)
	const secret = "hunter2-S3CRET-value"
	dir := project(t, map[string]string{
		"codeship-services.yml": `
app:
  image: busybox
  environment: {FROM_ENV: plain, OVERRIDDEN: environment}
  env_file: plain.env
  encrypted_env_file: secret.env.encrypted
`,
		"codeship-steps.yml": `- {name: show, service: app, command: "sh -c 'echo token=$TOKEN; echo $OVERRIDDEN $FROM_FILE $FROM_ENV; test ${#TOKEN} = 20 && echo length ok'"}` + "\n",
		"plain.env":          "FROM_FILE=file\nOVERRIDDEN=env_file\n",
		"plain-secret.env":   "TOKEN=" + secret + "\nOVERRIDDEN=encrypted\n",
	})
	if r := crunci(t, "generate", "--dir", dir); r.code != 0 {
		t.Fatalf("generate: exit %d", r.code)
	}
	if r := crunci(t, "encrypt", "--dir", dir, filepath.Join(dir, "plain-secret.env"), filepath.Join(dir, "secret.env.encrypted")); r.code != 0 {
		t.Fatalf("encrypt: exit %d", r.code)
	}
	os.Remove(filepath.Join(dir, "plain-secret.env"))

	r := runSteps(t, dir, "--debug", "--log-format", "json")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "show/app | token=***\n", "show/app | *** file plain\n" /* OVERRIDDEN: encrypted_env_file wins over env_file and environment, and is masked */, "show/app | length ok\n")
	for what, text := range map[string]string{"stdout": r.stdout, "stderr (--debug, json)": r.stderr} {
		if strings.Contains(text, secret) {
			t.Errorf("the secret is in %s", what)
		}
	}
	// Nothing crun-ci keeps of the build holds it: build directories are gone, and no
	// file of crun-ci's own state (outside containerd's root) has it.
	filepath.Walk(stateDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || strings.HasPrefix(p, filepath.Join(stateDir, "containerd")) {
			return nil
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
			t.Errorf("the secret is in %s", p)
		}
		return nil
	})

	// Without the key, the build stops before anything starts, naming the file.
	os.Remove(filepath.Join(dir, "codeship.aes"))
	r = runSteps(t, dir)
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `codeship-services.yml:6: service "app": secret.env.encrypted needs the key, which is not there (no key file `+filepath.Join(dir, "codeship.aes")+` and CRUNCI_AES_KEY is not set)`)
}

func TestCIVariablesComeFromTheGitRepository(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml": `
- {name: vars, service: app, command: "sh -c 'echo $CI_BRANCH/$CI_COMMIT_ID/$CI_COMMITTER_NAME/$CI_REPO_NAME/$CI_COMMIT_MESSAGE/$CI_PULL_REQUEST'"}
- {name: only-on-feature, service: app, tag: feature/x, command: echo tag from git}
`,
	})
	commit := commitAll(t, dir, "feature/x", "first commit")

	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout,
		"vars/app | feature/x/"+commit+"/Ada/"+filepath.Base(dir)+"/first commit/false\n",
		// As jet: the branch is CI_BRANCH, but steps with a tag need --tag.
		"SKIPPED     only-on-feature (app): tag feature/x; pass --tag to run it\n")
	r = runSteps(t, dir, "--tag", "feature/x")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "only-on-feature/app | tag from git\n")

	r = runSteps(t, dir, "--ci-branch", "main", "--ci-committer-name", "Bob", "--tag", "release")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "vars/app | main/"+commit+"/Bob/")
	wantNotContains(t, "stdout", r.stdout, "only-on-feature/app")
}

// A decrypted value never reaches containerd's record of the container or the task's
// bundle: the process gets it through a FIFO when it starts.
func TestSecretVariablesStayOutOfTheRuntimeSpec(t *testing.T) {
	requireRoot(t)
	const secret = "n0t-in-any-spec-4711"
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  user: nobody\n  encrypted_env_file: secret.env.encrypted\n",
		"codeship-steps.yml":    "- {name: hold, service: app, command: \"sh -c 'test ${#TOKEN} = 20 && echo got it; echo started; sleep 2'\"}\n",
		"plain.env":             "TOKEN=" + secret + "\n",
	})
	crunci(t, "generate", "--dir", dir)
	crunci(t, "encrypt", "--dir", dir, filepath.Join(dir, "plain.env"), filepath.Join(dir, "secret.env.encrypted"))
	os.Remove(filepath.Join(dir, "plain.env"))

	run := start(t, stateDir, "steps", "--dir", dir)
	run.waitFor("hold/app | started", 1)
	ctrs, err := ctrd.Client.Containers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ctrs) == 0 {
		t.Fatal("no container while the step runs")
	}
	for _, c := range ctrs {
		spec, err := c.Spec(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(spec)
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("the secret is in the spec of %s", c.ID())
		}
	}
	filepath.Walk(stateDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && info.Size() < 64<<20 {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
				t.Errorf("the secret is on disk in %s", p)
			}
		}
		return nil
	})
	r := run.wait()
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "hold/app | got it\n")
	assertClean(t)
}

// encrypted_environment as one string (not a list), as Codeship's pages write it.
func TestEncryptedEnvironmentAsOneString(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml":    "- {name: one, service: app, command: \"sh -c 'echo ${#SECRET}'\"}\n",
		"plain.env":             "SECRET=twelve-chars\n",
	})
	crunci(t, "generate", "--dir", dir)
	crunci(t, "encrypt", "--dir", dir, filepath.Join(dir, "plain.env"), filepath.Join(dir, "plain.encrypted"))
	enc, err := os.ReadFile(filepath.Join(dir, "plain.encrypted"))
	if err != nil {
		t.Fatal(err)
	}
	services := "app:\n  image: busybox\n  encrypted_environment: |\n"
	for _, line := range strings.Split(strings.TrimSpace(string(enc)), "\n") {
		services += "    " + line + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "codeship-services.yml"), []byte(services), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "one/app | 12\n")
}

// crun-ci as `go install` builds it where a C compiler is (dynamically linked, cgo)
// still hands secret variables over and is the init, in an image without the host's C
// library: its interpreter and libraries come along.
func TestADynamicallyLinkedCrunCIHandsSecretsAndInits(t *testing.T) {
	requireRoot(t)
	dyn := filepath.Join(t.TempDir(), "crun-ci")
	build := exec.Command("go", "build", "-o", dyn, "github.com/crun-ci/crun-ci/cmd/crun-ci")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build with cgo (needs a C compiler: apt-get install gcc): %v\n%s", err, out)
	}
	f, err := elf.Open(dyn)
	if err != nil {
		t.Fatal(err)
	}
	dynamic := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
	f.Close()
	if !dynamic {
		t.Fatal("the cgo build is statically linked: nothing to test")
	}
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  init: true\n  encrypted_env_file: secret.env.encrypted\n",
		"codeship-steps.yml":    `- {name: show, service: app, command: "sh -c 'echo len=${#TOKEN}; cat /proc/1/cmdline | tr \"\\0\" \" \"; echo'"}` + "\n",
		"plain.env":             "TOKEN=dynamic-secret\n",
	})
	wantCode(t, crunci(t, "generate", "--dir", dir), 0)
	wantCode(t, crunci(t, "encrypt", "--dir", dir, filepath.Join(dir, "plain.env"), filepath.Join(dir, "secret.env.encrypted")), 0)
	os.Remove(filepath.Join(dir, "plain.env"))
	cmd := exec.Command(dyn, "--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", stateDir, "steps", "--dir", dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the dynamically linked crun-ci: %v\n%s", err, out)
	}
	wantContains(t, "output", string(out), "show/app | len=14\n", "show/app | /.crun-ci/lib/ld.so --library-path /.crun-ci/lib /.crun-ci/crun-ci init -- ")
	assertClean(t)
}
