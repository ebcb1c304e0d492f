package steps

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crun-ci/crun-ci/builds"
	"github.com/crun-ci/crun-ci/civars"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/hostfs"
	"github.com/crun-ci/crun-ci/images"
	"github.com/crun-ci/crun-ci/mounts"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/oci"
	"github.com/crun-ci/crun-ci/pod"
	"github.com/crun-ci/crun-ci/remote"
	"github.com/crun-ci/crun-ci/secrets"
	"github.com/crun-ci/crun-ci/task"
)

// Options configure a build.
type Options struct {
	Project *config.Project
	// Tag is the build's branch or tag, matched by the steps' tag and exclude.
	Tag string
	// Env entries (KEY=VAL) added to every container after the service's.
	Env []string
	// MaxParallel bounds how many run steps run at once; 0 means DefaultMaxParallel.
	MaxParallel int
	// NoRemove keeps containers, snapshots and anonymous volumes after their step; the
	// build is kept (builds.Kept) for crun-ci debug.
	NoRemove bool
	// KeepOnFailure keeps the containers (with their snapshots) and volumes of the steps
	// that fail, and the build for crun-ci debug; the others go as usual. KeepFor, when
	// positive, is how long the clean-up of later runs leaves a kept build alone (for
	// ever otherwise, until crun-ci cleanup --kept).
	KeepOnFailure bool
	KeepFor       time.Duration
	// Policy is what the operator lets the pipeline reach and ask for.
	Policy
	// BuildID names the build; a new one is made when empty.
	BuildID string
	// Namespace is containerd's namespace, which the spec's cgroup path names.
	Namespace string
	// StateDir is crun-ci's state directory; the build works in StateDir/builds/<id>.
	StateDir string
	// Output receives the containers' output, a prefixed line at a time.
	Output io.Writer
	// StopTimeout is how long a task has after SIGTERM before SIGKILL when the build is
	// interrupted or a step times out.
	StopTimeout time.Duration
	// StepTimeout bounds every run step that has no timeout of its own; 0 means none.
	StepTimeout time.Duration
	// EncryptedDockercfgPath (--encrypted-dockercfg-path, relative to the build
	// directory) is an encrypted Docker config whose logins every pull of the build
	// uses, below the services' and steps' own.
	EncryptedDockercfgPath string
	// DockercfgService (--dockercfg-service) names a service of the services file, a
	// credential service whose logins every pull of the build uses (but its own and
	// those of what it needs), below the services' and steps' own.
	DockercfgService string
	// DockerHost (--docker-host: unix:///path or tcp://HOST:PORT) is the Docker daemon
	// that services with add_docker: true get; "" refuses such services.
	DockerHost string
	// HealthTimeout bounds the wait for a dependency to be healthy
	// (DefaultHealthTimeout when 0).
	HealthTimeout time.Duration
	// QuietDeps hides the output of dependencies.
	QuietDeps bool
	// Network gives every step its network namespace; nil runs the containers in the
	// host's network namespace with the host's /etc/hosts and /etc/resolv.conf.
	Network *network.Manager
	// Attach, for crun-ci run, connects the step's own container to a terminal or pipes.
	Attach *Attach
	// Entrypoint, when not nil, replaces the entrypoint of the step's own service.
	Entrypoint []string
	// CIEnv holds the CI_* variables of the build (civars.Values.Env); nil gives CI,
	// CI_NAME, CI_BUILD_ID and CI_BRANCH (the tag).
	CIEnv []string
	// Key decrypts encrypted_env_file and encrypted_environment; nil when there is none,
	// and then a pipeline that needs one fails before it starts. KeySource says where it
	// would come from, for that error.
	Key       *secrets.Key
	KeySource string
	// Pull fetches an image that is not in containerd's store (remote.Puller.PullWith,
	// given the credentials of the services' encrypted_dockercfg_path); nil
	// means images must be there already. With PullIfPresent, present images are pulled
	// again too.
	Pull          func(ctx context.Context, ref string, creds remote.Credentials) error
	PullIfPresent bool
	// Push, when not nil (--push), runs push steps: it pushes the local image source as
	// target (remote.Puller.PushWith). creds are the step's own, from its
	// encrypted_dockercfg_path or dockercfg_service (nil when it has neither); they win
	// over the pusher's for their registries. CI holds the values of image_tag's template.
	Push func(ctx context.Context, source, target string, creds remote.Credentials) error
	CI   civars.Values
	// Builder builds the images of services with a build key, each when the first step
	// that needs it starts; nil refuses such services before anything runs.
	Builder ImageBuilder
	// Load, when not empty, runs no step: Run makes the images of these services present
	// (pulled or built) and reports a result per service.
	Load []string
	// Spec, when not nil, runs no step: Run writes the runtime spec that a container of
	// Spec.Service would get, as JSON, to Spec.Output, with every secret value masked;
	// the result says what kept it from doing so.
	Spec *SpecRequest
	// Hurry, once closed, cuts the stop timeout short: tasks being stopped get SIGKILL
	// at once (a second Ctrl-C).
	Hurry <-chan struct{}
	// Events, when not nil, is told what happens in the build (see Event), from any
	// goroutine; JSONEvents writes them as lines of JSON.
	Events func(Event)
	// Align pads the prefixes of Output to one width, Color gives each service's prefix
	// a colour of its own: for a terminal (without NO_COLOR, for Color).
	Align, Color bool
}

