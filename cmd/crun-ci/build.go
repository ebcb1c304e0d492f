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
	"strings"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/log"
	"github.com/docker/go-units"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/crun-ci/crun-ci/civars"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/dockerfile"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/secrets"
	"github.com/crun-ci/crun-ci/session"
	"github.com/crun-ci/crun-ci/steps"
)

// keyEnv may hold the key's base64 instead of a key file, for CI hosts.
const keyEnv = "CRUNCI_AES_KEY"

// buildFlags are the flags of the commands that read a pipeline (validate) and run a
// build (steps, run, load).
type buildFlags struct {
	dir, servicesPath, stepsPath string
	allow                        []string
	maxFile                      string
	privileged, unconfined       bool
	pids                         int64
	memory                       string

	network   string
	ifPresent bool
	insecure  []string
	noCache   bool
	cacheMax  string
	keyPath   string
	ci        map[string]*string

	// Of the commands that run containers: steps and run.
	env         []string
	noRemove    bool
	quietDeps   bool
	stopTimeout time.Duration
}

// addProject adds where the pipeline's files are (with steps, the steps file's too) and
// the operator's grants and bounds.
func (b *buildFlags) addProject(fs *pflag.FlagSet, withSteps bool) {
	fs.StringVar(&b.dir, "dir", ".", "build directory")
	fs.StringVar(&b.servicesPath, "services-path", "", "services file (default: codeship-services.yml, .json or docker-compose.yml in --dir)")
	if withSteps {
		fs.StringVar(&b.stepsPath, "steps-path", "", "steps file (default: codeship-steps.yml or .json in --dir)")
	}
	fs.StringArrayVar(&b.allow, "allow-host-path", nil, "absolute host path prefix that volumes may mount besides the build directory (repeatable)")
	fs.StringVar(&b.maxFile, "max-file-size", "10MiB", "bound of each Dockerfile, .dockerignore, env and encrypted file crun-ci reads from the build directory")
	fs.BoolVar(&b.privileged, "allow-privileged", false, "let services widen their containers beyond Docker's defaults: privileged, cap_add beyond the default set, devices, systempaths=unconfined")
	fs.BoolVar(&b.unconfined, "allow-unconfined", false, "let services replace or turn off the seccomp profile (security_opt: seccomp=unconfined or a profile file)")
	fs.Int64Var(&b.pids, "pids-limit", steps.DefaultPidsLimit, "pids limit of every container, and the most a service's pids_limit may ask for (0 or -1: no limit)")
	fs.StringVar(&b.memory, "memory-limit", "0", "memory limit of every container whose service sets no mem_limit, and the most one may ask for (as mem_limit: 512m, 2g; 0: no limit)")
}

