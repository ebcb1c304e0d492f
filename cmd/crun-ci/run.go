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
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/docker/go-units"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/crun-ci/crun-ci/builds"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/daemon"
	"github.com/crun-ci/crun-ci/dockerfile"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/remote"
	"github.com/crun-ci/crun-ci/snapshot"
	"github.com/crun-ci/crun-ci/steps"
	"github.com/crun-ci/crun-ci/task"
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

// connect returns a containerd connection, embedded if need be.
func (g *globals) connect(ctx context.Context) (*daemon.Daemon, error) {
	stateDir, err := filepath.Abs(g.stateDir)
	if err != nil {
		return nil, usageError("--state-dir: %w", err)
	}
	d, err := daemon.Connect(ctx, g.address, stateDir, g.namespace)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return d, nil
}

// project flags: where the pipeline's files are, and what the operator lets it do.
type projectFlags struct {
	dir, servicesPath, stepsPath string
	policyFlags
}

func (p *projectFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&p.dir, "dir", ".", "build directory")
	fs.StringVar(&p.servicesPath, "services-path", "", "services file (default: codeship-services.yml, .json or docker-compose.yml in --dir)")
	fs.StringVar(&p.stepsPath, "steps-path", "", "steps file (default: codeship-steps.yml or .json in --dir)")
	p.policyFlags.add(fs)
}

// policyFlags are the operator's grants and bounds (steps.Policy).
type policyFlags struct {
	allow                  []string
	maxFile                string
	privileged, unconfined bool
	pids                   int64
	memory                 string
}

func (p *policyFlags) add(fs *pflag.FlagSet) {
	fs.StringArrayVar(&p.allow, "allow-host-path", nil, "absolute host path prefix that volumes may mount besides the build directory (repeatable)")
	fs.StringVar(&p.maxFile, "max-file-size", "10MiB", "bound of each Dockerfile, .dockerignore, env and encrypted file crun-ci reads from the build directory")
	fs.BoolVar(&p.privileged, "allow-privileged", false, "let services widen their containers beyond Docker's defaults: privileged, cap_add beyond the default set, devices, systempaths=unconfined")
	fs.BoolVar(&p.unconfined, "allow-unconfined", false, "let services replace or turn off the seccomp profile (security_opt: seccomp=unconfined or a profile file)")
	fs.Int64Var(&p.pids, "pids-limit", steps.DefaultPidsLimit, "pids limit of every container, and the most a service's pids_limit may ask for (0 or -1: no limit)")
	fs.StringVar(&p.memory, "memory-limit", "0", "memory limit of every container whose service sets no mem_limit, and the most one may ask for (as mem_limit: 512m, 2g; 0: no limit)")
}

// policy checks the flags and returns the policy they give.
func (p *policyFlags) policy() (steps.Policy, error) {
	for _, a := range p.allow {
		if !filepath.IsAbs(a) {
			return steps.Policy{}, usageError("--allow-host-path %q: not an absolute path", a)
		}
	}
	max, err := dockerfile.ParseSize(p.maxFile)
	if err != nil || max <= 0 {
		return steps.Policy{}, usageError("--max-file-size %q: want a positive size (10MiB, 500KB)", p.maxFile)
	}
	// As a service's mem_limit reads (and docker run --memory): binary units, 512m = 512 MiB.
	var mem int64
	if p.memory != "0" {
		if mem, err = units.RAMInBytes(p.memory); err != nil || mem <= 0 {
			return steps.Policy{}, usageError("--memory-limit %q: want a size as mem_limit takes it (512m, 2g) or 0", p.memory)
		}
	}
	pids := p.pids
	switch {
	case pids == 0 || pids == -1:
		pids = -1 // none
	case pids < -1:
		return steps.Policy{}, usageError("--pids-limit %d: want a positive number, or 0 for no limit", pids)
	}
	return steps.Policy{Allow: p.allow, MaxFile: max, Privileged: p.privileged, Unconfined: p.unconfined, PidsLimit: pids, MemoryLimit: mem}, nil
}

// warn prints, one a line, what crun-ci reads in the pipeline but does not act on.
func warn(stderr io.Writer, proj *config.Project) {
	for _, w := range steps.Warnings(proj) {
		fmt.Fprintln(stderr, "crun-ci: warning: "+w.Error())
	}
}