// Attach is how `crun-ci run` connects the container of its service: its output goes
// to Stdout and Stderr as it is, without prefixes, and Stdin (when not nil) to its input.
// With TTY it gets a terminal; Resize, when not nil, is called with a function that sets
// the terminal's size once the container runs.
type Attach struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	TTY            bool
	Resize         func(resize func(width, height uint32) error)
}

// Status is the outcome of one step.
type Status string

// The outcomes of a step.
const (
	Passed      Status = "passed"
	Failed      Status = "failed"
	Skipped     Status = "skipped"
	NotRun      Status = "not run"
	Interrupted Status = "interrupted"
	TimedOut    Status = "timed out"
)

// errTimeout is the cause of a context that ended because a step's timeout passed.
var errTimeout = errors.New("timed out")

// Result is the outcome of one run or push step.
type Result struct {
	Step     string
	Service  string
	Status   Status
	ExitCode uint32
	Duration time.Duration
	// Err is set when the step failed for a reason other than its command's exit status.
	Err error
	// Note explains a skip.
	Note string
	// Group is the names of the groups around the step, outermost first (a step of
	// on_fail has the step whose on_fail it is among them).
	Group []string
	// Start is when the step started (zero when it did not run).
	Start time.Time
	// Tail is the last lines of a failed, timed out or interrupted run step's output (at
	// most TailLines), without prefixes.
	Tail []string
	// Phases are a run step's times, phase by phase.
	Phases Phases
}

// plural is word for n of it.
func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// TailLines is how many lines of a failed step's output its Result keeps.
const TailLines = 100

// Summary holds the results of a build in the order of the steps file.
type Summary struct {
	BuildID string
	Results []Result
	// Duration is how long the build ran, from its first step to its last teardown.
	Duration time.Duration
}

// Passed reports whether no step failed or was interrupted.
func (s *Summary) Passed() bool {
	for _, r := range s.Results {
		if r.Status == Failed || r.Status == Interrupted || r.Status == TimedOut {
			return false
		}
	}
	return true
}

// Print writes the summary: a line per step with its status and duration, the exit code
// or error of a failed step, under the groups around it (a line each, indented), and a
// count with the build's time.
func (s *Summary) Print(w io.Writer) {
	count := map[Status]int{}
	fmt.Fprintf(w, "\nbuild %s:\n", s.BuildID)
	var groups []string // of the line before
	for _, r := range s.Results {
		count[r.Status]++
		same := 0
		for same < len(groups) && same < len(r.Group) && groups[same] == r.Group[same] {
			same++
		}
		for i := same; i < len(r.Group); i++ {
			fmt.Fprintf(w, "%s%s:\n", strings.Repeat("  ", i+1), config.Printable(r.Group[i]))
		}
		groups = r.Group
		indent := strings.Repeat("  ", len(r.Group))
		line := fmt.Sprintf("  %s%-11s %s (%s)", indent, strings.ToUpper(string(r.Status)), config.Printable(r.Step), config.Printable(r.Service))
		if r.Status != NotRun && r.Status != Skipped {
			line += fmt.Sprintf(" %.2fs", r.Duration.Seconds())
		}
		switch {
		case r.Err != nil:
			line += ": " + r.Err.Error()
		case r.Status == Failed:
			line += fmt.Sprintf(": exit code %d", r.ExitCode)
			if r.Note != "" {
				line += " (" + r.Note + ")"
			}
		case r.Status == TimedOut:
			line += fmt.Sprintf(": stopped after %s", r.Duration.Round(time.Millisecond))
		case r.Note != "":
			line += ": " + r.Note
		}
		fmt.Fprintln(w, line)
	}
	var parts []string
	for _, st := range []Status{Passed, Failed, TimedOut, Interrupted, Skipped, NotRun} {
		if count[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[st], st))
		}
	}
	if len(parts) == 0 {
		parts = []string{"no steps ran"}
	}
	total := ""
	if s.Duration > 0 {
		total = fmt.Sprintf(" in %.2fs", s.Duration.Seconds())
	}
	fmt.Fprintln(w, strings.Join(parts, ", ")+total)
}