// addBuild adds what a build needs besides: its network, images, key and CI values.
func (b *buildFlags) addBuild(fs *pflag.FlagSet) {
	fs.StringVar(&b.network, "network", string(network.Bridge), "network of each step: bridge (a namespace per step on the crunci0 bridge), host or none")
	fs.BoolVar(&b.ifPresent, "pull-if-present", false, "pull images even when they are in containerd's store")
	fs.StringArrayVar(&b.insecure, "insecure-registry", nil, "registry (HOST[:PORT]) to reach over plain HTTP; loopback registries always are (repeatable)")
	fs.BoolVar(&b.noCache, "no-cache", false, "build every layer of built images anew, ignoring the layer cache")
	fs.StringVar(&b.cacheMax, "cache-max-size", "10GB", "bound of the layer cache of built images (e.g. 500MB, 20GiB; 0: no bound); least recently used layers go first")
	addKeyPath(fs, &b.keyPath)
	b.ci = map[string]*string{}
	for _, name := range civars.FlagNames() {
		b.ci[name] = fs.String("ci-"+name, "", "CI_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))+" for the containers (default: from the build directory's git repository)")
	}
}

// addContainers adds how the build's containers run and are stopped (steps, run).
func (b *buildFlags) addContainers(fs *pflag.FlagSet, what string) {
	fs.StringArrayVarP(&b.env, "env", "e", nil, "KEY=VAL added to "+what+"'s environment (repeatable)")
	fs.BoolVar(&b.quietDeps, "quiet-deps", false, "hide the output of the services a step depends on")
	fs.DurationVar(&b.stopTimeout, "stop-timeout", 10*time.Second, "when interrupted or timed out, how long running steps get after their stop signal before SIGKILL")
}

// policy checks the grant and bound flags and returns the policy they give.
func (b *buildFlags) policy() (steps.Policy, error) {
	for _, a := range b.allow {
		if !filepath.IsAbs(a) {
			return steps.Policy{}, usageError("--allow-host-path %q: not an absolute path", a)
		}
	}
	max, err := dockerfile.ParseSize(b.maxFile)
	if err != nil || max <= 0 {
		return steps.Policy{}, usageError("--max-file-size %q: want a positive size (10MiB, 500KB)", b.maxFile)
	}
	// As a service's mem_limit reads (and docker run --memory): binary units, 512m = 512 MiB.
	var mem int64
	if b.memory != "0" {
		if mem, err = units.RAMInBytes(b.memory); err != nil || mem <= 0 {
			return steps.Policy{}, usageError("--memory-limit %q: want a size as mem_limit takes it (512m, 2g) or 0", b.memory)
		}
	}
	pids := b.pids
	switch {
	case pids == 0 || pids == -1:
		pids = -1 // none
	case pids < -1:
		return steps.Policy{}, usageError("--pids-limit %d: want a positive number, or 0 for no limit", pids)
	}
	return steps.Policy{Allow: b.allow, MaxFile: max, Privileged: b.privileged, Unconfined: b.unconfined, PidsLimit: pids, MemoryLimit: mem}, nil
}

// load reads the pipeline (without its steps file unless withSteps) and, with check,
// runs the checks that need no containerd (steps.Check), printing every problem, one per
// line, and the warnings of what it ignores.
func (b *buildFlags) load(ctx context.Context, stderr io.Writer, withSteps, check bool) (*config.Project, steps.Policy, error) {
	policy, err := b.policy()
	if err != nil {
		return nil, policy, err
	}
	var proj *config.Project
	if withSteps {
		proj, err = config.Load(b.dir, b.servicesPath, b.stepsPath)
	} else {
		proj, err = config.LoadServices(b.dir, b.servicesPath)
	}
	if err == nil {
		for _, w := range steps.Warnings(proj) {
			fmt.Fprintln(stderr, "crun-ci: warning: "+w.Error())
		}
		if check {
			err = steps.Check(proj, policy)
		}
	}
	if err != nil {
		printErrors(stderr, err)
		return nil, policy, &exitError{code: 2, err: fmt.Errorf("%w: invalid pipeline", errReported)}
	}
	return proj, policy, nil
}

// start opens the session of a build of proj and says what the build is: its key, CI
// values (for the build id and tag) and the flags' settings.
func (b *buildFlags) start(ctx context.Context, g globals, proj *config.Project, policy steps.Policy, tag string, stdout, stderr io.Writer) (*session.Session, session.Build, error) {
	o, err := g.options(stderr)
	if err != nil {
		return nil, session.Build{}, err
	}
	if o.Network, err = network.ParseMode(b.network); err != nil {
		return nil, session.Build{}, usageError("--network: %w", err)
	}
	if o.Pull.CacheMaxSize, err = dockerfile.ParseSize(b.cacheMax); err != nil {
		return nil, session.Build{}, usageError("--cache-max-size: %w", err)
	}
	o.Pull.IfPresent, o.Pull.Insecure, o.Pull.NoCache = b.ifPresent, b.insecure, b.noCache
	for _, e := range b.env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return nil, session.Build{}, usageError("--env %q: want KEY=VAL", e)
		}
	}
	key, keySource, err := secrets.FindKey(os.Getenv(keyEnv), keyEnv, secrets.KeyPath(proj.Dir, b.keyPath))
	if err != nil {
		return nil, session.Build{}, &exitError{code: 2, err: err}
	}
	flags := map[string]string{}
	for name, p := range b.ci {
		flags[name] = *p
	}
	civ, err := civars.Resolve(ctx, proj.Dir, flags, steps.NewBuildID(), tag)
	if err != nil {
		return nil, session.Build{}, usageError("%w", err)
	}
	if tag == "" {
		tag = civ.Branch // the branch, or the tag at HEAD
	}
	s, err := open(ctx, o)
	if err != nil {
		return nil, session.Build{}, err
	}
	log.G(ctx).Debugf("build %s in %s", civ.BuildID, proj.Dir)
	return s, session.Build{
		Project: proj, Policy: policy, Key: key, KeySource: keySource, CI: civ, Tag: tag,
		Env: b.env, NoRemove: b.noRemove, QuietDeps: b.quietDeps, StopTimeout: b.stopTimeout,
		Output: stdout, Hurry: hurry,
	}, nil
}

