// Command crun-ci runs Codeship-Pro-style pipelines (codeship-services.yml and
// codeship-steps.yml) on containerd, without Docker.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/pod"
	"github.com/crun-ci/crun-ci/secrets"
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

// A command is one of crun-ci's commands: flags adds its flags to fs and returns what
// runs it with its arguments, whose usage is args and whose number nargs checks.
type command struct {
	name, summary, args string
	nargs               nargs
	flags               func(c *cli, fs *pflag.FlagSet) runner
	// root says the command talks to containerd and makes mounts and namespaces.
	root bool
}

// A runner runs a command with its arguments, once its flags are parsed.
type runner func(ctx context.Context, args []string) error

// nargs is how many arguments a command takes, from min to max (-1: any number), and
// what the usage error says otherwise.
type nargs struct {
	min, max int
	why      string
}

var (
	none    = nargs{}
	anyArgs = nargs{max: -1}
)

var commands = []command{
	{"steps", "run the pipeline of a build directory", "", none, runSteps, true},
	{"run", "run one service (with its dependencies): run SERVICE [COMMAND [ARGS…]]", " SERVICE [COMMAND [ARGS…]]", nargs{1, -1, "no service given"}, runRun, true},
	{"validate", "check the services and steps files, printing every error", "", none, runValidate, false},
	{"import", "load image archives (OCI layout or docker save tar) into containerd", " FILE…", nargs{1, -1, "no archive given"}, runImport, true},
	{"load", "pull the images of services (all, or those named) that are missing", " [SERVICE…]", anyArgs, runLoad, true},
	{"cleanup", "remove what builds whose process is gone left behind (--dry-run lists it)", "", none, runCleanup, true},
	{"encrypt", "encrypt IN OUT with codeship.aes (Codeship's v2 format)", " IN OUT", nargs{2, 2, "want IN and OUT"}, runCrypt(true), false},
	{"decrypt", "decrypt IN OUT (v1 or v2)", " IN OUT", nargs{2, 2, "want IN and OUT"}, runCrypt(false), false},
	{"generate", "write a new key to codeship.aes (never over an existing one)", "", none, runGenerate, false},
	{"version", "print the version", "", anyArgs, runVersion, false},
}

// run parses the command's flags (the global ones may be given again among them), sets
// up logging, checks the number of its arguments and runs it.
func (cmd command) run(ctx context.Context, c *cli, args []string) error {
	fs := pflag.NewFlagSet(cmd.name, pflag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.AddFlagSet(c.global)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: crun-ci %s [flags]%s\n\nFlags:\n", cmd.name, cmd.args)
		fs.PrintDefaults()
	}
	r := cmd.flags(c, fs)
	if err := fs.Parse(args); err != nil {
		return parseError(fs, err)
	}
	l := logrus.StandardLogger()
	l.SetOutput(c.stderr)
	switch c.logFormat {
	case "text":
		l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	default:
		return usageError("--log-format %q: want text or json", c.logFormat)
	}
	l.SetLevel(logrus.InfoLevel)
	if c.debug {
		l.SetLevel(logrus.DebugLevel)
	}
	if cmd.root && os.Geteuid() != 0 {
		return usageError("%s needs root: it runs containers through containerd (whose socket is root's), mounts their file systems and makes their network namespaces; run it with sudo, or as root in the CI job (validate, encrypt and decrypt do not need it)", cmd.name)
	}
	n := cmd.nargs
	switch args = fs.Args(); {
	case n.max == 0 && len(args) > 0:
		return usageError("%s takes no arguments, got %q", cmd.name, args)
	case n.min == n.max && len(args) != n.min:
		return usageError("%s: %s, got %d arguments", cmd.name, n.why, len(args))
	case len(args) < n.min:
		return usageError("%s: %s", cmd.name, n.why)
	}
	return r(ctx, args)
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
	fs := c.global
	c.f.AddGlobal(fs)
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
	version := fs.Bool("version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		return parseError(fs, err)
	}
	if *version {
		return runVersion(c, nil)(ctx, nil)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return usageError("no command given")
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	if name == "help" && len(rest) > 0 {
		name, rest = rest[0], []string{"--help"} // crun-ci help COMMAND
	}
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
	return usageError("unknown command %q%s (want %s or %s)", name, config.Suggest(name, names), strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
}

// parseError is the error of a flag set that did not parse: none for --help (its usage
// is printed), else a usage error, with the flag meant when an unknown one is close to
// one.
func parseError(fs *pflag.FlagSet, err error) error {
	if errors.Is(err, pflag.ErrHelp) {
		return nil
	}
	if name, ok := strings.CutPrefix(err.Error(), "unknown flag: --"); ok {
		var known []string
		fs.VisitAll(func(f *pflag.Flag) { known = append(known, f.Name) })
		if s := config.Suggest(name, known); s != "" {
			return usageError("%w%s", err, strings.Replace(s, `"`, `"--`, 1))
		}
	}
	return usageError("%w", err)
}

// options are the session options of the flags.
func (c *cli) options() (session.Options, error) {
	o, err := c.f.Options()
	o.Progress, o.Terminal = c.stderr, session.IsTerminal(c.stderr)
	return o, err
}

// runVersion prints the version: the one linked in (-X main.version), else the module's
// (go install …@v1.2.3), else the commit it was built from (dev+<commit>, +dirty for
// uncommitted changes).
func runVersion(c *cli, _ *pflag.FlagSet) runner {
	return func(context.Context, []string) error {
		v := version
		if bi, ok := debug.ReadBuildInfo(); ok && v == "" {
			if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			} else {
				var rev, dirty string
				for _, s := range bi.Settings {
					switch {
					case s.Key == "vcs.revision" && len(s.Value) >= 12:
						rev = s.Value[:12]
					case s.Key == "vcs.modified" && s.Value == "true":
						dirty = "+dirty"
					}
				}
				if rev != "" {
					v = "dev+" + rev + dirty
				}
			}
		}
		fmt.Fprintf(c.stdout, "crun-ci %s (%s, %s/%s)\n", cmp.Or(v, "dev"), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	}
}

// helper runs crun-ci as a container's process, not for people: exec-env FIFO --
// COMMAND [ARGS…] (see secrets.ExecEnv) or init COMMAND [ARGS…] (PID 1 of a container
// with init: true, see pod.Init). The status is the command's, 2 for bad usage.
func helper(mode string, args []string, stderr io.Writer) error {
	var code int
	var msg string
	if mode == "init" {
		var err error
		if code, err = pod.Init(args); err != nil {
			msg = "crun-ci " + err.Error()
		}
	} else if err := secrets.ExecEnv(args); err != nil {
		ee := &secrets.ExecError{Code: 1, Err: err}
		errors.As(err, &ee)
		code, msg = ee.Code, ee.Error() // a shell's way: "app: not found"
		if code == 2 {
			msg = "crun-ci: " + msg
		}
	}
	if msg != "" {
		fmt.Fprintln(stderr, msg)
	}
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
	case errors.As(err, new(*session.UsageError)), errors.As(err, new(*session.SetupError)), errors.As(err, new(*steps.PreconditionError)):
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

func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
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