// load reads and checks the pipeline; every problem is printed, one per line.
func (p *projectFlags) load(ctx context.Context, stderr io.Writer) (*config.Project, error) {
	policy, err := p.policy()
	if err != nil {
		return nil, err
	}
	proj, err := config.Load(p.dir, p.servicesPath, p.stepsPath)
	if err == nil {
		warn(stderr, proj)
		err = steps.Check(proj, policy)
	}
	if err != nil {
		printErrors(stderr, err)
		return nil, &exitError{code: 2, err: fmt.Errorf("%w: invalid pipeline", errReported)}
	}
	return proj, nil
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

// parse parses a command's flags; the global flags may be given again after the command.
func parse(fs *pflag.FlagSet, g *globals, args []string, stderr io.Writer) error {
	// Defaults of the command's copy of the globals are what was parsed before it.
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return &exitError{code: 0, err: err}
		}
		return usageError("%w", err)
	}
	return g.setup(stderr)
}

func runValidate(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	var p projectFlags
	fs := commandFlags("validate", &g, stderr, "")
	p.add(fs)
	if err := parse(fs, &g, args, stderr); err != nil {
		return quietHelp(err)
	}
	if fs.NArg() > 0 {
		return usageError("validate takes no arguments, got %q", fs.Args())
	}
	proj, err := p.load(ctx, stderr)
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
	if err := parse(fs, &g, args, stderr); err != nil {
		return quietHelp(err)
	}
	if fs.NArg() == 0 {
		return usageError("import: no archive given")
	}
	sess, err := g.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, sess.Close()) }()
	c := task.New(sess.d.Client)
	for _, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("import %s: %w", name, err)}
		}
		names, err := c.Import(ctx, f)
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

func runSteps(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) (retErr error) {
	var p projectFlags
	var (
		tag         string
		env         []string
		noRemove    bool
		maxParallel int
		stopTimeout time.Duration
		stepTimeout time.Duration
		quietDeps   bool
		netMode     string
		pf          pullFlags
		kf          keyFlags
		ci          = ciFlags{}
		push        bool
	)
	fs := commandFlags("steps", &g, stderr, "")
	fs.BoolVar(&push, "push", false, "run push steps (without it they are skipped)")
	p.add(fs)
	addNetworkFlag(fs, &netMode)
	pf.add(fs)
	kf.add(fs)
	ci.add(fs)
	fs.StringVar(&tag, "tag", "", "the build's branch or tag, matched by the steps' tag and exclude (default: the git branch, or the tag at HEAD)")
	fs.StringArrayVarP(&env, "env", "e", nil, "KEY=VAL added to every container's environment (repeatable)")
	fs.BoolVar(&noRemove, "no-remove", false, "keep containers, snapshots and anonymous volumes after each step")
	fs.IntVar(&maxParallel, "max-parallel", runtime.NumCPU(), "how many steps may run at once")
	fs.DurationVar(&stopTimeout, "stop-timeout", 10*time.Second, "when interrupted or timed out, how long running steps get after SIGTERM before SIGKILL")
	fs.BoolVar(&quietDeps, "quiet-deps", false, "hide the output of the services a step depends on")
	fs.DurationVar(&stepTimeout, "step-timeout", 0, "stop and fail a step that runs longer than this (0: no limit; a step's timeout key wins)")
	if err := parse(fs, &g, args, stderr); err != nil {
		return quietHelp(err)
	}
	if fs.NArg() > 0 {
		return usageError("steps takes no arguments, got %q", fs.Args())
	}
	if stopTimeout <= 0 {
		return usageError("--stop-timeout %s: want a positive duration", stopTimeout)
	}
	if stepTimeout < 0 {
		return usageError("--step-timeout %s: want a positive duration or 0", stepTimeout)
	}
	if maxParallel < 1 {
		return usageError("--max-parallel %d: want at least 1", maxParallel)
	}
	if err := checkEnv(env); err != nil {
		return err
	}
	proj, err := p.load(ctx, stderr)
	if err != nil {
		return err
	}
	policy, _ := p.policy() // checked by load
	key, keySource, err := kf.load(proj.Dir)
	if err != nil {
		return err
	}
	buildID := steps.NewBuildID()
	civ, err := ci.values(ctx, proj.Dir, buildID, tag)
	if err != nil {
		return err
	}
	if tag == "" {
		tag = civ.Branch // the branch, or the tag at HEAD
	}
	sess, err := g.startBuild(ctx, netMode, pf, stderr)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, sess.Close()) }()
	log.G(ctx).Debugf("build %s in %s", buildID, proj.Dir)
	sum, err := steps.Run(ctx, steps.Containerd(task.New(sess.d.Client)), steps.Options{
		Project:       proj,
		Tag:           tag,
		Env:           env,
		MaxParallel:   maxParallel,
		NoRemove:      noRemove,
		Policy:        policy,
		BuildID:       buildID,
		Namespace:     g.namespace,
		StateDir:      sess.stateDir,
		Output:        stdout,
		StopTimeout:   stopTimeout,
		StepTimeout:   stepTimeout,
		QuietDeps:     quietDeps,
		Hurry:         hurry,
		Network:       sess.network,
		Pull:          sess.puller.PullWith,
		PullIfPresent: pf.ifPresent,
		CIEnv:         civ.Env(),
		CI:            civ,
		Key:           key,
		KeySource:     keySource,
		Push:          pushFunc(push, sess),
		Builder:       sess.builder,
	})
	if errors.As(err, new(*steps.PreconditionError)) {
		return preconditions(err, stderr)
	}
	if sum != nil {
		sum.Print(stdout)
	}
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return &exitError{code: 130, err: errors.New("interrupted")}
	}
	if !sum.Passed() {
		return &exitError{code: 1, err: fmt.Errorf("%w: build %s failed", errReported, buildID)}
	}
	return nil
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

