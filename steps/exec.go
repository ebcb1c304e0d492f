package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/docker/go-units"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crun-ci/crun-ci/builds"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/mounts"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/oci"
	"github.com/crun-ci/crun-ci/secrets"
	"github.com/crun-ci/crun-ci/task"
)

// cleanupTimeout bounds the teardown of one step, which runs even when the build was
// interrupted.
const cleanupTimeout = 60 * time.Second

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

	start := time.Now()
	r := Result{Step: s.Name, Service: s.Service}
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
	b.record(s, r)
	return r.Status == Passed
}

// exec makes the step's volumes and containers, runs its service's command and tears
// everything down again, whatever happened.
func (b *build) exec(ctx context.Context, s *config.Step, r *Result) (_ uint32, retErr error) {
	seq := b.seq.Add(1)
	volumes := filepath.Join(b.dir, "volumes", strconv.FormatInt(seq, 10))
	deps := dependencies(b.o.Project, s.Service)
	plan, err := mounts.ForStep(b.msvc, volumes, append(deps, s.Service)...)
	if err != nil {
		return 0, err
	}
	// Images built from Dockerfiles are built now, when a step first needs them.
	if err := b.ensure(ctx, s.Name, plan.Containers); err != nil {
		return 0, err
	}
	var ctrs []Container
	var sb *network.Sandbox
	// Teardown leaves the critical path: the next step starts while this one's
	// containers, network, snapshots and volumes are removed. Run waits for every
	// teardown.
	defer func() { b.teardown(ctx, ctrs, sb, volumes) }()
	for _, a := range plan.Anon {
		if err := os.MkdirAll(a.Dir, 0o755); err != nil {
			return 0, fmt.Errorf("make anonymous volume %s: %w", a.Target, err)
		}
		if tmpl, ok := b.services[a.Service].templates[volumeIndex(a.Dir)]; ok {
			if _, err := mounts.Copy(a.Dir, tmpl); err != nil {
				return 0, fmt.Errorf("fill anonymous volume %s from the image: %w", a.Target, err)
			}
		}
	}

	// Host paths are opened again now, refusing symlinks, and what the main container
	// mounts is compared with them before its process starts (see mounts.Guard.Open): a
	// step that swapped a checked directory for a link cannot redirect a later mount.
	pinned := map[string]*os.File{}
	defer func() {
		for _, f := range pinned {
			f.Close()
		}
	}()
	for _, ms := range plan.Mounts {
		for _, m := range ms {
			if _, ok := pinned[m.Source]; ok || strings.HasPrefix(m.Source, volumes+"/") {
				continue // done, or an anonymous volume made by crun-ci just now
			}
			f, err := b.guard.Open(m.Source)
			if err != nil {
				return 0, err
			}
			pinned[m.Source] = f
		}
	}
	verify := func(service string) func(pid uint32) error {
		return func(pid uint32) error { return verifyMounts(pid, plan.Mounts[service], pinned) }
	}

	var net stepNet
	if b.o.Network != nil && b.o.Network.Mode() != network.Host {
		if sb, err = b.o.Network.Setup(ctx, fmt.Sprintf("%s-%d", b.o.BuildID, seq), filepath.Join(b.dir, "netns")); err != nil {
			return 0, err
		}
		if net, err = b.stepFiles(filepath.Join(volumes, ".etc"), sb, plan.Containers); err != nil {
			return 0, err
		}
	}

	// Secret variables wait in a FIFO per service, held open here until the step ends.
	handoffs := map[string]string{}
	defer func() {
		for _, f := range b.handoffFiles(handoffs) {
			f.Close()
		}
	}()
	for _, name := range plan.Containers {
		if env := b.services[name].secretEnv; len(env) > 0 {
			path, err := b.handoff(filepath.Join(volumes, ".etc"), name, env)
			if err != nil {
				return 0, err
			}
			handoffs[name] = path
		}
	}

	byName := map[string]Container{}
	for _, name := range plan.Containers {
		id := fmt.Sprintf("crunci-%s-%d-%s", b.o.BuildID, seq, sanitize(name))
		ms := plan.Mounts[name]
		if path, ok := handoffs[name]; ok {
			ms = append(append([]specs.Mount{}, ms...),
				mounts.Bind(b.exe, handoffExe, true),
				mounts.Bind(path, handoffFIFO, true))
		}
		c, err := b.create(ctx, s, name, id, ms, name == s.Service, net, handoffs[name] != "")
		if err != nil {
			return 0, err
		}
		ctrs = append(ctrs, c)
		byName[name] = c
	}
	main := byName[s.Service]

	// Dependencies start in their order, each when what it needs is ready; they are
	// stopped when the step's command has ended, before the teardown.
	g := b.startDeps(ctx, s, deps, byName, verify)
	defer func() {
		g.stop()
		if len(g.notes) > 0 {
			r.Note = strings.Join(append(slices.DeleteFunc([]string{r.Note}, func(n string) bool { return n == "" }), g.notes...), "; ")
		}
	}()
	// The step's own task is created while its dependencies start (creating a task is
	// most of a container's start-up); its process starts once they are ready.
	before := func(pid uint32) error {
		for _, e := range b.edges(s.Service) {
			if err := ready(ctx, g.deps[e.service], e.condition); err != nil {
				return err
			}
		}
		return verify(s.Service)(pid)
	}

	var stdout, stderr io.Writer
	if a := b.o.Attach; a != nil {
		stdout, stderr = a.Stdout, a.Stderr
	} else {
		prefix := s.Name + "/" + s.Service + " | "
		so, se := b.out.Stream(prefix), b.out.Stream(prefix)
		defer func() {
			retErr = errors.Join(retErr, so.Close(), se.Close())
		}()
		stdout, stderr = so, se
	}
	// Starting is not cut short by an interrupt: a task that a cancelled Start left
	// half-started would be killed outright, without the grace of stop. Wait sees the
	// interrupt next.
	if err := main.Start(context.WithoutCancel(ctx), stdout, stderr, before); err != nil {
		return 0, err
	}
	if a := b.o.Attach; a != nil && a.TTY && a.Resize != nil {
		a.Resize(func(w, h uint32) error { return main.Resize(ctx, w, h) })
	}
	code, err := main.Wait(ctx)
	if err != nil && ctx.Err() != nil {
		return 0, b.stop(main)
	}
	if err == nil && code != 0 {
		r.Note = b.oomNote(ctx, main, s.Service)
	}
	return code, err
}

