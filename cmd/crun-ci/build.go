package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/docker/go-units"
	"github.com/spf13/pflag"

	"github.com/crun-ci/crun-ci/civars"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/dockerfile"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/session"
	"github.com/crun-ci/crun-ci/steps"
)

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
	subnet    string
	bridge    string
	access    string
	ifPresent bool
	insecure  []string
	noCache   bool
	cacheMax  string
	keyPath   string
	dockercfg string
	credSvc   string
	// checkFiles makes load check every env and encrypted file (validate).
	checkFiles bool
	docker     string
	ci         map[string]*string

	// Of the commands that run containers: steps and run.
	env           []string
	noRemove      bool
	quietDeps     bool
	stopTimeout   time.Duration
	healthTimeout time.Duration
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
	fs.StringVar(&b.network, "network", string(network.Bridge), "network of each step: bridge (a network per step, an address per container), host or none (loopback only, shared by the step's containers)")
	fs.StringVar(&b.subnet, "subnet", "", "IPv4 subnet the step networks take their addresses from (default: the one stored in the state directory, else "+network.DefaultSubnet+")")
	fs.StringVar(&b.bridge, "bridge", "", "prefix of the step networks' bridge names, at most 10 characters (default: the one stored in the state directory, else cr and a hash of it)")
	fs.StringVar(&b.access, "host-access", string(network.HostAccessNone), "whether steps may connect to the host itself: none or gateway (as Docker)")
	fs.BoolVar(&b.ifPresent, "pull-if-present", false, "pull images even when they are in containerd's store")
	fs.StringArrayVar(&b.insecure, "insecure-registry", nil, "registry (HOST[:PORT]) to reach over plain HTTP; loopback registries always are (repeatable)")
	fs.BoolVar(&b.noCache, "no-cache", false, "build every layer of built images anew, ignoring the layer cache")
	fs.StringVar(&b.cacheMax, "cache-max-size", "10GB", "bound of the layer cache of built images (e.g. 500MB, 20GiB; 0: no bound); least recently used layers go first")
	addKeyPath(fs, &b.keyPath)
	fs.StringVar(&b.dockercfg, "encrypted-dockercfg-path", "", "encrypted Docker config (relative to the build directory) whose logins every pull uses, below the services' and steps' own")
	fs.StringVar(&b.docker, "docker-host", "", "Docker daemon (unix:///var/run/docker.sock, tcp://HOST:PORT) for services with add_docker: true, which are refused without it; its socket gives a pipeline root on the host")
	fs.StringVar(&b.credSvc, "dockercfg-service", "", "service whose container writes the logins every pull uses (as a dockercfg_service), below the services' and steps' own")
	b.ci = map[string]*string{}
	for _, name := range civars.FlagNames() {
		b.ci[name] = fs.String("ci-"+name, "", "CI_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))+" for the containers (default: from the build directory's git repository)")
	}
}

// addContainers adds how the build's containers run and are stopped (steps, run).
func (b *buildFlags) addContainers(fs *pflag.FlagSet, what string) {
	fs.StringArrayVarP(&b.env, "env", "e", nil, "KEY=VAL added to "+what+"'s environment; KEY alone takes crun-ci's own variable, as docker run -e does (repeatable)")
	fs.BoolVar(&b.quietDeps, "quiet-deps", false, "hide the output of the services a step depends on")
	fs.DurationVar(&b.stopTimeout, "stop-timeout", 10*time.Second, "when interrupted or timed out, how long running steps get after their stop signal before SIGKILL")
	fs.DurationVar(&b.healthTimeout, "health-timeout", steps.DefaultHealthTimeout, "how long a step waits for a dependency with a health check to be healthy (checked every second, as jet did)")
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
// runs the checks that need no containerd, printing every problem, one per line, and
// the warnings of what it ignores.
func (b *buildFlags) load(stderr io.Writer, withSteps, check bool) (*config.Project, steps.Policy, error) {
	policy, err := b.policy()
	if err != nil {
		return nil, policy, err
	}
	p := session.Pipeline{Dir: b.dir, Services: b.servicesPath, Steps: b.stepsPath, NoSteps: !withSteps, CheckFiles: b.checkFiles, KeyPath: b.keyPath}
	proj, warnings, err := p.Load(policy, check)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "crun-ci: warning: "+w.Error())
	}
	if err != nil {
		printErrors(stderr, err)
		return nil, policy, &exitError{code: 2, err: fmt.Errorf("%w: invalid pipeline", errReported)}
	}
	return proj, policy, nil
}

