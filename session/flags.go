package session

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/pflag"

	"github.com/crun-ci/crun-ci/civars"
	"github.com/crun-ci/crun-ci/cmdline"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/daemon"
	"github.com/crun-ci/crun-ci/dockerfile"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/steps"
)

// Flags binds the options of sessions, pipelines and builds to command-line flags, as
// kubectl's genericclioptions binds its clients' options: a command adds the groups it
// takes to its flag set, parses, and reads the values back as this package's types.
// What a flag's value cannot be is a *cmdline.UsageError.
type Flags struct {
	// Global: where containerd and the state are.
	address, namespace, stateDir string

	// Project: the pipeline's files, the operator's grants and bounds.
	dir, servicesPath, stepsPath string
	allow                        []string
	maxFile                      string
	privileged, unconfined       bool
	pids                         int64
	memory                       string

	// Build: its network, images, key, credentials and CI values.
	network, subnet, bridge, access string
	ifPresent, noCache              bool
	insecure                        []string
	cacheMax, cacheRegistry         string
	keyPath                         string
	dockercfg, credService, docker  string
	ci                              map[string]*string

	// Containers: how the build's containers run and stop (steps, run).
	env                        []string
	quietDeps                  bool
	stopTimeout, healthTimeout time.Duration
	containers                 bool // added
	// NoRemove keeps containers, snapshots and anonymous volumes (--no-remove, added by
	// the commands that take it).
	NoRemove bool

	// Steps: which steps run, how many at once, for how long (steps).
	tag         string
	push        bool
	maxParallel int
	stepTimeout time.Duration
	steps       bool // added
	junit       string
	events      string
	keep        bool
	keepFor     time.Duration
	// DryRun is --dry-run: the plan is printed, nothing runs.
	DryRun bool

	// Run: the service's container (run).
	entrypoint string
	// NoTTY is --no-tty: no terminal, even when standard input is one.
	NoTTY bool
}

// AddRun adds how `run` runs its service's container.
func (f *Flags) AddRun(fs *pflag.FlagSet) {
	fs.StringVar(&f.entrypoint, "entrypoint", "", "replace the service's entrypoint (split like a command)")
	fs.BoolVar(&f.NoRemove, "no-remove", false, "keep the containers, snapshots and anonymous volumes")
	fs.BoolVarP(&f.NoTTY, "no-tty", "T", false, "no terminal, even when standard input is one")
}

// Entrypoint is --entrypoint split like a command, nil when fs does not have it set.
func (f *Flags) Entrypoint(fs *pflag.FlagSet) ([]string, error) {
	if !fs.Changed("entrypoint") {
		return nil, nil
	}
	ep, err := config.SplitCommand(f.entrypoint)
	if err != nil {
		return nil, usage("--entrypoint %q: %w", f.entrypoint, err)
	}
	return ep, nil
}

// usage is a flag whose value cannot be used.
var usage = cmdline.Usagef

// AddGlobal adds where containerd and the state directory are. Each has an environment
// variable, which a CI job sets once: a flag wins over it.
func (f *Flags) AddGlobal(fs *pflag.FlagSet) {
	addr := cmp.Or(os.Getenv("CRUNCI_ADDRESS"), os.Getenv("CONTAINERD_ADDRESS"), daemon.DefaultAddress)
	fs.StringVar(&f.address, "address", addr, "containerd socket; when nothing answers there, an embedded containerd is started (env CRUNCI_ADDRESS, then CONTAINERD_ADDRESS)")
	fs.StringVar(&f.namespace, "namespace", cmp.Or(os.Getenv("CRUNCI_NAMESPACE"), "crun-ci"), "containerd namespace (env CRUNCI_NAMESPACE)")
	fs.StringVar(&f.stateDir, "state-dir", cmp.Or(os.Getenv("CRUNCI_STATE_DIR"), network.DefaultStateDir), "state directory: builds' working files and the embedded containerd's root (env CRUNCI_STATE_DIR)")
}

