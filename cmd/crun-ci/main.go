// Command crun-ci runs Codeship-Pro-style pipelines (codeship-services.yml and
// codeship-steps.yml) on containerd, without Docker.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/crun-ci/crun-ci/daemon"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/pod"
	"github.com/crun-ci/crun-ci/session"
	"github.com/crun-ci/crun-ci/steps"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	var sig atomic.Value
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-signals
		sig.Store(s)
		cancel()
		// A second signal skips the grace period of running steps; clean-up still runs.
		<-signals
		close(hurry)
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	code := exitCode(err)
	if s, ok := sig.Load().(os.Signal); ok && err != nil {
		code = 128 + int(s.(syscall.Signal))
	}
	if err != nil && !errors.Is(err, errReported) {
		fmt.Fprintln(os.Stderr, "crun-ci: "+err.Error())
	}
	os.Exit(code)
}

// hurry is closed on a second SIGINT or SIGTERM.
var hurry = make(chan struct{})

// A command is one of crun-ci's commands; run parses its flags with c.parse.
type command struct {
	name, summary string
	run           func(ctx context.Context, c *cli, args []string) error
}

var commands = []command{
	{"steps", "run the pipeline of a build directory", runSteps},
	{"run", "run one service (with its dependencies): run SERVICE [COMMAND [ARGS…]]", runRun},
	{"validate", "check the services and steps files, printing every error", runValidate},
	{"import", "load image archives (OCI layout or docker save tar) into containerd", runImport},
	{"load", "pull the images of services (all, or those named) that are missing", runLoad},
	{"cleanup", "remove what builds whose process is gone left behind (--dry-run lists it)", runCleanup},
	{"encrypt", "encrypt IN OUT with codeship.aes (Codeship's v2 format)", runCrypt(true)},
	{"decrypt", "decrypt IN OUT (v1 or v2)", runCrypt(false)},
	{"generate", "write a new key to codeship.aes (never over an existing one)", runGenerate},
	{"version", "print the version", runVersion},
}

// cli is one invocation: its global flags and output.
type cli struct {
	address, namespace, stateDir, logFormat string
	debug                                   bool
	global                                  *pflag.FlagSet
	stdout, stderr                          io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "exec-env" {
		return execEnv(args[1:], stderr)
	}
	if len(args) > 0 && args[0] == "init" {
		// PID 1 of a container with init: true (see pod.Init). Not for people.
		code, err := pod.Init(args[1:])
		if err != nil {
			fmt.Fprintln(stderr, "crun-ci "+err.Error())
		}
		return &exitError{code: code, err: fmt.Errorf("%w: exit %d", errReported, code)}
	}
	c := &cli{stdout: stdout, stderr: stderr, global: pflag.NewFlagSet("crun-ci", pflag.ContinueOnError)}
	fs := c.global
	addr := os.Getenv("CONTAINERD_ADDRESS")
	if addr == "" {
		addr = daemon.DefaultAddress
	}
	fs.StringVar(&c.address, "address", addr, "containerd socket; when nothing answers there, an embedded containerd is started (env CONTAINERD_ADDRESS)")
	fs.StringVar(&c.namespace, "namespace", "crun-ci", "containerd namespace")
	fs.StringVar(&c.stateDir, "state-dir", network.DefaultStateDir, "state directory: builds' working files and the embedded containerd's root")
	fs.BoolVar(&c.debug, "debug", false, "log debug messages")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.SetOutput(stderr)
	fs.SetInterspersed(false)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: crun-ci [global flags] COMMAND [flags] [args]\n\nCommands:\n")
		for _, cmd := range commands {
			fmt.Fprintf(stderr, "  %-10s %s\n", cmd.name, cmd.summary)
		}
		fmt.Fprint(stderr, "\nGlobal flags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return usageError("%w", err)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return usageError("no command given")
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	var names []string
	for _, cmd := range commands {
		if cmd.name == name {
			return cmd.run(ctx, c, rest)
		}
		names = append(names, cmd.name)
	}
	if name == "help" {
		fs.Usage()
		return nil
	}
	return usageError("unknown command %q (want %s or %s)", name, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
}

// flags makes the flag set of a command; the global flags may be given again in it.
func (c *cli) flags(name, argsUsage string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.AddFlagSet(c.global)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: crun-ci %s [flags]%s\n\nFlags:\n", name, argsUsage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses a command's flags and sets up logging; false (and no error) for --help.
func (c *cli) parse(fs *pflag.FlagSet, args []string) (bool, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return false, nil
		}
		return false, usageError("%w", err)
	}
	l := logrus.StandardLogger()
	l.SetOutput(c.stderr)
	switch c.logFormat {
	case "text":
		l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	default:
		return false, usageError("--log-format %q: want text or json", c.logFormat)
	}
	l.SetLevel(logrus.InfoLevel)
	if c.debug {
		l.SetLevel(logrus.DebugLevel)
	}
	return true, nil
}

// options are the session options of the global flags.
func (c *cli) options() (session.Options, error) {
	stateDir, err := filepath.Abs(c.stateDir)
	if err != nil {
		return session.Options{}, usageError("--state-dir: %w", err)
	}
	return session.Options{Address: c.address, Namespace: c.namespace, StateDir: stateDir, Progress: c.stderr, Terminal: session.IsTerminal(c.stderr)}, nil
}

// open opens a session; what keeps it from opening exits with 2.
func open(ctx context.Context, o session.Options) (*session.Session, error) {
	s, err := session.Open(ctx, o)
	if se := (*session.SetupError)(nil); errors.As(err, &se) {
		return nil, &exitError{code: 2, err: err}
	}
	return s, err
}

func runVersion(ctx context.Context, c *cli, args []string) error {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "dev"
	}
	fmt.Fprintf(c.stdout, "crun-ci %s (%s, %s/%s)\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// exitCode maps run's error to the exit status: 0 passed, 1 a step failed, 2 bad
// configuration, usage or a missing precondition.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		return 1
	}
}

// exitError carries an exit status other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// errReported is wrapped by errors whose text was already printed.
var errReported = errors.New("reported")

func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// interrupted is the error of a command whose context was cancelled (exit 130, or
// 128 + the signal), or nil.
func interrupted(ctx context.Context) error {
	if ctx.Err() != nil {
		return &exitError{code: 130, err: errors.New("interrupted")}
	}
	return nil
}

// printErrors prints each error of a join or a precondition error on a line of its own.
func printErrors(w io.Writer, err error) {
	errs := []error{err}
	var pe *steps.PreconditionError
	if errors.As(err, &pe) {
		errs = pe.Errs
	} else if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		fmt.Fprintln(w, "crun-ci: "+e.Error())
	}
}

// preconditions prints the problems of a *steps.PreconditionError, one a line, and turns
// it into exit status 2; other errors pass through.
func preconditions(err error, stderr io.Writer) error {
	if errors.As(err, new(*steps.PreconditionError)) {
		printErrors(stderr, err)
		return &exitError{code: 2, err: fmt.Errorf("%w: preconditions not met", errReported)}
	}
	return err
}
