package integration

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crun-ci/crun-ci/ociarchive"
)

func TestImportLoadsDockerSaveArchives(t *testing.T) {
	requireRoot(t)
	files, err := ociarchive.Busybox(ociarchive.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, ociarchive.File{Path: "/marker", Mode: 0o644, Data: []byte("from a docker save archive\n")})
	archive := filepath.Join(t.TempDir(), "saved.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := ociarchive.WriteDockerSave(f, ociarchive.Image{Name: "crunci/dockersave:2", Config: ociarchive.BusyboxConfig(), Files: files}); err != nil {
		t.Fatal(err)
	}
	f.Close()

	r := crunci(t, "import", archive)
	wantCode(t, r, 0)
	if got := strings.TrimSpace(r.stdout); got != "docker.io/crunci/dockersave:2" {
		t.Errorf("import printed %q, want docker.io/crunci/dockersave:2", got)
	}
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: crunci/dockersave:2\n",
		"codeship-steps.yml":    "- service: app\n  command: cat /marker\n",
	})
	r = runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "app_1/app | from a docker save archive\n")
}

func TestImportOfANonArchiveFailsClearly(t *testing.T) {
	requireRoot(t)
	bad := filepath.Join(t.TempDir(), "not-an-archive.tar")
	if err := os.WriteFile(bad, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := crunci(t, "import", bad)
	if r.code == 0 {
		t.Fatal("import of a non-archive succeeded")
	}
	wantContains(t, "stderr", r.stderr, "crun-ci: import "+bad+": not a tar archive (")
	// A tar, but of no image; one cut short.
	tarOfText := filepath.Join(t.TempDir(), "text.tar")
	if out, err := exec.Command("tar", "cf", tarOfText, "-C", filepath.Dir(bad), filepath.Base(bad)).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	r = crunci(t, "import", tarOfText)
	wantContains(t, "stderr", r.stderr, "crun-ci: import "+tarOfText+": a tar archive, but of neither an OCI image layout (index.json) nor docker save (manifest.json)")
	files, err := ociarchive.Busybox(ociarchive.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	var whole bytes.Buffer
	if err := ociarchive.WriteDockerSave(&whole, ociarchive.Image{Name: "crunci/cut:1", Config: ociarchive.BusyboxConfig(), Files: files}); err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.tar")
	os.WriteFile(cut, whole.Bytes()[:whole.Len()/2], 0o644)
	r = crunci(t, "import", cut)
	wantContains(t, "stderr", r.stderr, "crun-ci: import "+cut+": the archive is cut short")
	gz := filepath.Join(t.TempDir(), "saved.tar.gz")
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(whole.Bytes())
	zw.Close()
	os.WriteFile(gz, zipped.Bytes(), 0o644)
	r = crunci(t, "import", gz)
	wantContains(t, "stderr", r.stderr, "crun-ci: import "+gz+": a compressed file (gz): import takes the uncompressed tar")
	r = crunci(t, "import", bad+".missing")
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, "no such file or directory")
}

// An interrupted build stops its running steps (SIGTERM, then SIGKILL after
// --stop-timeout), removes everything, says which steps were interrupted and exits with
// 128 + the signal.
func TestInterruptStopsRunningStepsAndCleansUp(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  volumes: [/scratch, ./out:/out]\n",
		"codeship-steps.yml": `
- type: parallel
  steps:
  - name: traps
    service: app
    command: sh -c 'trap "echo got TERM; echo trapped > /out/trap; exit 7" TERM; echo started; while true; do sleep 0.1; done'
  - name: ignores
    service: app
    command: sh -c 'echo started; sleep 60'
- name: later
  service: app
  command: touch /out/later
`,
		"out/": "",
	})
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			run := start(t, stateDir, "steps", "--dir", dir, "--stop-timeout", "1s", "--max-parallel", "2")
			run.waitFor("| started", 2)
			sent := time.Now()
			run.signal(tc.sig)
			r := run.wait()
			elapsed := time.Since(sent)
			code, stdoutText := r.code, r.stdout
			// The step's TERM handler ran: it got the grace period, not a SIGKILL.
			if b, err := os.ReadFile(filepath.Join(dir, "out", "trap")); err != nil || string(b) != "trapped\n" {
				t.Errorf("trap file: %q, %v", b, err)
			}
			os.Remove(filepath.Join(dir, "out", "trap"))
			if code != tc.code {
				t.Errorf("exit status %d, want %d", code, tc.code)
			}
			wantContains(t, "stdout", stdoutText,
				"traps/app | got TERM\n",
				"INTERRUPTED traps (app)", "INTERRUPTED ignores (app)",
				"NOT RUN     later (app): the build was interrupted")
			// It says what it does, and how to hurry it.
			wantContains(t, "stderr", r.stderr, "interrupted: stopping 2 running steps, up to 1s each; interrupt again (Ctrl-C) to kill them")
			if elapsed > 15*time.Second {
				t.Errorf("stopping took %s; the stop timeout is 1s", elapsed)
			}
			if _, err := os.Stat(filepath.Join(dir, "out", "later")); err == nil {
				t.Error("the step after the interrupted group ran")
			}
			assertClean(t)
		})
	}
}
