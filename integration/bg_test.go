package integration

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bgRun is a crun-ci process running in the background, its output collected line by
// line.
type bgRun struct {
	t      testing.TB
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout strings.Builder
	stderr bytes.Buffer
	lines  chan string
	done   chan struct{}
	// quiet keeps wait from logging the output (the chaos test runs hundreds).
	quiet bool
}

// start runs crun-ci with the suite's global flags (state dir and address as given) in
// the background.
func start(t testing.TB, state string, args ...string) *bgRun {
	t.Helper()
	full := append([]string{"--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", state}, args...)
	r := &bgRun{t: t, cmd: exec.Command(bin, full...), lines: make(chan string, 1<<16), done: make(chan struct{})}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stderr = &lockedWriter{mu: &r.mu, w: &r.stderr}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		for sc.Scan() {
			r.mu.Lock()
			r.stdout.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			select {
			case r.lines <- sc.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			r.cmd.Process.Kill()
			r.cmd.Wait()
		}
	})
	return r
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// waitFor waits until n output lines ending in suffix have been printed.
func (r *bgRun) waitFor(suffix string, n int) {
	r.t.Helper()
	deadline := time.After(60 * time.Second)
	for n > 0 {
		select {
		case l := <-r.lines:
			if strings.HasSuffix(l, suffix) {
				n--
			}
		case <-r.done:
			r.t.Fatalf("crun-ci ended before printing %q; stdout:\n%s", suffix, r.output())
		case <-deadline:
			r.t.Fatalf("no line ending in %q after 60s", suffix)
		}
	}
}

func (r *bgRun) signal(sig syscall.Signal) {
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatal(err)
	}
}

func (r *bgRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stdout.String()
}

// wait waits for the process and returns what it did.
func (r *bgRun) wait() result {
	r.t.Helper()
	<-r.done
	r.cmd.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	res := result{stdout: r.stdout.String(), stderr: r.stderr.String(), code: r.cmd.ProcessState.ExitCode()}
	if ws, ok := r.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.code = 128 + int(ws.Signal())
	}
	if !r.quiet {
		r.t.Logf("crun-ci %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.cmd.Args[1:], " "), res.code, res.stdout, res.stderr)
	}
	return res
}

// pidOf returns the pid in a pid file.
func pidOf(t testing.TB, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, c := range strings.TrimSpace(string(b)) {
		pid = pid*10 + int(c-'0')
	}
	return pid
}