// oomNote says, for a container of service whose task exited with a failure, whether the
// OOM killer ended it: "killed: out of memory (limit 64MiB)"; "" when it did not.
func (b *build) oomNote(ctx context.Context, c Container, service string) string {
	oom, err := c.OOMKilled(ctx)
	if err != nil {
		log.G(ctx).WithError(err).Debugf("container %s: cannot tell whether it ran out of memory", c.ID())
		return ""
	}
	if !oom {
		return ""
	}
	if limit := b.services[service].resources.Memory; limit > 0 {
		return fmt.Sprintf("killed: out of memory (limit %s)", units.BytesSize(float64(limit)))
	}
	return "killed: out of memory"
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

// teardown removes a step's containers (with their tasks and snapshots), then its
// anonymous volumes, in the background; errors are kept for Run to report. A volume
// directory that is still a mount point is kept.
func (b *build) teardown(ctx context.Context, ctrs []Container, sb *network.Sandbox, volumes string) {
	if b.o.NoRemove {
		return
	}
	b.cleanup.Go(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		var errs []error
		for i := len(ctrs) - 1; i >= 0; i-- {
			errs = append(errs, ctrs[i].Delete(ctx))
		}
		if sb != nil && errors.Join(errs...) == nil {
			errs = append(errs, b.o.Network.Teardown(ctx, sb))
		}
		if err := errors.Join(errs...); err != nil {
			// The containers may still use the volumes.
			b.cleanupFailed(fmt.Errorf("keep %s: %w", volumes, err))
			return
		}
		if err := builds.RemoveDir(volumes); err != nil {
			b.cleanupFailed(err)
		}
	})
}

