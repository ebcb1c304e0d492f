package pod

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The helper process runs Init, as a container's PID 1 would.
func init() {
	if os.Getenv("CRUNCI_INIT_HELPER") == "1" {
		code, err := Init(os.Args[1:])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(code)
	}
}

// initHelper starts Init with args in a process of its own.
func initHelper(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--"}, args...)...)
	cmd.Env = append(os.Environ(), "CRUNCI_INIT_HELPER=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func exitCodeOf(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatal(err)
	return -1
}

func TestInitReturnsTheCommandsStatus(t *testing.T) {
	for _, tt := range []struct {
		name   string
		script string
		want   int
	}{
		{"an exit status passes through", "exit 3", 3},
		{"success is 0", "true", 0},
		{"a signal that ends the command is 128 and it", "kill -KILL $$", 137},
		{"orphans are reaped, the command's status still counts", "(sleep 0.1 &); sleep 0.3; exit 4", 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCodeOf(t, initHelper(t, "sh", "-c", tt.script)); got != tt.want {
				t.Errorf("exit status %d, want %d", got, tt.want)
			}
		})
	}
}

// A signal to the init reaches the command.
func TestInitPassesSignalsOn(t *testing.T) {
	cmd := initHelper(t, "sh", "-c", `trap "exit 7" TERM; echo ready; while :; do sleep 0.05; done`)
	time.Sleep(300 * time.Millisecond) // the trap is set
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := exitCodeOf(t, cmd); got != 7 {
		t.Errorf("exit status %d, want 7 from the command's trap", got)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %s to end after SIGTERM", took)
	}
}

func TestInitWithoutACommand(t *testing.T) {
	cmd := exec.Command(os.Args[0], "--")
	cmd.Env = append(os.Environ(), "CRUNCI_INIT_HELPER=1")
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "want -- COMMAND") {
		t.Errorf("exit %d, %q", cmd.ProcessState.ExitCode(), out)
	}
}
