package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Without root, the commands that need it say so, and why, before anything else; those
// that do not (validate) work.
func TestWithoutRootCrunCISaysItNeedsRoot(t *testing.T) {
	requireRoot(t) // to become nobody
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("needs setpriv (util-linux): %v", err)
	}
	// A copy of the binary and a build directory that nobody can read.
	dir, err := os.MkdirTemp("/tmp", "crunci-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe := filepath.Join(dir, "crun-ci")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(exe, data, 0o755)
	os.WriteFile(filepath.Join(dir, "codeship-services.yml"), []byte("app:\n  image: busybox\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "codeship-steps.yml"), []byte("- {service: app, command: 'true'}\n"), 0o644)
	os.Chmod(dir, 0o755)
	nobody := func(args ...string) (int, string) {
		cmd := exec.Command("setpriv", append([]string{"--reuid=nobody", "--regid=nogroup", "--clear-groups", exe}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, stderr.String()
	}
	for _, args := range [][]string{{"steps", "--dir", dir}, {"cleanup"}, {"run", "--dir", dir, "app"}} {
		code, stderr := nobody(args...)
		if code != 2 || !strings.HasPrefix(stderr, "crun-ci: "+args[0]+" needs root: it runs containers through containerd") {
			t.Errorf("%q as nobody: exit %d, %q", args, code, stderr)
		}
	}
	if code, stderr := nobody("validate", "--dir", dir); code != 0 {
		t.Errorf("validate as nobody: exit %d, %q", code, stderr)
	}
}

// A command that is not in the image is named with the image and its PATH, not with
// runc's chain of errors.
func TestACommandNotInTheImageIsNamed(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml":    "- type: parallel\n  steps:\n  - {name: test, service: app, command: npm test}\n  - {name: abs, service: app, command: /opt/bin/tool}\n  - {name: notexec, service: app, command: /etc/passwd}\n",
	})
	r := runSteps(t, dir)
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout,
		`FAILED      test (app)`, `: "npm" not found in image busybox (PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)`+"\n",
		`: "/opt/bin/tool" not found in image busybox`+"\n",
		`: "/etc/passwd" is not executable in image busybox`+"\n")
	wantNotContains(t, "stdout", r.stdout, "OCI runtime", "runc")
}

// steps --dry-run prints the plan, with which images are present and which would be
// pulled, and makes nothing: no container, snapshot, lease or build directory.
func TestDryRunMakesNothing(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "db:\n  image: busybox\n  command: sleep 100\napp:\n  image: busybox\n  depends_on: [db]\n  volumes: [/scratch, ./out:/out]\nother:\n  image: registry.invalid/none:1\n",
		"codeship-steps.yml":    "- {name: test, service: app, command: make test}\n- {name: deploy, service: other, command: ./deploy, tag: master}\n- {name: elsewhere, service: other}\n",
		"out/":                  "",
	})
	before, _ := os.ReadDir(filepath.Join(stateDir, "builds"))
	r := runSteps(t, dir, "--dry-run")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout,
		"run test (app): make test\n",
		"  network: its own bridge, an address for each of its 2 containers\n",
		"  container db (dependency): busybox (present)\n",
		"  container app (the step's): busybox (present)\n",
		"    /scratch <- a new anonymous volume (",
		"    /out <- "+filepath.Join(dir, "out")+" (",
		"run deploy (other): skipped: tag master; pass --tag to run it\n",
		"  container other (the step's): registry.invalid/none:1 (to pull)\n")
	wantNotContains(t, "stdout", r.stdout, "PASSED", "build ")
	if after, _ := os.ReadDir(filepath.Join(stateDir, "builds")); len(after) != len(before) {
		t.Errorf("build directories: %d before, %d after", len(before), len(after))
	}
	// runSteps checked that no container, task, snapshot or lease of a build is there.
}

