package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/pod"
	"github.com/crun-ci/crun-ci/snapshot"
	"github.com/crun-ci/crun-ci/task"
)

// Conditions under which a dependency is ready for the services that depend on it.
const (
	condStarted   = "service_started"
	condHealthy   = "service_healthy"
	condCompleted = "service_completed_successfully"
)

// Health checks, as jet ran them (every second, whatever the check's own interval and
// retries) but sooner at first: at once, then after gaps that double from
// healthFirstGap up to healthInterval, so that a dependency ready after 300 ms is seen
// about then, not a second later. They run until the dependency is healthy, it exits,
// or the bound (Options.HealthTimeout, DefaultHealthTimeout unless given) passes. Each
// check may run for its own timeout (the check's, else defaultTimeout).
const (
	healthFirstGap = 10 * time.Millisecond
	healthInterval = time.Second
	defaultTimeout = 30 * time.Second
	// DefaultHealthTimeout bounds the wait for a dependency to be healthy.
	DefaultHealthTimeout = 5 * time.Minute
	// The wait says so on stderr after healthFirstProgress, then every healthProgress.
	healthFirstProgress = 3 * time.Second
	healthProgress      = 10 * time.Second
)

// edge is one dependency of a service: the service it needs and when it counts as ready.
type edge struct {
	service   string
	condition string
}

// edges returns the services name waits for (config.Graph.Needs), with the condition
// under which each is ready: the long form's, else healthy when the dependency has a
// health check, else started.
func (b *build) edges(name string) []edge {
	var out []edge
	for _, n := range b.o.Project.Graph.Needs(name) {
		cond := n.Condition
		if cond == "" {
			cond = condStarted
			if dep := b.svc(n.Service); dep != nil && dep.health != nil {
				cond = condHealthy
			}
		}
		out = append(out, edge{n.Service, cond})
	}
	return out
}

// dep is a dependency container of a running step.
type dep struct {
	name string
	c    *pod.Container
	// started is closed once the task runs (or could not be started: err says so).
	started chan struct{}
	// healthy is closed once the health check passed (at start when there is none), or
	// failed: err says so.
	healthy chan struct{}
	// exited is closed when the task ended; code holds its exit code.
	exited chan struct{}
	code   uint32

	mu  sync.Mutex
	err error
}

func (d *dep) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		d.err = err
	}
}

