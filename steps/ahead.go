package steps

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/mounts"
	"github.com/crun-ci/crun-ci/pod"
)

// Steps made ahead. While a step of a serial group runs, the next lookahead run steps of
// the group are made ready (prepare1 with ahead): their pods, networks, anonymous
// volumes and containers, and the task of each one's own container, created but not
// started (creating a task is most of a container's start-up: the shim, runc create).
// A step made ahead starts the moment its turn comes, unless a host path it mounts is no
// longer the directory it was when the step was made (the step before replaced it): then
// it is thrown away and made again, so that a step always mounts what the build
// directory holds when it starts. What is made ahead of a step that never runs (the
// step before failed, the build was interrupted) is torn down like any step's.
//
// Only run steps whose images are all there are made ahead: an image built from a
// Dockerfile is built when its step's turn comes, as before.
const lookahead = 2

// prepared is a step made ready to run.
type prepared struct {
	plan   *mounts.Step
	deps   []string
	p      *pod.Pod
	byName map[string]*pod.Container
	main   *pod.Container
	// pinned are the host paths its containers mount, opened refusing symlinks; their
	// mounts are compared with them before each process starts (verifyMounts).
	pinned map[string]*os.File
	// stdout and stderr are where its own container's output goes: so and se with tail
	// (nil when attached).
	stdout, stderr io.Writer
	so, se         *Stream
	tail           *Tail
	// depOut are the output streams of the dependencies whose task was made ahead (nil
	// streams with --quiet-deps).
	depOut map[string][2]*Stream
	// phases are the times of its preparation: image, network, create and, made ahead,
	// start (the task's creation).
	phases Phases
}

// unpin closes the pinned host paths.
func (st *prepared) unpin() {
	for _, f := range st.pinned {
		f.Close()
	}
}

// release closes what a prepared step that does not run holds besides its pod: its
// output streams and pinned host paths.
func (st *prepared) release() {
	if st.so != nil {
		st.so.Close()
		st.se.Close()
	}
	for _, out := range st.depOut {
		if out[0] != nil {
			out[0].Close()
			out[1].Close()
		}
	}
	st.unpin()
}

// discard tears down a step made ahead that does not run, in the background as a
// step's teardown (--no-remove keeps nothing of it: it never ran).
func (b *build) discard(ctx context.Context, st *prepared) {
	st.release()
	b.cleanup.Go(func() {
		if err := st.p.Close(ctx); err != nil {
			b.cleanupFailed(err)
		}
	})
}

// prepare1 makes step s ready to run: its pod (network, anonymous volumes, containers)
// and pinned host paths and, with ahead, its own container's and its dependencies'
// tasks. On error what was made goes in the background: made ahead, as discard does;
// made at its turn, as the step's teardown (which --no-remove keeps).
func (b *build) prepare1(ctx context.Context, s *config.Step, seq int64, ahead bool) (_ *prepared, retErr error) {
	volumes := filepath.Join(b.dir, "volumes", strconv.FormatInt(seq, 10))
	graph := b.o.Project.Graph
	deps := graph.Dependencies(s.Service)
	plan, err := mounts.ForStep(b.msvc, volumes, graph.VolumeOrder(append(deps, s.Service)...))
	if err != nil {
		return nil, err
	}
	st := &prepared{plan: plan, deps: deps, byName: map[string]*pod.Container{}, pinned: map[string]*os.File{}}
	mark := time.Now()
	phase := func(d *time.Duration) {
		now := time.Now()
		*d, mark = now.Sub(mark), now
	}
	// Images built from Dockerfiles are built now, when a step first needs them.
	if err := b.ensure(ctx, s.Name, plan.Containers); err != nil {
		return nil, err
	}
	phase(&st.phases.Image)
	if st.p, err = b.newPod(ctx, seq, volumes, plan.Containers); err != nil {
		return nil, err
	}
	phase(&st.phases.Network)
	defer func() {
		switch {
		case retErr == nil:
		case ahead:
			b.discard(ctx, st)
		default:
			st.release()
			b.teardown(ctx, st.p, s, nil)
		}
	}()
	for _, a := range plan.Anon {
		if err := os.MkdirAll(a.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("make anonymous volume %s: %w", a.Target, err)
		}
		if tmpl, ok := b.svc(a.Service).templates[volumeIndex(a.Dir)]; ok {
			if _, err := mounts.Copy(a.Dir, tmpl); err != nil {
				return nil, fmt.Errorf("fill anonymous volume %s from the image: %w", a.Target, err)
			}
		}
	}

	// Host paths are opened again now, refusing symlinks, and what each container
	// mounts is compared with them before its process starts (see mounts.Guard.Open): a
	// step that swapped a checked directory for a link cannot redirect a later mount.
	for _, ms := range plan.Mounts {
		for _, m := range ms {
			if _, ok := st.pinned[m.Source]; ok || strings.HasPrefix(m.Source, volumes+"/") {
				continue // done, or an anonymous volume made by crun-ci just now
			}
			f, err := b.guard.Open(m.Source)
			if err != nil {
				return nil, err
			}
			st.pinned[m.Source] = f
		}
	}

	// The services named only by volumes_from get no container: their anonymous
	// volumes are made above and mounted where they go, and a container that never
	// starts would cost a snapshot, a network namespace and an address for nothing.
	for _, name := range plan.Containers {
		if name != s.Service && !slices.Contains(deps, name) {
			continue
		}
		c, err := b.create(ctx, st.p, s, seq, name, plan.Mounts[name], name == s.Service)
		if err != nil {
			return nil, err
		}
		st.byName[name] = c
	}
	st.main = st.byName[s.Service]
	phase(&st.phases.Create)

	if a := b.o.Attach; a != nil {
		st.stdout, st.stderr = a.Stdout, a.Stderr
	} else {
		prefix := s.Name + "/" + s.Service + " | "
		st.tail = &Tail{}
		st.so, st.se = b.out.Stream(prefix), b.out.Stream(prefix)
		st.so.tail, st.se.tail = st.tail, st.tail
		st.stdout, st.stderr = st.so, st.se
	}
	if ahead {
		if err := st.main.CreateTask(ctx, st.stdout, st.stderr); err != nil {
			return nil, err
		}
		// The dependencies' tasks too: their processes start in their order when the
		// step's turn comes.
		st.depOut = map[string][2]*Stream{}
		for _, name := range deps {
			var out [2]*Stream
			var so, se io.Writer = io.Discard, io.Discard
			if !b.o.QuietDeps {
				out = b.depStreams(s, name)
				so, se = out[0], out[1]
			}
			st.depOut[name] = out
			if err := st.byName[name].CreateTask(ctx, so, se); err != nil {
				return nil, fmt.Errorf("dependency %q: %w", name, err)
			}
		}
		phase(&st.phases.Start)
	}
	return st, nil
}

