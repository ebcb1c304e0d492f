package steps

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crun-ci/crun-ci/builds"
	"github.com/crun-ci/crun-ci/civars"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/mounts"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/oci"
	"github.com/crun-ci/crun-ci/pod"
	"github.com/crun-ci/crun-ci/snapshot"
)

// run runs one run step on fresh containers and records its result.
func (b *build) run(ctx context.Context, s *config.Step) bool {
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		_, why := stopped(ctx)
		b.notRun(s, why)
		return false
	}
	defer func() { <-b.sem }()

	b.started(s)
	start := time.Now()
	r := Result{Step: s.Name, Service: s.Service, Start: start}
	code, err := b.exec(ctx, s, &r)
	r.Duration = time.Since(start)
	switch {
	case ctx.Err() != nil:
		r.Status, _ = stopped(ctx)
	case errdefs.IsUnavailable(err):
		r.Status, r.Err = Failed, fmt.Errorf("lost containerd: %w", err)
	case err != nil:
		r.Status, r.Err = Failed, err
	case code != 0:
		r.Status, r.ExitCode = Failed, code
	default:
		r.Status = Passed
	}
	if r.Status == Passed {
		r.Tail = nil // kept for failures only: a long pipeline holds no passed output
	}
	b.record(s, r)
	return r.Status == Passed
}

// exec runs a step on its prepared pod (made ahead while earlier steps ran, or now),
// runs its service's command and tears everything down again, whatever happened.
func (b *build) exec(ctx context.Context, s *config.Step, r *Result) (exit uint32, retErr error) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("step", s.Name))
	// The steps after this one are made ready while it runs (its own number first).
	st := b.takeAhead(ctx, s)
	if st != nil {
		b.startAhead(s)
	} else {
		seq := b.seq.Add(1)
		b.startAhead(s)
		var err error
		if st, err = b.prepare1(ctx, s, seq, false); err != nil {
			return 0, err
		}
	}
	r.Phases = st.phases
	mark := time.Now()
	phase := func(d *time.Duration) {
		now := time.Now()
		*d, mark = now.Sub(mark), now
	}
	// Teardown leaves the critical path: the next step starts while this one's
	// containers, network, snapshots and volumes are removed. Run waits for every
	// teardown. A failed step's may be kept instead (KeepOnFailure).
	defer func() {
		b.teardown(ctx, st.p, s, b.keepStep(ctx, s, st.main, exit != 0 || retErr != nil))
		st.unpin()
	}()
	main, plan := st.main, st.plan
	verify := func(service string) func(pid uint32) error {
		return func(pid uint32) error { return verifyMounts(pid, plan.Mounts[service], st.pinned) }
	}

	// Dependencies start in their order, each when what it needs is ready; they are
	// stopped as soon as the step's command has ended, before the teardown.
	g := b.startDeps(ctx, s, st.deps, st.byName, st.depOut, verify)
	defer func() {
		g.stop(ctx)
		phase(&r.Phases.Stop)
		if len(g.notes) > 0 {
			r.Note = strings.Join(append(slices.DeleteFunc([]string{r.Note}, func(n string) bool { return n == "" }), g.notes...), "; ")
		}
	}()
	// The step's own task is created while its dependencies start (creating a task is
	// most of a container's start-up), unless it was made ahead; its process starts once
	// they are ready.
	before := func(pid uint32) error {
		for _, e := range b.edges(s.Service) {
			if err := ready(ctx, g.deps[e.service], e.condition); err != nil {
				return err
			}
		}
		return verify(s.Service)(pid)
	}
	if st.so != nil {
		defer func() {
			retErr = errors.Join(retErr, st.so.Close(), st.se.Close())
			r.Tail = st.tail.Lines()
		}()
	}
	// A step that was starting when an interrupt came is started and then stopped by
	// its policy, so that its signal handler runs: Wait sees the interrupt next.
	if err := main.Start(ctx, st.stdout, st.stderr, before); err != nil {
		return 0, err
	}
	phase(&r.Phases.Start)
	r.Phases.Start += st.phases.Start // its task's creation, when made ahead
	if a := b.o.Attach; a != nil && a.TTY && a.Resize != nil {
		a.Resize(func(w, h uint32) error { return main.Resize(ctx, w, h) })
	}
	code, err := main.Wait(ctx)
	phase(&r.Phases.Run)
	if err != nil && ctx.Err() != nil {
		return 0, b.stop(ctx, main)
	}
	if err == nil && code != 0 {
		r.Note = main.OOMNote(ctx)
	}
	return code, err
}