// PreconditionError lists everything that keeps a pipeline from starting: missing images,
// missing or escaping host paths, bad volume specs, unknown users.
type PreconditionError struct {
	Errs []error
}

func (e *PreconditionError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\n")
}

// DefaultMaxParallel is how many run steps run at once by default: four per CPU, and at
// least 8. Steps mostly wait (on services, networks, disks, sleeps), so a bound of one
// per CPU made parallel groups half serial on small machines; steps that do compute
// share the CPUs as well several at a time as one each (BenchmarkParallelSteps), and the
// bound still keeps a group of a hundred steps from starting a hundred containers at
// once.
func DefaultMaxParallel() int { return max(8, 4*runtime.NumCPU()) }

// NewBuildID returns a new random build id: 10 hex digits.
func NewBuildID() string {
	b := make([]byte, 5)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// build is the state of one run of Run.
type build struct {
	o      Options
	rt     Runtime
	out    *Output
	dir    string // StateDir/builds/<id>
	labels map[string]string
	guard  mounts.Guard
	// root is the build directory, pinned: every file of it that crun-ci reads is read
	// through it.
	root *hostfs.Dir
	// imgs makes the build's images present, each once.
	imgs *images.Store
	// docker is the Docker daemon of add_docker: true (Options.DockerHost), or nil.
	docker   *dockerHost
	services registry
	msvc     map[string]mounts.Service
	sem      chan struct{}
	seq      atomic.Int64
	order    map[*config.Step]int
	groups   map[*config.Step][]string
	// finished is closed once the build's steps and teardowns have ended, after
	// duration.
	finished chan struct{}
	duration time.Duration
	// skips are the steps a build without a tag skips, with why (Skips).
	skips map[*config.Step]string
	// builders maps the services whose image another service builds to that service
	// (see builders); prepare makes it.
	builders map[string]string
	// credServices maps a service to the credential services its image (or a built
	// one's base images) is pulled with: its own dockercfg_service, then those of the
	// run steps (and groups) that pull it; prepare makes it.
	credServices map[string][]config.Value

	// secrets are the values that came from encrypted sources: masked in all output.
	secrets []string
	// exe is crun-ci's own executable, mounted into containers that get secret
	// variables or an init; nil when none does.
	exe   *pod.Exe
	masks []*secrets.Masker

	mu          sync.Mutex
	results     map[int]Result
	cleanup     sync.WaitGroup // teardowns of finished steps
	cleanupErrs []error
	// kept are the steps whose containers stay (KeepOnFailure, NoRemove).
	kept []builds.KeptStep
	// following and ahead are the steps made ready ahead of their turn (see ahead.go);
	// aheadWG their making.
	following map[*config.Step]follow
	ahead     map[*config.Step]*aheadStep
	aheadWG   sync.WaitGroup
}

// registry holds what the build knows of each service. A value is never changed once
// stored: when a service's image becomes known (pulled with a credential service's
// credentials, or built), a new value takes the old one's place.
type registry struct {
	mu sync.RWMutex
	m  map[string]*service
}

func (r *registry) get(name string) *service {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[name]
}

func (r *registry) put(s *service) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[s.cfg.Name] = s
}

// svc is what the build knows of the service name now (nil for an unknown name).
func (b *build) svc(name string) *service { return b.services.get(name) }

// service is what preparation found out about one service; see registry.
type service struct {
	cfg   *config.Service
	image *task.Image
	// build, for a service with a build key, makes image when a step first needs it;
	// builtBy names the service whose build makes it, for a service whose image is
	// another's build.image.
	build   *imageBuild
	builtBy string
	user    specs.User
	// templates holds, by volume index, a copy of the image's content at the target of
	// an anonymous volume; absent when the image has nothing there.
	templates map[int]string
	// health is the check that tells when the service is ready, nil when it has none.
	health *task.Healthcheck
	// fileEnv is what env_file gives (KEY=VALUE); secretEnv what encrypted_env_file and
	// encrypted_environment give, which reaches the process through the hand-off, never
	// the spec.
	fileEnv, secretEnv []string
	// security and resources confine and bound its containers (Policy.confine).
	security  oci.Security
	resources oci.Resources
}