func (b *build) cleanupFailed(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cleanupErrs = append(b.cleanupErrs, err)
}

// stop ends the task of a step that was interrupted or timed out: SIGTERM, then SIGKILL
// after the stop timeout, or at once when Hurry is closed.
func (b *build) stop(c Container) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.o.StopTimeout+cleanupTimeout)
	defer cancel()
	if err := c.Kill(ctx, syscall.SIGTERM); err != nil {
		return err
	}
	wctx, wcancel := context.WithTimeout(ctx, b.o.StopTimeout)
	defer wcancel()
	go func() {
		select {
		case <-b.o.Hurry:
			wcancel()
		case <-wctx.Done():
		}
	}()
	if _, err := c.Wait(wctx); err == nil {
		return nil
	}
	log.G(ctx).Debugf("container %s: still running after SIGTERM; SIGKILL", c.ID())
	if err := c.Kill(ctx, syscall.SIGKILL); err != nil {
		return err
	}
	_, err := c.Wait(ctx)
	return err
}

// create makes one container of the step. The step's own service runs the step's
// command; the others are made only for their volumes.
func (b *build) create(ctx context.Context, s *config.Step, name, id string, ms []specs.Mount, main bool, net stepNet, handoff bool) (Container, error) {
	svc := b.services[name]
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
			return nil, fmt.Errorf("service %q: %w", name, err)
		}
		args = []string{"true"} // never started
	}
	if handoff {
		args = append([]string{handoffExe, "exec-env", handoffFIFO, "--"}, args...)
	}
	spec, err := b.spec(ctx, id, svc, args, ms, net, main && b.o.Attach != nil && b.o.Attach.TTY)
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", name, err)
	}
	labels := maps.Clone(b.labels)
	labels[builds.LabelStep], labels[builds.LabelService] = s.Name, name
	log.G(ctx).WithField("step", s.Name).Debugf("create container %s", id)
	o := task.Options{ID: id, Image: svc.image, Spec: spec, Labels: labels, FIFODir: filepath.Join(b.dir, "fifo")}
	if a := b.o.Attach; a != nil && main {
		o.Stdin, o.Terminal = a.Stdin, a.TTY
	}
	return b.rt.Create(ctx, o)
}

// spec is the runtime spec of a container of svc running args, with the service's
// hostname, environment, working directory and user, the mounts ms and the network net.
func (b *build) spec(ctx context.Context, id string, svc *service, args []string, ms []specs.Mount, net stepNet, terminal bool) (*specs.Spec, error) {
	return oci.Spec(ctx, oci.Container{
		ID:         id,
		Namespace:  b.o.Namespace,
		Hostname:   hostname(svc.cfg),
		Image:      svc.image.Config,
		Args:       args,
		Env:        b.env(svc.cfg),
		WorkingDir: svc.cfg.WorkingDir,
		User:       svc.user,
		Mounts:     ms,
		Terminal:   terminal,
		NetNS:      net.netns,
		HostsFile:  net.hosts,
		ResolvConf: net.resolv,
		Security:   svc.security,
		Resources:  svc.resources,
	})
}

// env is what a container gets on top of its image's environment: the CI variables, the
// service's environment, then the build's -e entries; a later key wins.
func (b *build) env(svc *config.Service) []string {
	env := b.o.CIEnv
	if env == nil {
		env = []string{
			"CI=true",
			"CI_NAME=crun-ci",
			"CI_BUILD_ID=" + b.o.BuildID,
			"CI_BRANCH=" + b.o.Tag,
		}
	}
	env = append([]string{}, env...)
	for _, e := range svc.Environment {
		if e.Value != nil {
			env = append(env, e.Key+"="+*e.Value)
		} else if v, ok := os.LookupEnv(e.Key); ok {
			env = append(env, e.Key+"="+v)
		}
	}
	// env_file, as read by prepare; the encrypted sources come through the hand-off.
	env = append(env, b.services[svc.Name].fileEnv...)
	return append(env, b.o.Env...)
}