// newPod makes the pod of a step, image build or credential service number seq, in dir,
// with services in its hosts file.
func (b *build) newPod(ctx context.Context, seq int64, dir string, services []string) (*pod.Pod, error) {
	return pod.New(ctx, b.rt, pod.Options{
		ID:        fmt.Sprintf("%s-%d", b.o.BuildID, seq),
		Dir:       dir,
		NetNSDir:  filepath.Join(b.dir, "netns"),
		Network:   b.o.Network,
		Hosts:     b.hostNames(services),
		Namespace: b.o.Namespace,
		Labels:    b.labels,
		FIFODir:   filepath.Join(b.dir, "fifo"),
		Handoff:   b.exe,
	})
}

// verifyMounts checks, for a created task whose process has not started, that each of its
// mounts of a pinned host path shows the pinned directory.
func verifyMounts(pid uint32, ms []specs.Mount, pinned map[string]*os.File) error {
	for _, m := range ms {
		f, ok := pinned[m.Source]
		if !ok {
			continue
		}
		same, err := mounts.Same(f, fmt.Sprintf("/proc/%d/root", pid), m.Destination)
		if err != nil {
			return fmt.Errorf("check the mount at %s: %w", m.Destination, err)
		}
		if !same {
			return fmt.Errorf("host path %s changed since it was checked: the mount at %s shows something else; not started", m.Source, m.Destination)
		}
	}
	return nil
}

// teardown closes a step's pod (its containers with their tasks and snapshots, its
// network, its anonymous volumes) in the background; errors are kept for Run to report.
// With keep (a step kept for crun-ci debug), the pod's containers and volumes stay.
func (b *build) teardown(ctx context.Context, p *pod.Pod, s *config.Step, keep *builds.KeptStep) {
	if keep != nil {
		b.mu.Lock()
		b.kept = append(b.kept, *keep)
		b.mu.Unlock()
	}
	if b.o.NoRemove {
		// Kept for inspection, but without the secrets waiting in its hand-offs.
		if err := p.Release(); err != nil {
			b.cleanupFailed(err)
		}
		return
	}
	if keep != nil {
		b.cleanup.Go(func() {
			if err := p.Keep(ctx); err != nil {
				b.cleanupFailed(err)
			}
		})
		return
	}
	b.cleanup.Go(func() {
		start := time.Now()
		err := p.Close(ctx)
		if err != nil {
			b.cleanupFailed(err)
		}
		if s != nil {
			e := withDuration(Event{Type: "step-removed", Step: s.Name, Service: s.Service}, time.Since(start))
			if err != nil {
				e.Error = err.Error()
			}
			b.emit(e)
		}
	})
}

func (b *build) cleanupFailed(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cleanupErrs = append(b.cleanupErrs, err)
}

// stop ends the task of a step's own container, which was interrupted or timed out: its
// stop policy with the stop timeout as grace (cut short when Hurry is closed).
func (b *build) stop(ctx context.Context, c *pod.Container) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.o.StopTimeout+snapshot.CleanupTimeout)
	defer cancel()
	return c.Stop(ctx, b.o.StopTimeout, b.o.Hurry)
}

// create makes one container of the step in its pod. The step's own service runs the
// step's command; the others are made only for their volumes.
func (b *build) create(ctx context.Context, p *pod.Pod, s *config.Step, seq int64, name string, ms []specs.Mount, main bool) (*pod.Container, error) {
	m, err := b.describe(ctx, s, seq, name, ms, main)
	if err != nil {
		return nil, err
	}
	c, err := p.Create(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", name, err)
	}
	return c, nil
}

// describe is the member that create makes of service name for step s.
func (b *build) describe(ctx context.Context, s *config.Step, seq int64, name string, ms []specs.Mount, main bool) (pod.Member, error) {
	svc := b.svc(name)
	command, entrypoint := svc.cfg.Command, svc.cfg.Entrypoint
	if main && s.Command != nil {
		command = s.Command
	}
	if main && b.o.Entrypoint != nil {
		entrypoint = b.o.Entrypoint
	}
	args, err := oci.Args(svc.image.Config, entrypoint, command)
	if err != nil {
		if main {
			return pod.Member{}, fmt.Errorf("service %q: %w", name, err)
		}
		args = []string{"true"} // never started
	}
	hostNet := b.o.Network == nil || b.o.Network.Mode() == network.Host
	if hostNet {
		for k := range svc.cfg.Sysctls {
			if strings.HasPrefix(k, "net.") {
				return pod.Member{}, fmt.Errorf("service %q: sysctl %s would change the host's network with --network host; it needs a network of the step's own", name, k)
			}
		}
		if len(svc.cfg.ExtraHosts) > 0 || len(svc.cfg.DNS) > 0 || len(svc.cfg.DNSSearch) > 0 {
			log.G(ctx).Warnf("service %q: extra_hosts, dns and dns_search ignored with --network host: its containers use the host's /etc/hosts and /etc/resolv.conf", name)
		}
	}
	m := b.member(svc, builds.ID{Build: b.o.BuildID, Seq: seq, Service: name}, args, ms)
	if !hostNet {
		m.Container.Env = append(b.linkEnv(name), m.Container.Env...)
	}
	// The service's labels, then crun-ci's (which config keeps it from setting).
	m.Labels = maps.Clone(svc.cfg.Labels)
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	m.Labels[builds.LabelStep], m.Labels[builds.LabelService] = s.Name, name
	if a := b.o.Attach; a != nil && main {
		m.Stdin, m.Terminal = a.Stdin, a.TTY
		m.Container.Terminal = a.TTY
	}
	return m, nil
}