// Run runs the pipeline. It returns a *PreconditionError, and runs nothing, when the
// pipeline cannot start; otherwise the summary, and an error when the build could not be
// carried out or cleaned up.
func Run(ctx context.Context, rt Runtime, o Options) (_ *Summary, retErr error) {
	if o.BuildID == "" {
		o.BuildID = NewBuildID()
	}
	if o.MaxParallel <= 0 {
		o.MaxParallel = DefaultMaxParallel()
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.Output == nil {
		o.Output = io.Discard
	}
	b := &build{
		o:         o,
		rt:        rt,
		out:       NewOutput(o.Output),
		dir:       builds.Dir(o.StateDir, o.BuildID),
		labels:    map[string]string{builds.LabelBuild: o.BuildID, builds.LabelState: o.StateDir},
		services:  registry{m: map[string]*service{}},
		msvc:      map[string]mounts.Service{},
		sem:       make(chan struct{}, o.MaxParallel),
		order:     map[*config.Step]int{},
		groups:    map[*config.Step][]string{},
		finished:  make(chan struct{}),
		results:   map[int]Result{},
		following: map[*config.Step]follow{},
		ahead:     map[*config.Step]*aheadStep{},
	}
	b.imgs = &images.Store{Find: rt.Image, IfPresent: o.PullIfPresent}
	if o.Pull != nil {
		b.imgs.Pull = func(ctx context.Context, ref string, creds remote.Credentials) error {
			start := time.Now()
			err := o.Pull(ctx, ref, creds)
			if err == nil {
				b.emit(withDuration(Event{Type: "image-pulled", Image: ref}, time.Since(start)))
			}
			return err
		}
	}
	// What runs (prepared for), and what the summary shows: that and the tagged steps
	// a build without a tag skips.
	plan := Plan(o.Project.Steps, o.Tag)
	b.skips = Skips(o.Project.Steps, o.Tag)
	shown := PlanKeeping(o.Project.Steps, o.Tag, b.skips)
	if len(o.Load) > 0 || o.Spec != nil {
		plan, b.skips = nil, nil
		for _, name := range o.Load {
			plan = append(plan, &config.Step{Name: "load", Type: config.Run, Service: name})
		}
		if o.Spec != nil {
			plan = []*config.Step{{Name: "spec", Type: config.Run, Service: o.Spec.Service}}
		}
		shown = plan
	}
	b.index(shown, nil)
	if o.Align {
		b.out.width = prefixWidth(o.Project, plan)
	}
	b.out.color = o.Color

	// The lock comes first and goes last: while it is held, no clean-up touches the
	// build; when this process dies, the next crun-ci removes what is left.
	lock, err := builds.Acquire(o.StateDir, o.BuildID)
	if err != nil {
		return nil, err
	}
	leftBehind := o.NoRemove // something of the build stays in containerd or on disk
	defer func() {
		if leftBehind || len(b.cleanupErrs) > 0 || len(b.kept) > 0 {
			// Keep the lock file: `crun-ci cleanup` finds the build by it.
			retErr = errors.Join(retErr, lock.Close())
			return
		}
		retErr = errors.Join(retErr, lock.Release())
	}()
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return nil, fmt.Errorf("make build directory: %w", err)
	}
	defer func() {
		// The step networks kept for the build's next steps go with it.
		if o.Network != nil {
			if err := o.Network.Release(filepath.Join(b.dir, "netns")); err != nil {
				b.cleanupFailed(err) // the directory, with the records, stays for cleanup
				retErr = errors.Join(retErr, fmt.Errorf("clean up build %s (crun-ci cleanup tries again): %w", o.BuildID, err))
			}
		}
		// After a failed teardown, containers may still use the build's volumes and
		// FIFOs: the directory stays for `crun-ci cleanup`.
		if len(b.kept) > 0 {
			retErr = errors.Join(retErr, b.recordKept(ctx))
		} else if !o.NoRemove && len(b.cleanupErrs) == 0 {
			if err := builds.RemoveDir(b.dir); err != nil {
				leftBehind = true
				retErr = errors.Join(retErr, err)
			}
		}
	}()
	if b.root, err = hostfs.Open(o.Project.Dir, hostfs.Beneath, "the build directory"); err != nil {
		return nil, err
	}
	defer b.root.Close()
	ctx, release, err := rt.Lease(ctx, b.labels, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err := release(cctx)
		if err != nil {
			leftBehind = true
		}
		if errdefs.IsUnavailable(err) && errdefs.IsUnavailable(errors.Join(b.cleanupErrs...)) {
			return // already said: containerd went away
		}
		retErr = errors.Join(retErr, err)
	}()
	if err := b.prepare(ctx, plan); err != nil {
		return nil, err
	}
	if len(b.secrets) > 0 {
		// Every value from an encrypted source is masked wherever the containers write.
		mask := func(w io.Writer) io.Writer {
			m := secrets.NewMasker(w, b.secrets)
			b.masks = append(b.masks, m)
			return m
		}
		b.out.w = mask(o.Output) // no stream is made yet
		if a := b.o.Attach; a != nil {
			attach := *a
			attach.Stdout, attach.Stderr = mask(a.Stdout), mask(a.Stderr)
			b.o.Attach = &attach
		}
		defer func() {
			for _, m := range b.masks {
				retErr = errors.Join(retErr, m.Close())
			}
		}()
	}
	buildStart := time.Now()
	b.emit(Event{Type: "build-start"})
	// An interrupt says what it does, and how to hurry it.
	stopSaying := context.AfterFunc(ctx, func() {
		if n := len(b.sem); n > 0 {
			log.G(ctx).Warnf("interrupted: stopping %d running %s, up to %s each; interrupt again (Ctrl-C) to kill them", n, plural(n, "step"), b.o.StopTimeout)
		} else {
			log.G(ctx).Warn("interrupted: cleaning up")
		}
		if b.o.Hurry != nil {
			select {
			case <-b.o.Hurry:
				log.G(ctx).Warn("interrupted again: killing the running steps")
			case <-b.finished:
			}
		}
	})
	defer stopSaying()
	switch {
	case o.Spec != nil:
		b.spec(ctx, plan[0])
	case len(o.Load) > 0:
		b.load(ctx, plan)
	default:
		b.serial(ctx, shown)
	}
	if o.Network != nil {
		// No step starts from now on: the last networks go with their steps' teardown.
		o.Network.Retire(filepath.Join(b.dir, "netns"))
	}
	b.aheadWG.Wait()
	b.dropAhead(ctx, nil)
	b.cleanup.Wait()
	close(b.finished)
	status := Passed
	if !b.summary().Passed() {
		status = Failed
	}
	b.duration = time.Since(buildStart)
	b.emit(withDuration(Event{Type: "build-end", Status: status}, b.duration))
	if err := errors.Join(b.cleanupErrs...); err != nil {
		if errdefs.IsUnavailable(err) {
			// One line says it all; the rest are the same refused connection.
			return b.summary(), fmt.Errorf("containerd went away during build %s; the next crun-ci, or crun-ci cleanup, removes what the build left once containerd is back", o.BuildID)
		}
		return b.summary(), fmt.Errorf("clean up build %s (crun-ci cleanup tries again): %w", o.BuildID, err)
	}
	return b.summary(), nil
}