func runSteps(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) (retErr error) {
	var (
		b           buildFlags
		tag         string
		maxParallel int
		stepTimeout time.Duration
		push        bool
	)
	fs := commandFlags("steps", &g, stderr, "")
	fs.BoolVar(&push, "push", false, "run push steps (without it they are skipped)")
	b.addProject(fs, true)
	b.addBuild(fs)
	b.addContainers(fs, "every container")
	fs.StringVar(&tag, "tag", "", "the build's branch or tag, matched by the steps' tag and exclude (default: the git branch, or the tag at HEAD)")
	fs.BoolVar(&b.noRemove, "no-remove", false, "keep containers, snapshots and anonymous volumes after each step")
	fs.IntVar(&maxParallel, "max-parallel", runtime.NumCPU(), "how many steps may run at once")
	fs.DurationVar(&stepTimeout, "step-timeout", 0, "stop and fail a step that runs longer than this (0: no limit; a step's timeout key wins)")
	if ok, err := parse(fs, &g, args, stderr); !ok || err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError("steps takes no arguments, got %q", fs.Args())
	case b.stopTimeout <= 0:
		return usageError("--stop-timeout %s: want a positive duration", b.stopTimeout)
	case stepTimeout < 0:
		return usageError("--step-timeout %s: want a positive duration or 0", stepTimeout)
	case maxParallel < 1:
		return usageError("--max-parallel %d: want at least 1", maxParallel)
	}
	proj, policy, err := b.load(ctx, stderr, true, true)
	if err != nil {
		return err
	}
	s, build, err := b.start(ctx, g, proj, policy, tag, stdout, stderr)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, s.Close()) }()
	build.MaxParallel, build.StepTimeout, build.Push = maxParallel, stepTimeout, push
	sum, err := s.Steps(ctx, build)
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
		return &exitError{code: 1, err: fmt.Errorf("%w: build %s failed", errReported, build.CI.BuildID)}
	}
	return nil
}

