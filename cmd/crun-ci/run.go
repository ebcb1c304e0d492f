package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/daemon"
	"github.com/crun-ci/crun-ci/remote"
	"github.com/crun-ci/crun-ci/secrets"
	"github.com/crun-ci/crun-ci/session"
	"github.com/crun-ci/crun-ci/steps"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

const usage = `usage: crun-ci [global flags] COMMAND [flags] [args]

Commands:
  steps      run the pipeline of a build directory
  run        run one service (with its dependencies): run SERVICE [COMMAND [ARGS…]]
  validate   check the services and steps files, printing every error
  import     load image archives (OCI layout or docker save tar) into containerd
  load       pull the images of services (all, or those named) that are missing
  cleanup    remove what builds whose process is gone left behind (--dry-run lists it)
  encrypt    encrypt IN OUT with codeship.aes (Codeship's v2 format)
  decrypt    decrypt IN OUT (v1 or v2)
  generate   write a new key to codeship.aes (never over an existing one)
  version    print the version

Global flags:
`

// globals are the flags every command takes.
type globals struct {
	address   string
	namespace string
	stateDir  string
	debug     bool
	logFormat string
}

func (g *globals) add(fs *pflag.FlagSet) {
	addr := os.Getenv("CONTAINERD_ADDRESS")
	if addr == "" {
		addr = daemon.DefaultAddress
	}
	fs.StringVar(&g.address, "address", addr, "containerd socket; when nothing answers there, an embedded containerd is started (env CONTAINERD_ADDRESS)")
	fs.StringVar(&g.namespace, "namespace", "crun-ci", "containerd namespace")
	fs.StringVar(&g.stateDir, "state-dir", "/var/lib/crun-ci", "state directory: builds' working files and the embedded containerd's root")
	fs.BoolVar(&g.debug, "debug", false, "log debug messages")
	fs.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
}

// setup configures logging.
func (g *globals) setup(stderr io.Writer) error {
	l := logrus.StandardLogger()
	l.SetOutput(stderr)
	switch g.logFormat {
	case "text":
		l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	default:
		return usageError("--log-format %q: want text or json", g.logFormat)
	}
	l.SetLevel(logrus.InfoLevel)
	if g.debug {
		l.SetLevel(logrus.DebugLevel)
	}
	return nil
}

// options are the session options of the global flags.
func (g *globals) options(stderr io.Writer) (session.Options, error) {
	stateDir, err := filepath.Abs(g.stateDir)
	if err != nil {
		return session.Options{}, usageError("--state-dir: %w", err)
	}
	return session.Options{Address: g.address, Namespace: g.namespace, StateDir: stateDir, Progress: stderr, Terminal: isTerminal(stderr)}, nil
}

// open opens a session; what keeps it from opening exits with 2.
func open(ctx context.Context, o session.Options) (*session.Session, error) {
	s, err := session.Open(ctx, o)
	if se := (*session.SetupError)(nil); errors.As(err, &se) {
		return nil, &exitError{code: 2, err: err}
	}
	return s, err
}

// printErrors prints each error of a join or a precondition error on a line of its own.
func printErrors(w io.Writer, err error) {
	var pe *steps.PreconditionError
	var errs []error
	switch {
	case errors.As(err, &pe):
		errs = pe.Errs
	default:
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		} else {
			errs = []error{err}
		}
	}
	for _, e := range errs {
		fmt.Fprintln(w, "crun-ci: "+e.Error())
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "exec-env" {
		return execEnv(args[1:], stderr)
	}
	var g globals
	fs := pflag.NewFlagSet("crun-ci", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SetInterspersed(false)
	g.add(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
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
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "steps":
		return runSteps(ctx, g, rest, stdout, stderr)
	case "validate":
		return runValidate(ctx, g, rest, stdout, stderr)
	case "import":
		return runImport(ctx, g, rest, stdout, stderr)
	case "cleanup":
		return runCleanup(ctx, g, rest, stdout, stderr)
	case "run":
		return runRun(ctx, g, rest, stdout, stderr)
	case "load":
		return runLoad(ctx, g, rest, stdout, stderr)
	case "encrypt", "decrypt":
		return runCrypt(ctx, g, cmd == "encrypt", rest, stdout, stderr)
	case "generate":
		return runGenerate(ctx, g, rest, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "crun-ci %s (%s, %s/%s)\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	case "help":
		fs.Usage()
		return nil
	}
	return usageError("unknown command %q (want steps, run, validate, import, load, cleanup, encrypt, decrypt, generate or version)", cmd)
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// commandFlags makes the flag set of a command, with the global flags in it too.
func commandFlags(name string, g *globals, stderr io.Writer, argsUsage string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	before := *g
	g.add(fs)
	resetDefaults(fs, before)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: crun-ci %s [flags]%s\n\nFlags:\n", name, argsUsage)
		fs.PrintDefaults()
	}
	return fs
}

// resetDefaults makes the values given to the global flags before the command the
// defaults of the command's own copies.
func resetDefaults(fs *pflag.FlagSet, g globals) {
	set := func(name, v string) {
		if f := fs.Lookup(name); f != nil {
			f.Value.Set(v)
			f.DefValue = v
		}
	}
	set("address", g.address)
	set("namespace", g.namespace)
	set("state-dir", g.stateDir)
	set("debug", fmt.Sprint(g.debug))
	set("log-format", g.logFormat)
}

// parse parses a command's flags; the global flags may be given again after the command.
// --help is no error.
func parse(fs *pflag.FlagSet, g *globals, args []string, stderr io.Writer) (bool, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return false, nil
		}
		return false, usageError("%w", err)
	}
	return true, g.setup(stderr)
}