// volumeIndex returns the index that ends an anonymous volume's directory name.
func volumeIndex(dir string) int {
	i, _ := strconv.Atoi(filepath.Base(dir))
	return i
}

// sanitize makes a service name fit containerd's identifier rules: letters and digits
// separated by single '.', '_' or '-', at most 40 characters.
func sanitize(name string) string {
	var sb strings.Builder
	sep := false
	for _, r := range name {
		ok := r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		switch {
		case ok:
			if sep && sb.Len() > 0 {
				sb.WriteByte('-')
			}
			sep = false
			sb.WriteRune(r)
		default:
			sep = true
		}
	}
	out := sb.String()
	if len(out) > 40 {
		out = strings.TrimRight(out[:40], "-")
	}
	if out == "" {
		out = "svc"
	}
	return out
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

// stepNet is what a step's containers need of its network: the namespace to join and the
// files for /etc/hosts and /etc/resolv.conf; all "" for the host's.
type stepNet struct {
	netns, hosts, resolv string
}

// stepFiles writes the step's hosts file (every service of the step, its hostname and the
// aliases its services give them in links, at the step's address) and resolv.conf into
// dir.
func (b *build) stepFiles(dir string, sb *network.Sandbox, services []string) (stepNet, error) {
	var names []string
	for _, name := range services {
		cfg := b.o.Project.Services[name]
		names = append(names, name)
		if cfg.Hostname != "" {
			names = append(names, cfg.Hostname)
		}
		for _, l := range cfg.Links {
			if l.Alias != "" {
				names = append(names, l.Alias)
			}
		}
	}
	resolv, err := network.ResolvConf(b.o.Network.Mode())
	if err != nil {
		return stepNet{}, err
	}
	n := stepNet{netns: sb.Path, hosts: filepath.Join(dir, "hosts"), resolv: filepath.Join(dir, "resolv.conf")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return stepNet{}, err
	}
	if err := os.WriteFile(n.hosts, network.Hosts(sb.IP, names), 0o644); err != nil {
		return stepNet{}, err
	}
	if err := os.WriteFile(n.resolv, resolv, 0o644); err != nil {
		return stepNet{}, err
	}
	return n, nil
}

// Where the hand-off of secret variables appears inside a container.
const (
	handoffExe  = "/.crun-ci/crun-ci"
	handoffFIFO = "/.crun-ci/env"
)

// handoff makes the FIFO through which service name's container gets its secret
// variables (see secrets.EncodeEnv), owned by the service's user, and writes them into
// it. The FIFO is kept open (for reading and writing, so that the data waits in the
// pipe, in memory, until the process reads it) until the step ends; nothing of it is on
// disk.
func (b *build) handoff(dir, name string, env []string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "secrets-"+name)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return "", fmt.Errorf("make the secret hand-off of %q: %w", name, err)
	}
	u := b.services[name].user
	if err := os.Chown(path, int(u.UID), int(u.GID)); err != nil {
		return "", fmt.Errorf("make the secret hand-off of %q: %w", name, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("open the secret hand-off of %q: %w", name, err)
	}
	b.mu.Lock()
	b.handoffsOpen[path] = f
	b.mu.Unlock()
	data := secrets.EncodeEnv(env)
	go f.Write(data) // more than a pipe holds waits for the reader
	return path, nil
}

// handoffFiles takes the open FIFOs of the paths out of the build's list.
func (b *build) handoffFiles(paths map[string]string) []*os.File {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*os.File
	for _, p := range paths {
		if f, ok := b.handoffsOpen[p]; ok {
			out = append(out, f)
			delete(b.handoffsOpen, p)
		}
	}
	return out
}