// start makes the build of proj and opens its session.
func (b *buildFlags) start(ctx context.Context, c *cli, proj *config.Project, policy steps.Policy, tag string) (*session.Session, session.Build, error) {
	o, err := c.options()
	if err != nil {
		return nil, session.Build{}, err
	}
	if o.Network, err = network.ParseMode(b.network); err != nil {
		return nil, session.Build{}, usageError("--network: %w", err)
	}
	if o.HostAccess, err = network.ParseHostAccess(b.access); err != nil {
		return nil, session.Build{}, usageError("--host-access: %w", err)
	}
	o.Subnet, o.Bridge = b.subnet, b.bridge
	if o.Pull.CacheMaxSize, err = dockerfile.ParseSize(b.cacheMax); err != nil {
		return nil, session.Build{}, usageError("--cache-max-size: %w", err)
	}
	o.Pull.IfPresent, o.Pull.Insecure, o.Pull.NoCache = b.ifPresent, b.insecure, b.noCache
	env := make([]string, 0, len(b.env))
	for _, e := range b.env {
		k, _, ok := strings.Cut(e, "=")
		switch {
		case k == "":
			return nil, session.Build{}, usageError("--env %q: want KEY=VAL or KEY", e)
		case !ok:
			// As docker run -e KEY: crun-ci's own value, or nothing when it has none.
			if v, set := os.LookupEnv(k); set {
				env = append(env, k+"="+v)
			}
		default:
			env = append(env, e)
		}
	}
	id := session.Identity{KeyPath: b.keyPath, CI: map[string]string{}, Tag: tag}
	for name, p := range b.ci {
		id.CI[name] = *p
	}
	build, err := session.NewBuild(ctx, proj, policy, id)
	if err != nil {
		return nil, build, &exitError{code: 2, err: err}
	}
	s, err := open(ctx, o)
	if err != nil {
		return nil, build, err
	}
	build.Env, build.NoRemove, build.QuietDeps, build.StopTimeout, build.HealthTimeout = env, b.noRemove, b.quietDeps, b.stopTimeout, b.healthTimeout
	build.Output, build.Hurry, build.EncryptedDockercfgPath, build.DockercfgService, build.DockerHost = c.stdout, hurry, b.dockercfg, b.credSvc, b.docker
	return s, build, nil
}

func runSteps(ctx context.Context, c *cli, args []string) (retErr error) {
	var (
		b           buildFlags
		tag         string
		maxParallel int
		stepTimeout time.Duration
		push        bool
	)
	fs := c.flags("steps", "")
	fs.BoolVar(&push, "push", false, "run push steps (without it they are skipped)")
	b.addProject(fs, true)
	b.addBuild(fs)
	b.addContainers(fs, "every container")
	fs.StringVar(&tag, "tag", "", "the build's branch or tag, matched by the steps' tag and exclude (without it, steps with a tag are skipped, as jet did)")
	fs.BoolVar(&b.noRemove, "no-remove", false, "keep containers, snapshots and anonymous volumes after each step")
	fs.BoolP("no-tty", "T", false, "accepted for jet's scripts: steps never get a terminal")
	fs.IntVar(&maxParallel, "max-parallel", runtime.NumCPU(), "how many steps may run at once")
	fs.DurationVar(&stepTimeout, "step-timeout", 0, "stop and fail a step that runs longer than this (0: no limit; a step's timeout key wins)")
	if ok, err := c.parse(fs, args); !ok || err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError("steps takes no arguments, got %q", fs.Args())
	case b.stopTimeout <= 0:
		return usageError("--stop-timeout %s: want a positive duration", b.stopTimeout)
	case b.healthTimeout <= 0:
		return usageError("--health-timeout %s: want a positive duration", b.healthTimeout)
	case stepTimeout < 0:
		return usageError("--step-timeout %s: want a positive duration or 0", stepTimeout)
	case maxParallel < 1:
		return usageError("--max-parallel %d: want at least 1", maxParallel)
	}
	proj, policy, err := b.load(c.stderr, true, true)
	if err != nil {
		return err
	}
	s, build, err := b.start(ctx, c, proj, policy, tag)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, s.Close()) }()
	build.MaxParallel, build.StepTimeout, build.Push = maxParallel, stepTimeout, push
	sum, err := s.Steps(ctx, build)
	if errors.As(err, new(*steps.PreconditionError)) {
		return preconditions(err, c.stderr)
	}
	if sum != nil {
		sum.Print(c.stdout)
	}
	if err != nil {
		return err
	}
	if err := interrupted(ctx); err != nil {
		return err
	}
	if !sum.Passed() {
		return &exitError{code: 1, err: fmt.Errorf("%w: build %s failed", errReported, build.CI.BuildID)}
	}
	return nil
}

