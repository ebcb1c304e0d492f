package secrets

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The hand-off moves secret environment variables into a container without writing them
// into its runtime spec, which containerd keeps on disk. crun-ci makes a FIFO (which
// holds no data on disk), keeps it open for reading and writing so that what it writes
// waits in the pipe, writes Encode's output to it, and runs the container's process as
// `crun-ci exec-env FIFO -- ARGS…`; that reads Decode's input from the FIFO (mounted into
// the container) and execs ARGS with the variables added to its environment.

// EncodeEnv returns entries (KEY=VALUE) as the hand-off writes them: a decimal length
// and a newline, then the entries, each ended by a NUL byte.
func EncodeEnv(entries []string) []byte {
	var body bytes.Buffer
	for _, e := range entries {
		body.WriteString(e)
		body.WriteByte(0)
	}
	return append([]byte(strconv.Itoa(body.Len())+"\n"), body.Bytes()...)
}

// DecodeEnv reads what EncodeEnv wrote, and no more (the writer keeps the FIFO open).
func DecodeEnv(r io.Reader) ([]string, error) {
	br := bufio.NewReader(r)
	head, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("read secret environment: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(head))
	if err != nil || n < 0 || n > 64<<20 {
		return nil, errors.New("read secret environment: bad length")
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, fmt.Errorf("read secret environment: %w", err)
	}
	var out []string
	for _, e := range bytes.Split(body, []byte{0}) {
		if len(e) > 0 {
			out = append(out, string(e))
		}
	}
	return out, nil
}

// ReadEnvFile reads the hand-off from the FIFO at path.
func ReadEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read secret environment: %w", err)
	}
	defer f.Close()
	return DecodeEnv(f)
}

// Where the hand-off appears inside a container: crun-ci's own executable and the FIFO.
const (
	HandoffExe  = "/.crun-ci/crun-ci"
	HandoffFIFO = "/.crun-ci/env"
)

// Handoff is the FIFO through which one container gets its secret variables.
type Handoff struct {
	// Path is the FIFO's host path, to mount at HandoffFIFO.
	Path string
	f    *os.File
	// wrote receives the result of the write.
	wrote chan error

	closeOnce sync.Once
	closeErr  error
}

// NewHandoff makes the FIFO at path, owned by uid and gid (the container's user, who
// reads it), opens it for reading and writing, so that what it holds waits in the pipe,
// in memory, until the process reads it, and writes env into it. Close it once the
// container has ended.
func NewHandoff(path string, uid, gid int, env []string) (*Handoff, error) {
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return nil, fmt.Errorf("make the secret hand-off: %w", err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("make the secret hand-off: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("open the secret hand-off: %w", err)
	}
	h := &Handoff{Path: path, f: f, wrote: make(chan error, 1)}
	data := EncodeEnv(env)
	// More than a pipe holds waits for the reader.
	go func() {
		_, err := f.Write(data)
		h.wrote <- err
	}()
	return h, nil
}

// Close closes the FIFO and removes it. It returns the error of the write, unless the
// write was cut short by the close (a process that never read it, having failed to
// start, is not the hand-off's failure). Closing again returns what the first Close did.
func (h *Handoff) Close() error {
	h.closeOnce.Do(func() {
		err := h.f.Close()
		if werr := <-h.wrote; werr != nil && !errors.Is(werr, os.ErrClosed) {
			err = errors.Join(err, fmt.Errorf("write the secret hand-off: %w", werr))
		}
		if rerr := os.Remove(h.Path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		h.closeErr = err
	})
	return h.closeErr
}

// ExecError is the failure of ExecEnv to become the command: Code is the exit status a
// shell gives (127: not found, 126: not executable).
type ExecError struct {
	Code int
	Err  error
}

func (e *ExecError) Error() string { return e.Err.Error() }
func (e *ExecError) Unwrap() error { return e.Err }

// ExecEnv is the container's side of the hand-off, `crun-ci exec-env FIFO -- COMMAND
// [ARGS…]` (args without "exec-env"): it reads the secret variables from the FIFO, adds
// them to its environment (replacing those of the same names) and becomes COMMAND. It
// returns only when it could not.
func ExecEnv(args []string) error {
	if len(args) < 3 || args[1] != "--" {
		return &ExecError{Code: 2, Err: errors.New("exec-env: want FIFO -- COMMAND [ARGS…]")}
	}
	env, err := ReadEnvFile(args[0])
	if err != nil {
		return err
	}
	environ := os.Environ()
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		environ = slices.DeleteFunc(environ, func(x string) bool { return strings.HasPrefix(x, k+"=") })
		environ = append(environ, e)
	}
	path := args[2]
	if !strings.Contains(path, "/") {
		if path, err = exec.LookPath(path); err != nil {
			return &ExecError{Code: 127, Err: fmt.Errorf("%s: not found", args[2])}
		}
	}
	err = syscall.Exec(path, args[2:], environ)
	return &ExecError{Code: 126, Err: fmt.Errorf("%s: %v", args[2], err)}
}