// member describes a container of svc running args with the mounts ms: the service's
// hostname, environment (its secret variables through the hand-off), working directory,
// user, confinement, bounds and stop signal.
func (b *build) member(svc *service, id builds.ID, args []string, ms []specs.Mount) pod.Member {
	return pod.Member{
		ID:         id.String(),
		Name:       svc.cfg.Name,
		Image:      svc.image,
		Secrets:    svc.secretEnv,
		Init:       svc.cfg.Init,
		ExtraHosts: extraHosts(svc.cfg),
		DNS:        svc.cfg.DNS,
		DNSSearch:  svc.cfg.DNSSearch,
		StopSignal: stopSignal(svc),
		Container: oci.Container{
			Hostname:   hostname(svc.cfg),
			Image:      svc.image.Config,
			Args:       args,
			Env:        b.env(svc),
			WorkingDir: svc.cfg.WorkingDir,
			User:       svc.user,
			Mounts:     slices.Concat(ms, tmpfsMounts(svc.cfg), b.dockerMounts(svc.cfg)),
			ReadOnly:   svc.cfg.ReadOnly,
			Sysctls:    svc.cfg.Sysctls,
			Security:   svc.security,
			Resources:  svc.resources,
		},
	}
}

// env is what a container gets on top of its image's environment: the CI variables, the
// service's environment, then the build's -e entries; a later key wins.
func (b *build) env(svc *service) []string {
	env := b.o.CIEnv
	if env == nil {
		env = []string{
			"CI=true",
			"CI_NAME=" + civars.Name,
			"CI_BUILD_ID=" + b.o.BuildID,
			"CI_BRANCH=" + b.o.Tag,
		}
	}
	env = append([]string{}, env...)
	if svc.cfg.AddDocker && b.docker != nil {
		env = append(env, b.docker.env...)
	}
	for _, e := range svc.cfg.Environment {
		if e.Value != nil {
			env = append(env, e.Key+"="+*e.Value)
		} else if v, ok := os.LookupEnv(e.Key); ok {
			env = append(env, e.Key+"="+v)
		}
	}
	// env_file, as read by prepare; the encrypted sources come through the hand-off.
	env = append(env, svc.fileEnv...)
	return append(env, b.o.Env...)
}

// volumeIndex returns the index that ends an anonymous volume's directory name.
func volumeIndex(dir string) int {
	i, _ := strconv.Atoi(filepath.Base(dir))
	return i
}

// hostname is the service's hostname key, else its name cut to the 63 bytes a hostname
// may have.
func hostname(svc *config.Service) string {
	if svc.Hostname != "" {
		return svc.Hostname
	}
	if len(svc.Name) > 63 {
		return svc.Name[:63]
	}
	return svc.Name
}

// hostNames are the names each service of a step has in the step's hosts files: its
// own, its hostname and the aliases that the step's services give it in links.
func (b *build) hostNames(services []string) map[string][]string {
	names := map[string][]string{}
	for _, name := range services {
		cfg := b.o.Project.Services[name]
		names[name] = append(names[name], name)
		if cfg.Hostname != "" {
			names[name] = append(names[name], cfg.Hostname)
		}
	}
	for _, name := range services {
		for _, l := range b.o.Project.Services[name].Links {
			if _, ok := names[l.Service]; ok && l.Alias != "" {
				names[l.Service] = append(names[l.Service], l.Alias)
			}
		}
	}
	return names
}

func extraHosts(cfg *config.Service) [][2]string {
	var out [][2]string
	for _, h := range cfg.ExtraHosts {
		out = append(out, [2]string{h.Name, h.IP})
	}
	return out
}

// tmpfsMounts are the service's tmpfs mounts, with Docker's options (nosuid, nodev,
// noexec unless exec is given) before the service's.
func tmpfsMounts(cfg *config.Service) []specs.Mount {
	var out []specs.Mount
	for _, t := range cfg.Tmpfs {
		opts := []string{"nosuid", "nodev"}
		if !slices.Contains(t.Options, "exec") {
			opts = append(opts, "noexec")
		}
		out = append(out, specs.Mount{Destination: t.Path, Type: "tmpfs", Source: "tmpfs", Options: append(opts, t.Options...)})
	}
	return out
}