// quietHelp turns --help into success.
func quietHelp(err error) error {
	if errors.Is(err, pflag.ErrHelp) {
		return nil
	}
	return err
}

func runCleanup(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) (retErr error) {
	fs := commandFlags("cleanup", &g, stderr, "")
	dryRun := fs.Bool("dry-run", false, "list what would be removed, remove nothing")
	layerCache := fs.Bool("layer-cache", false, "also empty the layer cache of built images")
	if err := parse(fs, &g, args, stderr); err != nil {
		return quietHelp(err)
	}
	if fs.NArg() > 0 {
		return usageError("cleanup takes no arguments, got %q", fs.Args())
	}
	d, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, d.Close()) }()
	stateDir, _ := filepath.Abs(g.stateDir)
	n, err := cleanup(ctx, d, stateDir, *dryRun, stdout)
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
		gone, err := dockerfile.Prune(ctx, d.Client, -1, *dryRun)
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

// cleanupEarlier removes what killed builds left behind, so that it cannot pile up; every
// command that talks to containerd does it first. A failure is only a warning.
func cleanupEarlier(ctx context.Context, d *daemon.Daemon, stateDir string, w io.Writer) {
	if _, err := cleanup(ctx, d, stateDir, false, w); err != nil {
		log.G(ctx).WithError(err).Warn("clean-up of earlier builds failed; `crun-ci cleanup` tries again")
	}
}