// runRun is `crun-ci run SERVICE [COMMAND [ARGS…]]`: one container of the service with
// its dependencies, like one step, attached to crun-ci's standard input and output.
func runRun(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) (retErr error) {
	var (
		b          buildFlags
		entrypoint string
		noTTY      bool
	)
	fs := commandFlags("run", &g, stderr, " SERVICE [COMMAND [ARGS…]]")
	b.addBuild(fs)
	fs.SetInterspersed(false) // flags after SERVICE belong to the command
	b.addProject(fs, false)
	b.addContainers(fs, "the container")
	fs.StringVar(&entrypoint, "entrypoint", "", "replace the service's entrypoint (split like a command)")
	fs.BoolVar(&b.noRemove, "no-remove", false, "keep the containers, snapshots and anonymous volumes")
	fs.BoolVarP(&noTTY, "no-tty", "T", false, "no terminal, even when standard input is one")
	if ok, err := parse(fs, &g, args, stderr); !ok || err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError("run: no service given")
	}
	service, command := fs.Arg(0), fs.Args()[1:]
	if len(command) == 0 {
		command = nil
	}
	var ep []string
	if fs.Changed("entrypoint") {
		var err error
		if ep, err = config.SplitCommand(entrypoint); err != nil {
			return usageError("--entrypoint %q: %w", entrypoint, err)
		}
	}
	proj, policy, err := b.load(ctx, stderr, false, true)
	if err != nil {
		return err
	}
	if _, ok := proj.Services[service]; !ok {
		return usageError("run: no service %q in %s", service, rel(proj.Dir, proj.ServicesFile))
	}
	attach := &steps.Attach{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr}
	if con, err := console.ConsoleFromFile(os.Stdin); err == nil && !noTTY {
		attach.TTY = true
		if err := con.SetRaw(); err != nil {
			return fmt.Errorf("run: terminal: %w", err)
		}
		defer con.Reset()
		attach.Resize = func(resize func(w, h uint32) error) {
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
	}
	s, build, err := b.start(ctx, g, proj, policy, "", stdout, stderr)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, s.Close()) }()
	sum, err := s.Run(ctx, build, service, command, ep, attach)
	if err := preconditions(err, stderr); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return &exitError{code: 130, err: errors.New("interrupted")}
	}
	if len(sum.Results) != 1 {
		return fmt.Errorf("run: %d results", len(sum.Results))
	}
	r := sum.Results[0]
	switch {
	case r.Err != nil:
		return fmt.Errorf("run %s: %w", service, r.Err)
	case r.Note != "":
		log.G(ctx).Warn(r.Note)
	}
	if r.ExitCode != 0 {
		// The command's own status, as `docker run` gives it.
		return &exitError{code: int(r.ExitCode), err: fmt.Errorf("%w: exit %d", errReported, r.ExitCode)}
	}
	return nil
}

// runLoad is `crun-ci load [SERVICE…]`: make the images of the services (all when none
// is named) present in containerd's store, pulling what is missing and building what has
// a build key, without running any step. It prints the name of each image.
func runLoad(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) (retErr error) {
	var b buildFlags
	fs := commandFlags("load", &g, stderr, " [SERVICE…]")
	b.addProject(fs, false)
	b.addBuild(fs)
	if ok, err := parse(fs, &g, args, stderr); !ok || err != nil {
		return err
	}
	proj, policy, err := b.load(ctx, stderr, false, false)
	if err != nil {
		return err
	}
	names := fs.Args()
	if len(names) == 0 {
		names = proj.Order
	}
	for _, n := range names {
		if _, ok := proj.Services[n]; !ok {
			return usageError("load: no service %q in %s", n, rel(proj.Dir, proj.ServicesFile))
		}
	}
	s, build, err := b.start(ctx, g, proj, policy, "", stdout, stderr)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, s.Close()) }()
	sum, err := s.Load(ctx, build, names)
	if err := preconditions(err, stderr); err != nil {
		return err
	}
	var errs []error
	for _, r := range sum.Results {
		if r.Err != nil {
			errs = append(errs, r.Err)
			continue
		}
		fmt.Fprintln(stdout, r.Note)
	}
	if ctx.Err() != nil {
		return &exitError{code: 130, err: errors.New("interrupted")}
	}
	if len(errs) > 0 {
		printErrors(stderr, errors.Join(errs...))
		return &exitError{code: 1, err: fmt.Errorf("%w: images not built", errReported)}
	}
	return nil
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

// isTerminal reports whether w is a terminal (and TERM does not say it is a dumb one).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
