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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/mounts"
	"github.com/crun-ci/crun-ci/task"
)

// Labels crun-ci puts on every containerd object it makes.
const (
	LabelBuild   = "crun-ci.build"
	LabelStep    = "crun-ci.step"
	LabelService = "crun-ci.service"
)

// Options configure a build.
type Options struct {
	Project *config.Project
	// Tag is the build's branch or tag, matched by the steps' tag and exclude.
	Tag string
	// Env entries (KEY=VAL) added to every container after the service's.
	Env []string
	// MaxParallel bounds how many run steps run at once; 0 means the number of CPUs.
	MaxParallel int
	// NoRemove keeps containers, snapshots and anonymous volumes after their step.
	NoRemove bool
	// Allow holds the absolute host path prefixes granted besides the build directory.
	Allow []string
	// BuildID names the build; a new one is made when empty.
	BuildID string
	// Namespace is containerd's namespace, which the spec's cgroup path names.
	Namespace string
	// StateDir is crun-ci's state directory; the build works in StateDir/builds/<id>.
	StateDir string
	// Output receives the containers' output, a prefixed line at a time.
	Output io.Writer
	// StopTimeout is how long a task has after SIGTERM before SIGKILL when the build is
	// interrupted.
	StopTimeout time.Duration
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
)

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
}

// Summary holds the results of a build in the order of the steps file.
type Summary struct {
	BuildID string
	Results []Result
}

// Passed reports whether no step failed or was interrupted.
func (s *Summary) Passed() bool {
	for _, r := range s.Results {
		if r.Status == Failed || r.Status == Interrupted {
			return false
		}
	}
	return true
}

// Print writes the summary: a line per step with its status and duration, the exit code
// or error of a failed step, and a count.
func (s *Summary) Print(w io.Writer) {
	count := map[Status]int{}
	fmt.Fprintf(w, "\nbuild %s:\n", s.BuildID)
	for _, r := range s.Results {
		count[r.Status]++
		line := fmt.Sprintf("  %-11s %s (%s)", strings.ToUpper(string(r.Status)), r.Step, r.Service)
		if r.Status != NotRun && r.Status != Skipped {
			line += fmt.Sprintf(" %.2fs", r.Duration.Seconds())
		}
		switch {
		case r.Err != nil:
			line += ": " + r.Err.Error()
		case r.Status == Failed:
			line += fmt.Sprintf(": exit code %d", r.ExitCode)
		case r.Note != "":
			line += ": " + r.Note
		}
		fmt.Fprintln(w, line)
	}
	var parts []string
	for _, st := range []Status{Passed, Failed, Interrupted, Skipped, NotRun} {
		if count[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[st], st))
		}
	}
	if len(parts) == 0 {
		parts = []string{"no steps ran"}
	}
	fmt.Fprintln(w, strings.Join(parts, ", "))
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