// cleanup removes (or, dry, lists on w) what builds of stateDir whose process is gone
// left behind, and returns how many builds it found. Live builds are never touched.
func cleanup(ctx context.Context, d *daemon.Daemon, stateDir string, dry bool, w io.Writer) (int, error) {
	orphans, err := builds.Find(ctx, d.Client, stateDir, d.Address, d.Namespace)
	if err != nil {
		return 0, fmt.Errorf("find leftovers of earlier builds: %w", err)
	}
	var errs []error
	for _, o := range orphans {
		if dry {
			fmt.Fprintln(w, "would remove "+o.String())
			continue
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		err := builds.Remove(cctx, d.Client, stateDir, o, removeNetworks(stateDir))
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintln(w, "removed "+o.String())
	}
	return len(orphans), errors.Join(errs...)
}

func addNetworkFlag(fs *pflag.FlagSet, mode *string) {
	fs.StringVar(mode, "network", string(network.Bridge), "network of each step: bridge (a namespace per step on the crunci0 bridge), host or none")
}

// pullFlags say how images are pulled.
// pullFlags are the flags of the commands that pull and build images.
type pullFlags struct {
	ifPresent bool
	insecure  []string
	noCache   bool
	cacheMax  string
}

func (p *pullFlags) add(fs *pflag.FlagSet) {
	fs.BoolVar(&p.ifPresent, "pull-if-present", false, "pull images even when they are in containerd's store")
	fs.StringArrayVar(&p.insecure, "insecure-registry", nil, "registry (HOST[:PORT]) to reach over plain HTTP; loopback registries always are (repeatable)")
	fs.BoolVar(&p.noCache, "no-cache", false, "build every layer of built images anew, ignoring the layer cache")
	fs.StringVar(&p.cacheMax, "cache-max-size", "10GB", "bound of the layer cache of built images (e.g. 500MB, 20GiB; 0: no bound); least recently used layers go first")
}

// builder makes the image builder of a build: FROM images are pulled with the puller
// when missing (or always, with --pull-if-present).
func (p *pullFlags) builder(s *session, namespace string) (*dockerfile.Builder, error) {
	max, err := dockerfile.ParseSize(p.cacheMax)
	if err != nil {
		return nil, usageError("--cache-max-size: %w", err)
	}
	secret, err := dockerfile.LoadCacheSecret(s.stateDir)
	if err != nil {
		return nil, err
	}
	c := task.New(s.d.Client)
	return &dockerfile.Builder{
		Client:       c,
		Namespace:    namespace,
		NoCache:      p.noCache,
		CacheMaxSize: max,
		CacheSecret:  secret,
		Image: func(ctx context.Context, ref string, creds func(context.Context) (remote.Credentials, error)) (string, error) {
			name, err := task.Normalize(ref)
			if err != nil {
				return "", err
			}
			_, err = c.Image(ctx, ref)
			if p.ifPresent || errdefs.IsNotFound(err) {
				var more remote.Credentials
				if creds != nil {
					if more, err = creds(ctx); err != nil {
						return "", err
					}
				}
				if err = s.puller.PullWith(ctx, name, more); err != nil {
					return "", fmt.Errorf("pull %s: %w", name, err)
				}
				_, err = c.Image(ctx, ref)
			}
			return name, err
		},
	}, nil
}

// puller makes the image puller of a build: credentials from Docker's config files and
// the credential helpers they name, progress on stderr.
func (p *pullFlags) puller(d *daemon.Daemon, stderr io.Writer) (*remote.Puller, error) {
	keychain, err := remote.LoadDockerConfig("")
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return &remote.Puller{Client: d.Client, Keychain: keychain, Insecure: p.insecure, Progress: stderr, Terminal: isTerminal(stderr), Snapshotter: snapshot.Snapshotter}, nil
}

// isTerminal reports whether w is a terminal (and TERM does not say it is a dumb one).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// networkManager makes the step networks' manager of a --network value. Its errors say
// what to do (install the CNI plugins, or use --network host) and exit with 2.
func networkManager(mode, stateDir string) (*network.Manager, error) {
	m, err := network.ParseMode(mode)
	if err != nil {
		return nil, usageError("--network: %w", err)
	}
	nm, err := network.New(m, network.Config{StateDir: stateDir})
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return nm, nil
}

// removeNetworks returns the clean-up of the step networks a dead build left in its
// directory; nil when this host cannot have made any (no CNI plugins).
func removeNetworks(stateDir string) func(ctx context.Context, dir string) error {
	nm, err := network.New(network.None, network.Config{StateDir: stateDir})
	if err != nil {
		return nil
	}
	return nm.RemoveOrphans
}

// checkEnv checks -e entries: KEY=VAL with a key.
func checkEnv(env []string) error {
	for _, e := range env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return usageError("--env %q: want KEY=VAL", e)
		}
	}
	return nil
}

// session is what a command that runs containers works with.
type session struct {
	d        *daemon.Daemon
	stateDir string
	network  *network.Manager
	puller   *remote.Puller
	builder  *dockerfile.Builder
}

// open connects to containerd (the embedded one if need be; Close the session when done)
// and clears what dead builds left.
func (g *globals) open(ctx context.Context, stderr io.Writer) (*session, error) {
	stateDir, err := filepath.Abs(g.stateDir)
	if err != nil {
		return nil, usageError("--state-dir: %w", err)
	}
	d, err := g.connect(ctx)
	if err != nil {
		return nil, err
	}
	cleanupEarlier(ctx, d, stateDir, stderr)
	return &session{d: d, stateDir: stateDir}, nil
}

func (s *session) Close() error { return s.d.Close() }

// startBuild opens a session with what a build needs besides: the step networks'
// manager (checked first, so a missing CNI plugin stops before containerd is touched)
// and the image puller.
func (g *globals) startBuild(ctx context.Context, netMode string, pf pullFlags, stderr io.Writer) (*session, error) {
	stateDir, _ := filepath.Abs(g.stateDir)
	nm, err := networkManager(netMode, stateDir)
	if err != nil {
		return nil, err
	}
	s, err := g.open(ctx, stderr)
	if err != nil {
		return nil, err
	}
	s.network = nm
	if s.puller, err = pf.puller(s.d, stderr); err != nil {
		s.Close()
		return nil, err
	}
	if s.builder, err = pf.builder(s, g.namespace); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// preconditions prints the problems of a *steps.PreconditionError, one a line, and turns
// it into exit status 2; other errors pass through.
func preconditions(err error, stderr io.Writer) error {
	var pe *steps.PreconditionError
	if errors.As(err, &pe) {
		printErrors(stderr, pe)
		return &exitError{code: 2, err: fmt.Errorf("%w: preconditions not met", errReported)}
	}
	return err
}

// pushFunc is what push steps do: nothing without --push. A step's own credentials win
// over those of the Docker config for their registries.
func pushFunc(push bool, s *session) func(ctx context.Context, source, target string, creds remote.Credentials) error {
	if !push {
		return nil
	}
	return s.puller.PushWith
}