func runValidate(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	var b buildFlags
	fs := commandFlags("validate", &g, stderr, "")
	b.addProject(fs, true)
	if ok, err := parse(fs, &g, args, stderr); !ok || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("validate takes no arguments, got %q", fs.Args())
	}
	proj, _, err := b.load(ctx, stderr, true, true)
	if err != nil {
		return err
	}
	n := 0
	var count func([]*config.Step)
	count = func(ss []*config.Step) {
		for _, s := range ss {
			if s.Type == config.Run || s.Type == config.Push {
				n++
			}
			count(s.Steps)
			count(s.OnFail)
		}
	}
	count(proj.Steps)
	fmt.Fprintf(stdout, "%s and %s are valid: %d services, %d steps\n", rel(proj.Dir, proj.ServicesFile), rel(proj.Dir, proj.StepsFile), len(proj.Services), n)
	return nil
}

func rel(dir, p string) string {
	if r, err := filepath.Rel(dir, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

func runImport(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) (retErr error) {
	fs := commandFlags("import", &g, stderr, " FILE…")
	if ok, err := parse(fs, &g, args, stderr); !ok || err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError("import: no archive given")
	}
	o, err := g.options(stderr)
	if err != nil {
		return err
	}
	s, err := open(ctx, o)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, s.Close()) }()
	for _, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("import %s: %w", name, err)}
		}
		names, err := s.Import(ctx, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("import %s: %w", name, err)
		}
		if len(names) == 0 {
			return fmt.Errorf("import %s: the archive holds no named image", name)
		}
		for _, n := range names {
			fmt.Fprintln(stdout, n)
		}
	}
	return nil
}

func runCleanup(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) (retErr error) {
	fs := commandFlags("cleanup", &g, stderr, "")
	dryRun := fs.Bool("dry-run", false, "list what would be removed, remove nothing")
	layerCache := fs.Bool("layer-cache", false, "also empty the layer cache of built images")
	if ok, err := parse(fs, &g, args, stderr); !ok || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("cleanup takes no arguments, got %q", fs.Args())
	}
	o, err := g.options(stderr)
	if err != nil {
		return err
	}
	o.KeepLeftovers = true // cleaned up here, and said on stdout
	s, err := open(ctx, o)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, s.Close()) }()
	n, err := s.Cleanup(ctx, *dryRun, stdout)
	if err != nil {
		return err
	}
	switch {
	case n == 0:
		fmt.Fprintln(stdout, "nothing to clean up")
	case *dryRun:
		fmt.Fprintf(stdout, "%d builds would be cleaned up\n", n)
	default:
		fmt.Fprintf(stdout, "%d builds cleaned up\n", n)
	}
	if *layerCache {
		gone, err := s.PruneCache(ctx, -1, *dryRun)
		var size int64
		for _, e := range gone {
			size += e.Size
		}
		verb := "removed"
		if *dryRun {
			verb = "would remove"
		}
		fmt.Fprintf(stdout, "layer cache: %s %d layers (%s)\n", verb, len(gone), remote.Size(size))
		if err != nil {
			return fmt.Errorf("empty the layer cache: %w", err)
		}
	}
	return nil
}

// execEnv is `crun-ci exec-env FIFO -- COMMAND [ARGS…]`, run inside a container as its
// process (see secrets.ExecEnv). Not for people.
func execEnv(args []string, stderr io.Writer) error {
	err := secrets.ExecEnv(args)
	if ee := (*secrets.ExecError)(nil); errors.As(err, &ee) {
		if ee.Code == 2 {
			return usageError("%v", ee.Err)
		}
		fmt.Fprintln(stderr, ee.Error())
		return &exitError{code: ee.Code, err: fmt.Errorf("%w: %v", errReported, ee)}
	}
	return err
}