// aheadStep is a step being made ready ahead of its turn.
type aheadStep struct {
	done chan struct{}
	st   *prepared
	err  error
}

// follow says which step comes after a step of a serial group, and the group's context.
type follow struct {
	next *config.Step
	ctx  context.Context
}

// chain notes the order of a serial group's steps, for startAhead.
func (b *build) chain(ctx context.Context, steps []*config.Step) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := 0; i+1 < len(steps); i++ {
		b.following[steps[i]] = follow{steps[i+1], ctx}
	}
}

// startAhead starts making ready the run steps that follow s in its serial group, up to
// lookahead of them, each in the background; it stops at the first that is not a run
// step, is skipped, or needs an image built.
func (b *build) startAhead(s *config.Step) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := s
	for range lookahead {
		f, ok := b.following[cur]
		if !ok || f.ctx.Err() != nil {
			return
		}
		next := f.next
		if _, skipped := b.skips[next]; skipped || next.Type != config.Run || !b.imagesReady(next) {
			return
		}
		if _, started := b.ahead[next]; !started {
			a := &aheadStep{done: make(chan struct{})}
			b.ahead[next] = a
			ctx := log.WithLogger(f.ctx, log.G(f.ctx).WithField("step", next.Name))
			seq := b.seq.Add(1) // in the steps' order
			b.aheadWG.Go(func() {
				defer close(a.done)
				a.st, a.err = b.prepare1(ctx, next, seq, true)
			})
		}
		cur = next
	}
}

// imagesReady reports whether every image of step s is there (none is to be built).
// Call with b.mu held.
func (b *build) imagesReady(s *config.Step) bool {
	graph := b.o.Project.Graph
	for _, name := range graph.VolumeOrder(append(graph.Dependencies(s.Service), s.Service)...) {
		if svc := b.svc(name); svc == nil || svc.image == nil {
			return false
		}
	}
	return true
}

// takeAhead returns step s as it was made ahead, once it is ready, or nil when it was
// not, its making failed (it is made again, now, and says why then), or a host path it
// mounts changed since (it is thrown away).
func (b *build) takeAhead(ctx context.Context, s *config.Step) *prepared {
	b.mu.Lock()
	a, ok := b.ahead[s]
	delete(b.ahead, s)
	b.mu.Unlock()
	if !ok {
		return nil
	}
	<-a.done
	if a.err != nil {
		log.G(ctx).WithError(a.err).Debug("made ahead: failed; made again now")
		return nil
	}
	for path, f := range a.st.pinned {
		if err := b.samePath(path, f); err != nil {
			log.G(ctx).WithError(err).Debug("made ahead: a host path changed; made again now")
			b.discard(ctx, a.st)
			return nil
		}
	}
	return a.st
}

// samePath checks that the host path still names the directory f was opened on.
func (b *build) samePath(path string, f *os.File) error {
	now, err := b.guard.Open(path)
	if err != nil {
		return err
	}
	defer now.Close()
	var x, y unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &x); err != nil {
		return err
	}
	if err := unix.Fstat(int(now.Fd()), &y); err != nil {
		return err
	}
	if x.Dev != y.Dev || x.Ino != y.Ino {
		return fmt.Errorf("host path %s is another directory now", path)
	}
	return nil
}

// dropAhead tears down what was made ahead of steps that will not run: those given, or
// with nil every one left (as the build ends).
func (b *build) dropAhead(ctx context.Context, steps []*config.Step) {
	if steps == nil {
		b.mu.Lock()
		for s := range b.ahead {
			steps = append(steps, s)
		}
		b.mu.Unlock()
	}
	for _, s := range steps {
		b.mu.Lock()
		a, ok := b.ahead[s]
		delete(b.ahead, s)
		b.mu.Unlock()
		if !ok {
			continue
		}
		<-a.done
		if a.err == nil {
			b.discard(ctx, a.st)
		}
	}
}