// AddProject adds where the pipeline's files are (with steps, the steps file's too) and
// the operator's grants and bounds.
func (f *Flags) AddProject(fs *pflag.FlagSet, withSteps bool) {
	fs.StringVar(&f.dir, "dir", ".", "build directory")
	fs.StringVar(&f.servicesPath, "services-path", "", "services file (default: codeship-services.yml, .json or docker-compose.yml in --dir)")
	if withSteps {
		fs.StringVar(&f.stepsPath, "steps-path", "", "steps file (default: codeship-steps.yml or .json in --dir)")
	}
	fs.StringArrayVar(&f.allow, "allow-host-path", nil, "absolute host path prefix that volumes may mount besides the build directory (repeatable)")
	fs.StringVar(&f.maxFile, "max-file-size", "10MiB", "bound of each Dockerfile, .dockerignore, env and encrypted file crun-ci reads from the build directory")
	fs.BoolVar(&f.privileged, "allow-privileged", false, "let services widen their containers beyond Docker's defaults: privileged, cap_add beyond the default set, devices, systempaths=unconfined")
	fs.BoolVar(&f.unconfined, "allow-unconfined", false, "let services replace or turn off the seccomp profile (security_opt: seccomp=unconfined or a profile file)")
	fs.Int64Var(&f.pids, "pids-limit", steps.DefaultPidsLimit, "pids limit of every container, and the most a service's pids_limit may ask for (0 or -1: no limit)")
	fs.StringVar(&f.memory, "memory-limit", "0", "memory limit of every container whose service sets no mem_limit, and the most one may ask for (as mem_limit: 512m, 2g; 0: no limit)")
}