// On a terminal the prefixes line up and each service has a colour; NO_COLOR keeps them
// aligned, without colour; a pipe gets them as written.
func TestPrefixesOnATerminal(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatalf("needs script (bsdutils): %v", err)
	}
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml":    "- {name: a, service: app, command: echo short}\n- {name: a-longer-step, service: app, command: echo long}\n",
	})
	onTTY := func(env ...string) string {
		line := strings.Join([]string{bin, "--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", stateDir, "steps", "--dir", dir}, " ")
		cmd := exec.Command("script", "-qec", line, "/dev/null")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		return strings.ReplaceAll(string(out), "\r\n", "\n")
	}
	out := onTTY("TERM=xterm")
	if !regexp.MustCompile("\x1b\\[[0-9]+ma/app {12}\x1b\\[0m \\| short\n").MatchString(out) || !regexp.MustCompile("\x1b\\[[0-9]+ma-longer-step/app\x1b\\[0m \\| long\n").MatchString(out) {
		t.Errorf("not aligned and coloured on a terminal:\n%q", out)
	}
	out = onTTY("TERM=xterm", "NO_COLOR=1")
	wantContains(t, "output", out, "a/app             | short\n", "a-longer-step/app | long\n")
	wantNotContains(t, "output", out, "\x1b[")
	r := runSteps(t, dir)
	wantContains(t, "stdout", r.stdout, "a/app | short\n")
}

// crun-ci spec SERVICE: the runtime spec a step's container of the service gets, as
// JSON, with no secret value in it; nothing of the build is left.
func TestSpecPrintsTheRuntimeSpecWithoutSecrets(t *testing.T) {
	requireRoot(t)
	const secret = "s3cr3t-spec-value-42"
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  command: ./run tests\n  working_dir: /src\n  environment: {PLAIN: visible, ALSO: " + secret + "}\n  encrypted_env_file: secret.env.encrypted\n  volumes: [./src:/src, /cache]\n",
		"plain-secret.env":      "TOKEN=" + secret + "\n",
		"src/":                  "",
	})
	if r := crunci(t, "generate", "--dir", dir); r.code != 0 {
		t.Fatalf("generate: exit %d", r.code)
	}
	if r := crunci(t, "encrypt", "--dir", dir, filepath.Join(dir, "plain-secret.env"), filepath.Join(dir, "secret.env.encrypted")); r.code != 0 {
		t.Fatalf("encrypt: exit %d", r.code)
	}
	os.Remove(filepath.Join(dir, "plain-secret.env"))
	r := crunci(t, "spec", "--dir", dir, "app")
	wantCode(t, r, 0)
	var spec struct {
		Process struct {
			Args []string `json:"args"`
			Env  []string `json:"env"`
			Cwd  string   `json:"cwd"`
		} `json:"process"`
		Mounts []struct {
			Destination string `json:"destination"`
			Source      string `json:"source"`
		} `json:"mounts"`
		Linux struct {
			Seccomp *struct{} `json:"seccomp"`
		} `json:"linux"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &spec); err != nil {
		t.Fatalf("not a spec: %v\n%s", err, r.stdout)
	}
	if spec.Process.Cwd != "/src" || !slices.Contains(spec.Process.Env, "PLAIN=visible") || !slices.Contains(spec.Process.Env, "ALSO=***") || spec.Linux.Seccomp == nil {
		t.Errorf("process %+v, seccomp %v", spec.Process, spec.Linux.Seccomp)
	}
	if n := len(spec.Process.Args); n < 2 || spec.Process.Args[n-2] != "./run" || spec.Process.Args[n-1] != "tests" {
		t.Errorf("args %q", spec.Process.Args)
	}
	var dests []string
	for _, m := range spec.Mounts {
		dests = append(dests, m.Destination)
	}
	if !slices.Contains(dests, "/src") || !slices.Contains(dests, "/cache") {
		t.Errorf("mounts %q", dests)
	}
	wantNotContains(t, "spec", r.stdout+r.stderr, secret)
	assertClean(t)
}