// NewBuildID returns a new random build id: 10 hex digits.
func NewBuildID() string {
	b := make([]byte, 5)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// build is the state of one run of Run.
type build struct {
	o        Options
	rt       Runtime
	out      *Output
	dir      string // StateDir/builds/<id>
	services map[string]*service
	msvc     map[string]mounts.Service
	sem      chan struct{}
	seq      atomic.Int64
	order    map[*config.Step]int

	mu          sync.Mutex
	results     map[int]Result
	cleanup     sync.WaitGroup // teardowns of finished steps
	cleanupErrs []error
}

// service is what preparation found out about one service.
type service struct {
	cfg   *config.Service
	image *task.Image
	user  specs.User
	// templates holds, by volume index, a copy of the image's content at the target of
	// an anonymous volume; absent when the image has nothing there.
	templates map[int]string
}

// Run runs the pipeline. It returns a *PreconditionError, and runs nothing, when the
// pipeline cannot start; otherwise the summary, and an error when the build could not be
// carried out or cleaned up.
func Run(ctx context.Context, rt Runtime, o Options) (_ *Summary, retErr error) {
	if o.BuildID == "" {
		o.BuildID = NewBuildID()
	}
	if o.MaxParallel <= 0 {
		o.MaxParallel = runtime.NumCPU()
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.Output == nil {
		o.Output = io.Discard
	}
	b := &build{
		o:        o,
		rt:       rt,
		out:      NewOutput(o.Output),
		dir:      filepath.Join(o.StateDir, "builds", o.BuildID),
		services: map[string]*service{},
		msvc:     map[string]mounts.Service{},
		sem:      make(chan struct{}, o.MaxParallel),
		order:    map[*config.Step]int{},
		results:  map[int]Result{},
	}
	plan := Plan(o.Project.Steps, o.Tag)
	b.index(plan)

	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return nil, fmt.Errorf("make build directory: %w", err)
	}
	defer func() {
		retErr = errors.Join(retErr, b.removeDir())
	}()
	ctx, release, err := rt.Lease(ctx, map[string]string{LabelBuild: o.BuildID}, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		retErr = errors.Join(retErr, release(cctx))
	}()
	if err := b.prepare(ctx, plan); err != nil {
		return nil, err
	}
	b.serial(ctx, plan)
	b.cleanup.Wait()
	return b.summary(), errors.Join(b.cleanupErrs...)
}

// index numbers every step of the plan in file order, so results print in that order.
func (b *build) index(steps []*config.Step) {
	for _, s := range steps {
		b.order[s] = len(b.order)
		b.index(s.Steps)
		b.index(s.OnFail)
	}
}

func (b *build) record(s *config.Step, r Result) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.results[b.order[s]] = r
}

func (b *build) summary() *Summary {
	s := &Summary{BuildID: b.o.BuildID}
	for i := 0; i < len(b.order); i++ {
		if r, ok := b.results[i]; ok {
			s.Results = append(s.Results, r)
		}
	}
	return s
}

// removeDir removes the build's working directory unless --no-remove keeps it. It refuses
// when anything below it is still mounted.
func (b *build) removeDir() error {
	if b.o.NoRemove {
		return nil
	}
	if m, err := mountedBelow(b.dir); err != nil || m != "" {
		return errors.Join(err, fmtErrIf(m != "", "keep %s: %s is still mounted", b.dir, m))
	}
	if err := os.RemoveAll(b.dir); err != nil {
		return fmt.Errorf("remove build directory: %w", err)
	}
	return nil
}

func fmtErrIf(cond bool, format string, args ...any) error {
	if !cond {
		return nil
	}
	return fmt.Errorf(format, args...)
}

// mountedBelow returns a mount point at or below dir, or "" when there is none.
func mountedBelow(dir string) (string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			return mp, nil
		}
	}
	return "", nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				sb.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}

// serial runs steps in order until one fails; it reports whether all passed. Steps after
// a failure are recorded as not run.
func (b *build) serial(ctx context.Context, steps []*config.Step) bool {
	for i, s := range steps {
		if ctx.Err() != nil || !b.node(ctx, s) {
			why := "an earlier step failed"
			if ctx.Err() != nil {
				why = "the build was interrupted"
			}
			for _, rest := range steps[i+1:] {
				b.notRun(rest, why)
			}
			if ctx.Err() != nil && !b.done(s) {
				b.notRun(s, "the build was interrupted")
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
	var ok bool
	switch s.Type {
	case config.Run:
		ok = b.run(ctx, s)
	case config.Push:
		b.record(s, Result{Step: s.Name, Service: s.Service, Status: Skipped, Note: "push steps run with --push, which is not supported yet"})
		log.G(ctx).Infof("step %q: push step skipped (pushing is not supported yet)", s.Name)
		ok = true
	case config.Serial:
		ok = b.serial(ctx, s.Steps)
	case config.Parallel:
		ok = b.parallel(ctx, s.Steps)
	}
	if !ok && len(s.OnFail) > 0 && ctx.Err() == nil {
		b.serial(ctx, s.OnFail)
	}
	return ok
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