func (d *dep) failure() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// closeOnce closes ch unless it is closed.
func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// ready waits until d is ready for a dependent under cond.
func ready(ctx context.Context, d *dep, cond string) error {
	var ch chan struct{}
	switch cond {
	case condCompleted:
		ch = d.exited
	case condHealthy:
		ch = d.healthy
	default:
		ch = d.started
	}
	select {
	case <-ch:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := d.failure(); err != nil {
		return err
	}
	if cond == condCompleted && d.code != 0 {
		return fmt.Errorf("dependency %q exited with code %d", d.name, d.code)
	}
	return nil
}

// depGroup runs the dependencies of one step.
type depGroup struct {
	b    *build
	step *config.Step
	deps map[string]*dep
	// pre are the output streams of the dependencies whose task was made ahead.
	pre map[string][2]*Stream
	wg  sync.WaitGroup
	// mainDone is closed when the step's own command has ended; a dependency that exits
	// with a failure before is reported.
	mainDone chan struct{}
	// cancel ends the waits and health checks of dependencies that are not ready yet.
	cancel context.CancelFunc
	// watch ends the watches of the dependencies' tasks once stop has given up on one;
	// endWatch ends it.
	watch    context.Context
	endWatch context.CancelFunc
	mu       sync.Mutex
	notes    []string
}

// startDeps starts the step's dependencies, each as soon as what it needs is ready,
// independent ones concurrently. ctrs holds every container of the step by service.
func (b *build) startDeps(ctx context.Context, s *config.Step, names []string, ctrs map[string]*pod.Container, pre map[string][2]*Stream, verify func(string) func(uint32) error) *depGroup {
	ctx, cancel := context.WithCancel(ctx)
	watch, endWatch := context.WithCancel(context.WithoutCancel(ctx))
	g := &depGroup{b: b, step: s, deps: map[string]*dep{}, pre: pre, mainDone: make(chan struct{}), cancel: cancel, watch: watch, endWatch: endWatch}
	for _, n := range names {
		g.deps[n] = &dep{name: n, c: ctrs[n], started: make(chan struct{}), healthy: make(chan struct{}), exited: make(chan struct{})}
	}
	for _, n := range names {
		d := g.deps[n]
		g.wg.Go(func() { g.run(ctx, d, verify(n)) })
	}
	return g
}

// depStreams are the output streams of dependency name of step s.
func (b *build) depStreams(s *config.Step, name string) [2]*Stream {
	prefix := s.Name + "/" + name + " | "
	return [2]*Stream{b.out.Stream(prefix), b.out.Stream(prefix)}
}

// run starts one dependency after what it needs, watches it, and checks its health.
func (g *depGroup) run(ctx context.Context, d *dep, verify func(uint32) error) {
	giveUp := func(err error) {
		d.fail(err)
		closeOnce(d.started)
		closeOnce(d.healthy)
		closeOnce(d.exited)
	}
	for _, e := range g.b.edges(d.name) {
		if err := ready(ctx, g.deps[e.service], e.condition); err != nil {
			giveUp(fmt.Errorf("dependency %q not started: %w", d.name, err))
			return
		}
	}
	var out io.Writer = io.Discard
	var stdout, stderr *Stream
	if streams, ok := g.pre[d.name]; ok {
		stdout, stderr = streams[0], streams[1] // its task was made ahead with them
	} else if !g.b.o.QuietDeps {
		streams := g.b.depStreams(g.step, d.name)
		stdout, stderr = streams[0], streams[1]
	}
	var so, se io.Writer = out, out
	if stdout != nil {
		so, se = stdout, stderr
	}
	if err := d.c.Start(ctx, so, se, verify); err != nil {
		if stdout != nil {
			stdout.Close()
			stderr.Close()
		}
		giveUp(fmt.Errorf("start dependency %q: %w", d.name, err))
		return
	}
	closeOnce(d.started)
	// The watch is the group's: stop ends the task, and with it the watch, or gives up
	// on it (a task that outlives SIGKILL; the teardown deletes it).
	g.wg.Go(func() {
		code, err := d.c.Wait(g.watch)
		if stdout != nil {
			stdout.Close()
			stderr.Close()
		}
		if g.watch.Err() != nil && errors.Is(err, context.Canceled) {
			closeOnce(d.exited)
			return
		}
		d.code = code
		if err != nil {
			d.fail(fmt.Errorf("dependency %q: %w", d.name, err))
		}
		select {
		case <-g.mainDone:
		default:
			if code != 0 {
				note := fmt.Sprintf("dependency %q exited early with code %d", d.name, code)
				if oom := d.c.OOMNote(ctx); oom != "" {
					note += " (" + oom + ")"
				}
				log.G(ctx).Warnf("step %q: %s", g.step.Name, note)
				g.mu.Lock()
				g.notes = append(g.notes, note)
				g.mu.Unlock()
			}
		}
		closeOnce(d.exited)
	})
	ready := Event{Type: "dependency-ready", Step: g.step.Name, Service: d.name}
	hc := g.b.svc(d.name).health
	if hc == nil {
		g.b.emit(ready)
		closeOnce(d.healthy)
		return
	}
	if err := g.check(ctx, d, hc); err != nil {
		d.fail(err)
	} else {
		ready.Note = "healthy"
		g.b.emit(ready)
	}
	closeOnce(d.healthy)
}

// check runs the health check of d every second until it passes, the container exits,
// the bound passes or ctx ends, and says on stderr how long it has waited (after
// healthFirstProgress, then every healthProgress).
func (g *depGroup) check(ctx context.Context, d *dep, hc *task.Healthcheck) error {
	timeout := hc.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	bound := g.b.o.HealthTimeout
	if bound <= 0 {
		bound = DefaultHealthTimeout
	}
	args := hc.Test[1:]
	if hc.Test[0] == "CMD-SHELL" {
		args = []string{"/bin/sh", "-c", strings.Join(hc.Test[1:], " ")}
	}
	began := time.Now()
	said := began.Add(healthFirstProgress - healthProgress)
	for n := 1; ; n++ {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		code, out, err := d.c.Exec(cctx, fmt.Sprintf("health-%d", n), args)
		cancel()
		last := strings.TrimSpace(string(out))
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil && code == 0:
			return nil
		case errors.Is(err, context.DeadlineExceeded):
			last = fmt.Sprintf("timed out after %s", timeout)
		case err != nil:
			last = err.Error()
		default:
			last = fmt.Sprintf("exit code %d%s", code, checkOutput(last))
		}
		waited := time.Since(began)
		if waited >= bound {
			return fmt.Errorf("dependency %q is not healthy after %s (%d checks; --health-timeout): %s", d.name, bound, n, last)
		}
		if time.Since(said) >= healthProgress {
			said = time.Now()
			log.G(ctx).Infof("waiting for %s to be healthy (%s)", d.name, waited.Round(time.Second))
		}
		select {
		case <-d.exited:
			return fmt.Errorf("dependency %q exited with code %d before it was healthy", d.name, d.code)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(healthGap(n)):
		}
	}
}