// AddBuild adds what a build needs besides: its network, images, key, credentials and CI
// values.
func (f *Flags) AddBuild(fs *pflag.FlagSet) {
	fs.StringVar(&f.network, "network", string(network.Bridge), "network of each step: bridge (a network per step, an address per container), host or none (loopback only, shared by the step's containers)")
	fs.StringVar(&f.subnet, "subnet", "", "IPv4 subnet the step networks take their addresses from (default: the one stored in the state directory, else "+network.DefaultSubnet+")")
	fs.StringVar(&f.bridge, "bridge", "", "prefix of the step networks' bridge names, at most 10 characters (default: the one stored in the state directory, else cr and a hash of it)")
	fs.StringVar(&f.access, "host-access", string(network.HostAccessNone), "whether steps may connect to the host itself: none or gateway (as Docker)")
	fs.BoolVar(&f.ifPresent, "pull-if-present", false, "pull images even when they are in containerd's store")
	fs.StringArrayVar(&f.insecure, "insecure-registry", nil, "registry (HOST[:PORT]) to reach over plain HTTP; loopback registries always are (repeatable)")
	fs.BoolVar(&f.noCache, "no-cache", false, "build every layer of built images anew, ignoring the layer cache")
	fs.StringVar(&f.cacheMax, "cache-max-size", "10GB", "bound of the layer cache of built images (e.g. 500MB, 20GiB; 0: no bound); least recently used layers go first")
	fs.StringVar(&f.cacheRegistry, "cache-registry", os.Getenv("CRUNCI_CACHE_REGISTRY"), "repository (HOST[:PORT]/NAME) that built layers are pushed to and looked up in before they are built, shared by many hosts; unreachable, it gives warnings (env CRUNCI_CACHE_REGISTRY)")
	f.AddKeyPath(fs)
	fs.StringVar(&f.dockercfg, "encrypted-dockercfg-path", "", "encrypted Docker config (relative to the build directory) whose logins every pull uses, below the services' and steps' own")
	fs.StringVar(&f.docker, "docker-host", "", "Docker daemon (unix:///var/run/docker.sock, tcp://HOST:PORT) for services with add_docker: true, which are refused without it; its socket gives a pipeline root on the host")
	fs.StringVar(&f.credService, "dockercfg-service", "", "service whose container writes the logins every pull uses (as a dockercfg_service), below the services' and steps' own")
	f.ci = map[string]*string{}
	for _, name := range civars.FlagNames() {
		f.ci[name] = fs.String("ci-"+name, "", "CI_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))+" for the containers (default: from the build directory's git repository)")
	}
}

// AddContainers adds how the build's containers run and are stopped (steps, run); what
// names the containers -e reaches.
func (f *Flags) AddContainers(fs *pflag.FlagSet, what string) {
	f.containers = true
	f.AddEnv(fs, what)
	fs.BoolVar(&f.quietDeps, "quiet-deps", false, "hide the output of the services a step depends on")
	fs.DurationVar(&f.stopTimeout, "stop-timeout", 10*time.Second, "when interrupted or timed out, how long running steps get after their stop signal before SIGKILL")
	fs.DurationVar(&f.healthTimeout, "health-timeout", steps.DefaultHealthTimeout, "how long a step waits for a dependency with a health check to be healthy (checked every second, as jet did)")
}

// AddEnv adds -e, variables added to what's environment (Env).
func (f *Flags) AddEnv(fs *pflag.FlagSet, what string) {
	fs.StringArrayVarP(&f.env, "env", "e", nil, "KEY=VAL added to "+what+"'s environment; KEY alone takes crun-ci's own variable, as docker run -e does (repeatable)")
}

// Env is -e as KEY=VAL entries: KEY alone takes crun-ci's own variable, or nothing
// when crun-ci has none.
func (f *Flags) Env() ([]string, error) {
	var env []string
	for _, e := range f.env {
		k, _, ok := strings.Cut(e, "=")
		switch {
		case k == "":
			return nil, usage("--env %q: want KEY=VAL or KEY", e)
		case !ok:
			// As docker run -e KEY: crun-ci's own value, or nothing when it has none.
			if v, set := os.LookupEnv(k); set {
				env = append(env, k+"="+v)
			}
		default:
			env = append(env, e)
		}
	}
	return env, nil
}

// AddSteps adds which of the pipeline's steps run, how many at once and for how long.
func (f *Flags) AddSteps(fs *pflag.FlagSet) {
	f.steps = true
	fs.BoolVar(&f.push, "push", false, "run push steps (without it they are skipped)")
	fs.StringVar(&f.tag, "tag", "", "the build's branch or tag, matched by the steps' tag and exclude (without it, steps with a tag are skipped, as jet did)")
	fs.BoolVar(&f.NoRemove, "no-remove", false, "keep containers, snapshots and anonymous volumes after each step, until the next clean-up (crun-ci debug can enter them meanwhile)")
	fs.BoolVar(&f.keep, "keep-on-failure", false, "keep the containers, snapshots and volumes of failed steps for crun-ci debug BUILD STEP, until crun-ci cleanup --kept")
	fs.DurationVar(&f.keepFor, "keep-for", 0, "with --keep-on-failure: let the clean-up of later runs remove the kept build after this long (0: only crun-ci cleanup --kept does)")
	fs.BoolP("no-tty", "T", false, "accepted for jet's scripts: steps never get a terminal")
	fs.IntVar(&f.maxParallel, "max-parallel", steps.DefaultMaxParallel(), "how many steps may run at once (default: four per CPU, at least 8)")
	fs.DurationVar(&f.stepTimeout, "step-timeout", 0, "stop and fail a step that runs longer than this (0: no limit; a step's timeout key wins)")
	fs.BoolVar(&f.DryRun, "dry-run", false, "print the steps (skipped ones with why), their containers, images, mounts and networks; run nothing")
	fs.StringVar(&f.junit, "junit", "", "write the results as JUnit XML to this file (for GitLab, Jenkins, Buildkite)")
	fs.StringVar(&f.events, "events", "", "write what happens (build, steps, dependencies, images) as JSON lines to this file, or - for standard output")
}

// OpenEvents opens --events for b: its file (created or emptied), or stdout for "-";
// close says the first error of writing. Without the flag it does nothing.
func (f *Flags) OpenEvents(b *Build, stdout io.Writer) (close func() error, _ error) {
	if f.events == "" {
		return func() error { return nil }, nil
	}
	w, done := stdout, func() error { return nil }
	if f.events != "-" {
		file, err := os.OpenFile(f.events, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, usage("--events: %w", err)
		}
		w, done = file, file.Close
	}
	events, failed := steps.JSONEvents(w)
	b.Events = events
	return func() error {
		err := errors.Join(failed(), done())
		if err != nil {
			return fmt.Errorf("--events %s: %w", f.events, err)
		}
		return nil
	}, nil
}

// JUnit is --junit, the file the results go to as JUnit XML ("" for none).
func (f *Flags) JUnit() string { return f.junit }

// AddKeyPath adds --key-path, the key file of encrypted files.
func (f *Flags) AddKeyPath(fs *pflag.FlagSet) {
	fs.StringVar(&f.keyPath, "key-path", "", "key file of encrypted files (default: codeship.aes in the build directory; env "+KeyEnv+" may hold the key's base64 instead)")
}

// KeyPath is --key-path ("" for codeship.aes in the build directory).
func (f *Flags) KeyPath() string { return f.keyPath }

// Pipeline is where the project's files are; checkFiles as Pipeline.CheckFiles.
func (f *Flags) Pipeline(withSteps, checkFiles bool) Pipeline {
	return Pipeline{Dir: f.dir, Services: f.servicesPath, Steps: f.stepsPath, NoSteps: !withSteps, CheckFiles: checkFiles, KeyPath: f.keyPath}
}

// Policy is the operator's grants and bounds.
func (f *Flags) Policy() (steps.Policy, error) {
	for _, a := range f.allow {
		if !filepath.IsAbs(a) {
			return steps.Policy{}, usage("--allow-host-path %q: not an absolute path", a)
		}
	}
	max, err := dockerfile.ParseSize(f.maxFile)
	if err != nil || max <= 0 {
		return steps.Policy{}, usage("--max-file-size %q: want a positive size (10MiB, 500KB)", f.maxFile)
	}
	// As a service's mem_limit reads (and docker run --memory): binary units, 512m = 512 MiB.
	var mem int64
	if f.memory != "0" {
		if mem, err = units.RAMInBytes(f.memory); err != nil || mem <= 0 {
			return steps.Policy{}, usage("--memory-limit %q: want a size as mem_limit takes it (512m, 2g) or 0", f.memory)
		}
	}
	pids := f.pids
	switch {
	case pids == 0 || pids == -1:
		pids = -1 // none
	case pids < -1:
		return steps.Policy{}, usage("--pids-limit %d: want a positive number, or 0 for no limit", pids)
	}
	return steps.Policy{Allow: f.allow, MaxFile: max, Privileged: f.privileged, Unconfined: f.unconfined, PidsLimit: pids, MemoryLimit: mem}, nil
}

// Options are the session's options: the global flags and, when AddBuild added them,
// the network's and the pulls'.
func (f *Flags) Options() (Options, error) {
	stateDir, err := filepath.Abs(f.stateDir)
	if err != nil {
		return Options{}, usage("--state-dir: %w", err)
	}
	o := Options{Address: f.address, Namespace: f.namespace, StateDir: stateDir}
	if f.network == "" {
		return o, nil // no build
	}
	if o.Network, err = network.ParseMode(f.network); err != nil {
		return o, usage("--network: %w", err)
	}
	if o.HostAccess, err = network.ParseHostAccess(f.access); err != nil {
		return o, usage("--host-access: %w", err)
	}
	o.Subnet, o.Bridge = f.subnet, f.bridge
	if o.Pull.CacheMaxSize, err = dockerfile.ParseSize(f.cacheMax); err != nil {
		return o, usage("--cache-max-size: %w", err)
	}
	o.Pull.IfPresent, o.Pull.Insecure, o.Pull.NoCache = f.ifPresent, f.insecure, f.noCache
	if f.cacheRegistry != "" {
		if o.Pull.CacheRegistry, err = dockerfile.ParseCacheRegistry(f.cacheRegistry); err != nil {
			return o, usage("--cache-registry: %w", err)
		}
	}
	return o, nil
}

// Identity is the build's key file, CI values and tag.
func (f *Flags) Identity() Identity {
	id := Identity{KeyPath: f.keyPath, CI: map[string]string{}, Tag: f.tag}
	for name, p := range f.ci {
		id.CI[name] = *p
	}
	return id
}

// Apply sets what the flags say of b: its environment (-e), credentials, Docker daemon
// and, when AddContainers and AddSteps added them, how its containers stop and its
// steps run.
func (f *Flags) Apply(b *Build) error {
	switch {
	case f.stepTimeout < 0:
		return usage("--step-timeout %s: want a positive duration or 0", f.stepTimeout)
	case f.keepFor < 0:
		return usage("--keep-for %s: want a positive duration or 0", f.keepFor)
	case f.keepFor > 0 && !f.keep:
		return usage("--keep-for %s: keeps nothing without --keep-on-failure", f.keepFor)
	case f.steps && f.maxParallel < 1:
		return usage("--max-parallel %d: want at least 1", f.maxParallel)
	case f.containers && f.stopTimeout <= 0:
		return usage("--stop-timeout %s: want a positive duration", f.stopTimeout)
	case f.containers && f.healthTimeout <= 0:
		return usage("--health-timeout %s: want a positive duration", f.healthTimeout)
	}
	env, err := f.Env()
	if err != nil {
		return err
	}
	b.Env = append(b.Env, env...)
	b.NoRemove, b.QuietDeps, b.StopTimeout, b.HealthTimeout = f.NoRemove, f.quietDeps, f.stopTimeout, f.healthTimeout
	b.EncryptedDockercfgPath, b.DockercfgService, b.DockerHost = f.dockercfg, f.credService, f.docker
	b.MaxParallel, b.StepTimeout, b.Push = f.maxParallel, f.stepTimeout, f.push
	b.KeepOnFailure, b.KeepFor = f.keep, f.keepFor
	return nil
}
