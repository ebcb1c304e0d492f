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
	"runtime"
	"sync/atomic"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/crun-ci/crun-ci/cmdline"
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
	if s, ok := sig.Load().(os.Signal); ok {
		// Interrupted: whatever the command says, after its running steps were stopped
		// and cleaned up.
		code = 128 + int(s.(syscall.Signal))
		if err == nil || errors.Is(err, errReported) {
			err = errors.New("interrupted")
		}
	}
	if err != nil && !errors.Is(err, errReported) {
		printErrors(os.Stderr, err)
	}
	os.Exit(code)
}

// hurry is closed on a second SIGINT or SIGTERM.
var hurry = make(chan struct{})

// A runner runs a command with its arguments (cmdline.Runner).
type runner = cmdline.Runner

// commands are crun-ci's commands, their flags bound to c's.
func (c *cli) commands() []cmdline.Command {
	cmd := func(name, summary, args string, n cmdline.NArgs, flags func(*cli, *pflag.FlagSet) runner, root bool) cmdline.Command {
		return cmdline.Command{Name: name, Summary: summary, Args: args, NArgs: n, Root: root,
			Flags: func(fs *pflag.FlagSet) cmdline.Runner { return flags(c, fs) }}
	}
	return []cmdline.Command{
		cmd("steps", "run the pipeline of a build directory", "", cmdline.None, runSteps, true),
		cmd("run", "run one service (with its dependencies): run SERVICE [COMMAND [ARGS…]]", " SERVICE [COMMAND [ARGS…]]", cmdline.NArgs{Min: 1, Max: -1, Why: "no service given"}, runRun, true),
		cmd("validate", "check the services and steps files, printing every error", "", cmdline.None, runValidate, false),
		cmd("import", "load image archives (OCI layout or docker save tar) into containerd", " FILE…", cmdline.NArgs{Min: 1, Max: -1, Why: "no archive given"}, runImport, true),
		cmd("export", "write an image of containerd's store as an OCI archive (for import, ctr images import, docker load)", " IMAGE FILE", cmdline.NArgs{Min: 2, Max: 2, Why: "want IMAGE and FILE"}, runExport, true),
		cmd("load", "pull the images of services (all, or those named) that are missing", " [SERVICE…]", cmdline.Any, runLoad, true),
		cmd("spec", "print the OCI runtime spec a container of SERVICE gets in a step, secrets masked", " SERVICE", cmdline.NArgs{Min: 1, Max: 1, Why: "want one service"}, runSpec, true),
		cmd("debug", "run a shell (or COMMAND) in a new container on a kept failed step's filesystem: debug [BUILD] STEP [-- COMMAND [ARGS…]]", " [BUILD] STEP [-- COMMAND [ARGS…]]", cmdline.NArgs{Min: 1, Max: -1, Why: "no step given"}, runDebug, true),
		cmd("cleanup", "remove what builds whose process is gone left behind (--dry-run lists it)", "", cmdline.None, runCleanup, true),
		cmd("encrypt", "encrypt IN OUT with codeship.aes (Codeship's v2 format)", " IN OUT", cmdline.NArgs{Min: 2, Max: 2, Why: "want IN and OUT"}, runCrypt(true), false),
		cmd("decrypt", "decrypt IN OUT (v1 or v2)", " IN OUT", cmdline.NArgs{Min: 2, Max: 2, Why: "want IN and OUT"}, runCrypt(false), false),
		cmd("generate", "write a new key to codeship.aes (never over an existing one)", "", cmdline.None, runGenerate, false),
		cmd("version", "print the version", "", cmdline.Any, runVersion, false),
		cmd("completion", "print the completion script of a shell: completion bash|zsh|fish", " SHELL", cmdline.NArgs{Min: 1, Max: 1, Why: "want bash, zsh or fish"}, runCompletion, false),
		cmd("man", "print the manual page, crun-ci(1), in roff", "", cmdline.None, runMan, false),
	}
}

// cli is one invocation: its flags and output.
type cli struct {
	f              session.Flags
	logFormat      string
	debug          bool
	global         *pflag.FlagSet
	stdout, stderr io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "exec-env" || args[0] == "init") {
		return helper(args[0], args[1:], stderr)
	}
	c := &cli{stdout: stdout, stderr: stderr, global: pflag.NewFlagSet("crun-ci", pflag.ContinueOnError)}
	c.f.AddGlobal(c.global)
	c.global.BoolVar(&c.debug, "debug", false, "log debug messages")
	c.global.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	p := c.program()
	return p.Run(ctx, args)
}

// setupLogging sends crun-ci's log to stderr in the format of --log-format.
func (c *cli) setupLogging() error {
	l := logrus.StandardLogger()
	l.SetOutput(c.stderr)
	switch c.logFormat {
	case "text":
		l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
		jsonLog = true
	default:
		return usageError("--log-format %q: want text or json", c.logFormat)
	}
	l.SetLevel(logrus.InfoLevel)
	if c.debug {
		l.SetLevel(logrus.DebugLevel)
	}
	return nil
}

// options are the session options of the flags.
func (c *cli) options() (session.Options, error) {
	o, err := c.f.Options()
	o.Progress, o.Terminal = c.stderr, session.IsTerminal(c.stderr)
	if jsonLog {
		o.Progress, o.Terminal = session.LogLines(), false
	}
	return o, err
}

// runVersion prints the version (session.Version).
func runVersion(c *cli, _ *pflag.FlagSet) runner {
	return func(context.Context, []string) error {
		fmt.Fprintf(c.stdout, "crun-ci %s (%s, %s/%s)\n", session.Version(version), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	}
}

// helper runs crun-ci as a container's process (pod.Helper), with its exit status.
func helper(mode string, args []string, stderr io.Writer) error {
	code := pod.Helper(mode, args, stderr)
	return &exitError{code: code, err: fmt.Errorf("%w: exit %d", errReported, code)}
}

// exitCode maps run's error to the exit status: 0 passed, 1 a step failed, 2 bad
// configuration, usage or a missing precondition (main makes an interrupted command's
// 128 + the signal).
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, new(*cmdline.UsageError)), errors.As(err, new(*session.SetupError)), errors.As(err, new(*steps.PreconditionError)):
		return 2
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

// usageError is a usage error (exit status 2).
var usageError = cmdline.Usagef

// jsonLog says --log-format json is in effect: everything crun-ci says on stderr is a
// JSON log entry (errors, warnings, progress), and the summary a JSON object.
var jsonLog bool

// printErrors prints each error of a join or a precondition error on a line of its own
// (an entry of its own, in JSON).
func printErrors(w io.Writer, err error) {
	errs := []error{err}
	var pe *steps.PreconditionError
	if errors.As(err, &pe) {
		errs = pe.Errs
	} else if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		if jsonLog {
			logrus.StandardLogger().Error(e.Error())
			continue
		}
		fmt.Fprintln(w, "crun-ci: "+e.Error())
	}
}

// warn says what crun-ci reads but does not act on.
func (c *cli) warn(w error) {
	if jsonLog {
		logrus.StandardLogger().Warn(w.Error())
		return
	}
	fmt.Fprintln(c.stderr, "crun-ci: warning: "+w.Error())
}
