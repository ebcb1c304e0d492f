package session

import (
	"bytes"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/containerd/console"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/crun-ci/crun-ci/steps"
)

// Attach attaches a container (crun-ci run) to stdin, stdout and stderr. When stdin is a
// terminal and tty is true, the container gets a terminal: stdin is put in raw mode and
// the container's terminal follows its size; call reset to restore stdin when done.
func Attach(stdin *os.File, stdout, stderr io.Writer, tty bool) (a *steps.Attach, reset func(), err error) {
	a = &steps.Attach{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	con, err := console.ConsoleFromFile(stdin)
	if err != nil || !tty {
		return a, func() {}, nil
	}
	if err := con.SetRaw(); err != nil {
		return nil, nil, err
	}
	a.TTY = true
	a.Resize = func(resize func(w, h uint32) error) {
		set := func() {
			if size, err := con.Size(); err == nil {
				resize(uint32(size.Width), uint32(size.Height))
			}
		}
		set()
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		go func() {
			for range winch {
				set()
			}
		}()
	}
	return a, func() { con.Reset() }, nil
}

// IsTerminal reports whether w is a terminal (and TERM does not say it is a dumb one).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// LogLines is a writer whose every line is an info entry of crun-ci's log (for
// Options.Progress under --log-format json).
func LogLines() io.Writer { return &logLines{} }

type logLines struct{ buf []byte }

func (l *logLines) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		if line := strings.TrimSpace(string(l.buf[:i])); line != "" {
			logrus.StandardLogger().Info(line)
		}
		l.buf = l.buf[i+1:]
	}
}