// healthGap is the wait after the nth check: healthFirstGap doubled n-1 times, at most
// healthInterval.
func healthGap(n int) time.Duration {
	if n > 20 {
		return healthInterval
	}
	return min(healthFirstGap<<(n-1), healthInterval)
}

// checkOutputLines is how much of a failing health check's output its error shows.
const checkOutputLines = 5

// checkOutput is a failing health check's output as its error shows it: "" for none,
// one line after ": ", several (at most checkOutputLines, the last ones) each on a line
// of its own, indented, below the summary's line.
func checkOutput(out string) string {
	if out == "" {
		return ""
	}
	lines := strings.Split(out, "\n")
	if len(lines) == 1 {
		return ": " + config.EscapeControls(lines[0])
	}
	cut := ""
	if len(lines) > checkOutputLines {
		cut = fmt.Sprintf("\n      (%d lines before)", len(lines)-checkOutputLines)
		lines = lines[len(lines)-checkOutputLines:]
	}
	for i, l := range lines {
		lines[i] = "      | " + config.EscapeControls(l)
	}
	return ", it said:" + cut + "\n" + strings.Join(lines, "\n")
}

// stop ends every dependency that runs, all at the same time, by its stop policy with
// its own grace (stop_grace_period: none unless the service says so; the step is over
// and they are thrown away), and waits for the starts and watches to end. ctx carries
// the step's logger.
func (g *depGroup) stop(ctx context.Context) {
	closeOnce(g.mainDone)
	g.cancel()
	var wg sync.WaitGroup
	for _, d := range g.deps {
		wg.Go(func() {
			<-d.started
			if isClosed(d.exited) || d.c == nil {
				return
			}
			grace := g.b.svc(d.name).cfg.StopGracePeriod
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace+snapshot.CleanupTimeout)
			defer cancel()
			if err := d.c.Stop(sctx, grace, g.b.o.Hurry); err != nil {
				log.G(ctx).WithError(err).Warnf("stop dependency %q", d.name)
			}
		})
	}
	wg.Wait()
	// Every dependency has ended, or Stop gave up on it: its watch ends now.
	g.endWatch()
	g.wg.Wait()
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// stopSignal is what stops svc's containers: its stop_signal, else its image's
// STOPSIGNAL, else (0) SIGTERM. A dependency's grace is its stop_grace_period (see
// depGroup.stop).
func stopSignal(svc *service) syscall.Signal {
	if sig := svc.cfg.StopSignal; sig != 0 || svc.image == nil || svc.image.Config.StopSignal == "" {
		return sig
	}
	sig, _ := config.ParseSignal(svc.image.Config.StopSignal)
	return sig
}

// healthcheckOf returns the health check that applies to a service: its healthcheck key,
// else its image's HEALTHCHECK; nil when there is none or it is disabled.
func healthcheckOf(cfg *config.Service, img *task.Image) *task.Healthcheck {
	if h := cfg.Healthcheck; h != nil {
		if h.Disable || (len(h.Test) > 0 && h.Test[0] == "NONE") {
			return nil
		}
		if len(h.Test) > 0 {
			return &task.Healthcheck{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
		}
	}
	if h := img.Healthcheck; h != nil && len(h.Test) > 1 && h.Test[0] != "NONE" {
		return h
	}
	return nil
}
