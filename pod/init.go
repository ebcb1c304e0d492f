package pod

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/crun-ci/crun-ci/secrets"
)

// Helper runs crun-ci as a container's process, not for people: mode exec-env is
// `crun-ci exec-env FIFO -- COMMAND [ARGS…]` (secrets.ExecEnv), mode init is
// `crun-ci init -- COMMAND [ARGS…]` (Init). It returns the exit status: the command's, 2
// for bad usage, having said on stderr why there is no command to run.
func Helper(mode string, args []string, stderr io.Writer) int {
	if mode == "init" {
		code, err := Init(args)
		if err != nil {
			fmt.Fprintln(stderr, "crun-ci "+err.Error())
		}
		return code
	}
	err := secrets.ExecEnv(args) // returns only when it could not exec
	if err == nil {
		return 0
	}
	ee := &secrets.ExecError{Code: 1, Err: err}
	errors.As(err, &ee)
	msg := ee.Error() // a shell's way: "app: not found"
	if ee.Code == 2 {
		msg = "crun-ci: " + msg
	}
	fmt.Fprintln(stderr, msg)
	return ee.Code
}

// Init is `crun-ci init -- COMMAND [ARGS…]`, PID 1 of a container whose service has
// `init: true` (as Docker's --init runs tini): it starts the command as its child, passes
// every signal it gets on to it (so that SIGTERM stops a server that, as PID 1, would
// ignore it), reaps every process that ends (orphans are reparented to it), and returns
// the command's exit status (128 + the signal, when a signal ended it) once the command
// has ended. Not for people.
func Init(args []string) (int, error) {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		return 2, errors.New("init: want -- COMMAND [ARGS…]")
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return 127, fmt.Errorf("init: %w", err)
	}
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs) // every signal that can be caught, SIGCHLD too
	child, err := os.StartProcess(path, args, &os.ProcAttr{
		Env:   os.Environ(),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		// Its own process group with the terminal, if there is one, as tini does.
		Sys: &syscall.SysProcAttr{Setpgid: true, Foreground: isTerminal(os.Stdin)},
	})
	if err != nil {
		return 126, fmt.Errorf("init: start %s: %w", args[0], err)
	}
	for s := range sigs {
		if s != unix.SIGCHLD {
			child.Signal(s)
			continue
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err != nil || pid <= 0 {
				break
			}
			if pid != child.Pid {
				continue // an orphan, reaped
			}
			if ws.Signaled() {
				return 128 + int(ws.Signal()), nil
			}
			return ws.ExitStatus(), nil
		}
	}
	return 1, errors.New("init: signals ended")
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
