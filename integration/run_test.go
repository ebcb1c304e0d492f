package integration

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunRunsOneServiceWithItsDependencies(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
data:
  image: busybox
  volumes: [/shared]
helper:
  image: busybox
  volumes_from: [data]
  command: sh -c 'echo from the helper > /shared/note; exec sleep 60'
app:
  image: busybox
  volumes_from: [data]
  depends_on: [helper]
  command: sh -c 'sleep 0.5; cat /shared/note; echo default command'
`,
	})
	run := func(stdin string, args ...string) result {
		t.Helper()
		full := append([]string{"--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", stateDir, "run", "--dir", dir, "--stop-timeout", "1s"}, args...)
		cmd := exec.Command(bin, full...)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run()
		r := result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
		t.Logf("crun-ci run %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		assertClean(t)
		return r
	}

	// Without a command: the service's own, its output unprefixed, the dependency's
	// prefixed.
	r := run("", "app")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "from the helper\ndefault command\n")
	wantNotContains(t, "stdout", r.stdout, "app | ", "build ")

	// With a command: its exit status is crun-ci's, and standard input reaches it.
	r = run("typed input\n", "--quiet-deps", "app", "sh", "-c", "cat; exit 7")
	wantCode(t, r, 7)
	if r.stdout != "typed input\n" {
		t.Errorf("stdout %q, want the input echoed", r.stdout)
	}

	// --entrypoint and -e.
	r = run("", "-e", "WHO=world", "--entrypoint", "sh -c", "app", `echo "hello $WHO"`)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "hello world\n")

	r = run("", "nope")
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `crun-ci: run: no service "nope" in codeship-services.yml`)
}

// crun-ci run gives a built service's build arguments the same template values as steps:
// {{ .Branch }} is the git repository's branch (it rendered empty under run).
func TestRunRendersBuildArgumentTemplatesFromGit(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  build:\n    image: crunci/run-templates:1\n    args:\n      VERSION: \"{{ .Branch }}-{{ .ServiceName }}\"\n",
		"Dockerfile":            "FROM busybox\nARG VERSION\nRUN echo \"version=$VERSION\" > /v\n",
	})
	commitAll(t, dir, "feature-x", "first")
	r := crunci(t, "run", "--dir", dir, "--no-cache", "app", "cat", "/v")
	assertClean(t)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "version=feature-x-app\n")
}