// runRun is `crun-ci run SERVICE [COMMAND [ARGS…]]`: one container of the service with
// its dependencies, like one step, attached to crun-ci's standard input and output.
func runRun(ctx context.Context, c *cli, args []string) (retErr error) {
	var (
		b          buildFlags
		entrypoint string
		noTTY      bool
	)
	fs := c.flags("run", " SERVICE [COMMAND [ARGS…]]")
	b.addBuild(fs)
	fs.SetInterspersed(false) // flags after SERVICE belong to the command
	b.addProject(fs, false)
	b.addContainers(fs, "the container")
	fs.StringVar(&entrypoint, "entrypoint", "", "replace the service's entrypoint (split like a command)")
	fs.BoolVar(&b.noRemove, "no-remove", false, "keep the containers, snapshots and anonymous volumes")
	fs.BoolVarP(&noTTY, "no-tty", "T", false, "no terminal, even when standard input is one")
	if ok, err := c.parse(fs, args); !ok || err != nil {
		return err
	}
	switch {
	case fs.NArg() == 0:
		return usageError("run: no service given")
	case b.healthTimeout <= 0:
		return usageError("--health-timeout %s: want a positive duration", b.healthTimeout)
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
	proj, policy, err := b.load(c.stderr, false, true)
	if err != nil {
		return err
	}
	if _, ok := proj.Services[service]; !ok {
		return usageError("run: no service %q in %s", service, rel(proj.Dir, proj.ServicesFile))
	}
	attach, reset, err := session.Attach(os.Stdin, c.stdout, c.stderr, !noTTY)
	if err != nil {
		return fmt.Errorf("run: terminal: %w", err)
	}
	defer reset()
	s, build, err := b.start(ctx, c, proj, policy, "")
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, s.Close()) }()
	r, err := s.Run(ctx, build, service, command, ep, attach)
	if err := preconditions(err, c.stderr); err != nil {
		return err
	}
	if err := interrupted(ctx); err != nil {
		return err
	}
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
func runLoad(ctx context.Context, c *cli, args []string) (retErr error) {
	var b buildFlags
	fs := c.flags("load", " [SERVICE…]")
	b.addProject(fs, false)
	b.addBuild(fs)
	fs.Bool("no-remove", false, "accepted for jet's scripts: load runs no step container to keep")
	if ok, err := c.parse(fs, args); !ok || err != nil {
		return err
	}
	proj, policy, err := b.load(c.stderr, false, false)
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
	s, build, err := b.start(ctx, c, proj, policy, "")
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, s.Close()) }()
	sum, err := s.Load(ctx, build, names)
	if err := preconditions(err, c.stderr); err != nil {
		return err
	}
	var errs []error
	for _, r := range sum.Results {
		if r.Err != nil {
			errs = append(errs, r.Err)
			continue
		}
		fmt.Fprintln(c.stdout, r.Note)
	}
	if err := interrupted(ctx); err != nil {
		return err
	}
	if len(errs) > 0 {
		printErrors(c.stderr, errors.Join(errs...))
		return &exitError{code: 1, err: fmt.Errorf("%w: images not built", errReported)}
	}
	return nil
}