// load makes the image of each step's service present: prepare pulled what it pulls,
// and ensure builds the rest.
func (b *build) load(ctx context.Context, plan []*config.Step) {
	for _, s := range plan {
		start := time.Now()
		r := Result{Step: s.Name, Service: s.Service, Status: Passed}
		if err := b.ensure(ctx, s.Name, []string{s.Service}); err != nil {
			r.Status, r.Err = Failed, err
			if ctx.Err() != nil {
				r.Status, _ = stopped(ctx)
			}
		} else if svc := b.svc(s.Service); svc.image != nil {
			r.Note = svc.image.Name
		}
		r.Duration = time.Since(start)
		b.record(s, r)
	}
}

// index numbers every step of the plan in file order, so results print in that order,
// and notes the groups around each (group, outermost first).
func (b *build) index(steps []*config.Step, group []string) {
	for _, s := range steps {
		b.order[s] = len(b.order)
		b.groups[s] = group
		inner := append(slices.Clip(group), s.Name)
		b.index(s.Steps, inner)
		b.index(s.OnFail, inner)
	}
}

func (b *build) record(s *config.Step, r Result) {
	b.mu.Lock()
	r.Group = b.groups[s]
	b.results[b.order[s]] = r
	b.mu.Unlock()
	e := Event{Type: "step-end", Step: r.Step, Service: r.Service, Group: r.Group, Status: r.Status, Phases: r.Phases.ms(), Note: r.Note}
	if r.Status == Failed && r.Err == nil {
		e.ExitCode = &r.ExitCode
	}
	if r.Err != nil {
		e.Error = r.Err.Error()
	}
	if !r.Start.IsZero() {
		e = withDuration(e, r.Duration)
	}
	b.emit(e)
}

// started says that step s starts.
func (b *build) started(s *config.Step) {
	b.mu.Lock()
	group := b.groups[s]
	b.mu.Unlock()
	b.emit(Event{Type: "step-start", Step: s.Name, Service: s.Service, Group: group})
}

func (b *build) summary() *Summary {
	s := &Summary{BuildID: b.o.BuildID, Duration: b.duration}
	for i := 0; i < len(b.order); i++ {
		if r, ok := b.results[i]; ok {
			s.Results = append(s.Results, r)
		}
	}
	return s
}

// serial runs steps in order until one fails; it reports whether all passed. Steps after
// a failure are recorded as not run.
func (b *build) serial(ctx context.Context, steps []*config.Step) bool {
	b.chain(ctx, steps)
	for i, s := range steps {
		if ctx.Err() != nil || !b.node(ctx, s) {
			b.dropAhead(ctx, steps[i:])
			why := "an earlier step failed"
			if ctx.Err() != nil {
				_, why = stopped(ctx)
			}
			for _, rest := range steps[i+1:] {
				b.notRun(rest, why)
			}
			if ctx.Err() != nil && !b.done(s) {
				b.notRun(s, why)
			}
			return false
		}
	}
	return true
}

// parallel runs all steps concurrently and reports whether all passed.
func (b *build) parallel(ctx context.Context, steps []*config.Step) bool {
	var wg sync.WaitGroup
	var failed atomic.Bool
	for _, s := range steps {
		wg.Go(func() {
			if !b.node(ctx, s) {
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	return !failed.Load()
}

// node runs one step of any type, then its on_fail steps if it failed.
func (b *build) node(ctx context.Context, s *config.Step) bool {
	if why, ok := b.skips[s]; ok {
		b.skip(s, why)
		return true
	}
	body := ctx
	timeout := s.Timeout
	if timeout == 0 && s.Type == config.Run {
		timeout = b.o.StepTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		body, cancel = context.WithTimeoutCause(ctx, timeout, errTimeout)
		defer cancel()
	}
	var ok bool
	switch s.Type {
	case config.Run:
		ok = b.run(body, s)
	case config.Push:
		ok = b.push(body, s)
	case config.Serial:
		ok = b.serial(body, s.Steps)
	case config.Parallel:
		ok = b.parallel(body, s.Steps)
	}
	// A step that timed out has failed, and its on_fail steps run, unless the whole
	// build was interrupted.
	if !ok && len(s.OnFail) > 0 && ctx.Err() == nil {
		b.serial(ctx, s.OnFail)
	}
	return ok
}

// stopped says why ctx ended: a step's timeout, or an interrupt of the build.
func stopped(ctx context.Context) (Status, string) {
	if errors.Is(context.Cause(ctx), errTimeout) {
		return TimedOut, "a timeout passed"
	}
	return Interrupted, "the build was interrupted"
}

// done reports whether s (or, for a group, any step in it) has a result.
func (b *build) done(s *config.Step) bool {
	b.mu.Lock()
	_, ok := b.results[b.order[s]]
	b.mu.Unlock()
	if ok {
		return true
	}
	for _, c := range s.Steps {
		if b.done(c) {
			return true
		}
	}
	return false
}

// skip records the run and push steps of s as skipped, with why.
func (b *build) skip(s *config.Step, why string) {
	if s.Type == config.Serial || s.Type == config.Parallel {
		for _, c := range s.Steps {
			b.skip(c, why)
		}
		return
	}
	b.record(s, Result{Step: s.Name, Service: s.Service, Status: Skipped, Note: why})
}

// notRun records run and push steps below s that have no result as not run.
func (b *build) notRun(s *config.Step, why string) {
	if s.Type == config.Serial || s.Type == config.Parallel {
		for _, c := range s.Steps {
			b.notRun(c, why)
		}
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.results[b.order[s]]; !ok {
		b.results[b.order[s]] = Result{Step: s.Name, Service: s.Service, Status: NotRun, Note: why}
	}
}
