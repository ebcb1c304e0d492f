package pod

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/distribution/reference"
	"github.com/docker/go-units"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crun-ci/crun-ci/builds"
	"github.com/crun-ci/crun-ci/mounts"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/oci"
	"github.com/crun-ci/crun-ci/secrets"
	"github.com/crun-ci/crun-ci/snapshot"
	"github.com/crun-ci/crun-ci/task"
)

// Creator has containerd create containers (task.Client, or a test's fake).
type Creator interface {
	Create(ctx context.Context, o task.Options) (Task, error)
}

// Task is a created container and, once started, its task (task.Container).
type Task interface {
	ID() string
	// CreateTask creates the task: its mounts are made, its process waits for Start.
	CreateTask(ctx context.Context, stdout, stderr io.Writer) error
	// Start creates the task (unless CreateTask did), calls before with its pid (its
	// mounts are made, its process has not started; an error stops here), then starts
	// it.
	Start(ctx context.Context, stdout, stderr io.Writer, before func(pid uint32) error) error
	Wait(ctx context.Context) (uint32, error)
	// OOMKilled reports whether the OOM killer killed a process of the exited task.
	OOMKilled(ctx context.Context) (bool, error)
	Kill(ctx context.Context, sig syscall.Signal) error
	Resize(ctx context.Context, width, height uint32) error
	// Exec runs args in the running task and returns its exit code and the end of its
	// output.
	Exec(ctx context.Context, id string, args []string) (uint32, []byte, error)
	// DeleteTask removes the task and keeps the container with its snapshot.
	DeleteTask(ctx context.Context) error
	Delete(ctx context.Context) error
}

var _ Task = (*task.Container)(nil)

// Containerd is the Creator of a containerd client.
func Containerd(c *task.Client) Creator { return containerd{c} }

type containerd struct{ c *task.Client }

func (c containerd) Create(ctx context.Context, o task.Options) (Task, error) {
	t, err := c.c.Create(ctx, o)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Options describe a pod.
type Options struct {
	// ID names the pod and its network: the build id, a dash and the pod's sequence
	// number in the build.
	ID string
	// Dir is the pod's directory, below the build's; New makes it, Close removes it.
	// NetNSDir is where the build's network namespaces are mounted.
	Dir, NetNSDir string
	// Network gives the pod its network: in Bridge mode a bridge of its own and a
	// namespace and address per member; nil, or Host mode, runs the members in the
	// host's, with its /etc/hosts and /etc/resolv.conf.
	Network *network.Manager
	// Hosts are the names the pod's hosts file gives each member's address, by member
	// name (a service: its name, its hostname, the aliases its links give it).
	Hosts map[string][]string
	// Namespace is containerd's namespace, which names the members' cgroups. Labels go
	// on every member; FIFODir is where their output FIFOs are made.
	Namespace string
	Labels    map[string]string
	FIFODir   string
	// Handoff is crun-ci's own executable, which hands members their secret variables
	// and is their init; needed when one has some or asks for one.
	Handoff *Exe
}

// Pod is a set of containers sharing a network; see the package documentation.
type Pod struct {
	rt  Creator
	o   Options
	net *network.Net
	// hosts and resolv are the files members mount; "" for the host's.
	hosts, resolv string
	resolvConf    []byte
	// seen are the names in the hosts file.
	hostsMu sync.Mutex
	seen    map[string]bool
	// dialSB is the sandbox Dial's connections come from, made on first use; dial
	// makes them, once the sandbox is ready.
	dialMu sync.Mutex
	dialSB *network.Sandbox
	dial   network.DialFunc

	mu      sync.Mutex
	members []*Container
	closed  bool
}

// New makes the pod's directory and network, and the hosts and resolv.conf files its
// members mount. On error nothing of it is left.
func New(ctx context.Context, rt Creator, o Options) (_ *Pod, retErr error) {
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("make the directory of %s: %w", o.ID, err)
	}
	p := &Pod{rt: rt, o: o}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, p.Close(ctx))
		}
	}()
	if o.Network == nil || o.Network.Mode() == network.Host {
		return p, nil
	}
	n, err := o.Network.Setup(ctx, o.ID, o.NetNSDir)
	if err != nil {
		return nil, err
	}
	p.net = n
	if p.resolvConf, err = network.ResolvConf(o.Network.Mode()); err != nil {
		return nil, err
	}
	etc := p.etc()
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return nil, err
	}
	p.hosts, p.resolv = filepath.Join(etc, "hosts"), filepath.Join(etc, "resolv.conf")
	p.seen = map[string]bool{"localhost": true}
	if err := os.WriteFile(p.hosts, network.Hosts("", nil), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.resolv, p.resolvConf, 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

// etc holds the pod's own files: hosts, resolv.conf, hand-offs.
func (p *Pod) etc() string { return filepath.Join(p.o.Dir, ".etc") }

// Dial returns what makes connections from the pod's network (for ADD <url>): from a
// sandbox of the pod's own, attached on the first connection; nil when the pod uses the
// host's network.
func (p *Pod) Dial() network.DialFunc {
	if p.net == nil || p.net.Mode() == network.Host {
		return nil
	}
	return func(ctx context.Context, nw, address string) (net.Conn, error) {
		dial, err := p.dialer(ctx)
		if err != nil {
			return nil, err
		}
		return dial(ctx, nw, address)
	}
}

// dialer returns what Dial's connections are made with, attaching its sandbox first.
func (p *Pod) dialer(ctx context.Context) (network.DialFunc, error) {
	p.dialMu.Lock()
	defer p.dialMu.Unlock()
	if p.dial != nil {
		return p.dial, nil
	}
	if p.dialSB == nil {
		sb, err := p.net.Attach(ctx, p.o.ID+"-dial")
		if err != nil {
			return nil, err
		}
		p.dialSB = sb
	}
	if err := p.dialSB.Wait(ctx); err != nil {
		return nil, err
	}
	p.dial = network.Dialer(p.dialSB.Path, p.resolvConf)
	return p.dial, nil
}

// attach gives member m its sandbox on the pod's network and its names in the hosts
// file; nil (the host's namespace) without one.
func (p *Pod) attach(ctx context.Context, m Member) (*network.Sandbox, error) {
	if p.net == nil || p.net.Mode() == network.Host {
		return nil, nil
	}
	sb, err := p.net.Attach(ctx, m.ID)
	if err != nil {
		return nil, err
	}
	p.hostsMu.Lock()
	defer p.hostsMu.Unlock()
	lines := network.HostsEntries(sb.IP, p.o.Hosts[m.Name], p.seen)
	for _, h := range m.ExtraHosts {
		lines = append(lines, network.HostsEntries(h[1], []string{h[0]}, p.seen)...)
	}
	if len(lines) == 0 {
		return sb, nil
	}
	// Appended, on the one file every member mounts: members that run already see the
	// new names, and never a file half rewritten.
	f, err := os.OpenFile(p.hosts, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(lines)
	if err := errors.Join(err, f.Close()); err != nil {
		return nil, fmt.Errorf("hosts file of %s: %w", p.o.ID, err)
	}
	return sb, nil
}

// Join gives a container that is not a member, made from a runtime spec of its own (crun-ci
// debug's), what a member gets of the pod's network: a sandbox (id) whose address the
// hosts file gives name's names, and the pod's hosts file and resolv.conf, which it
// mounts. The sandbox is nil, and the files "", in the host's network. Wait for the
// sandbox before its process runs; Close removes it with the pod.
func (p *Pod) Join(ctx context.Context, id, name string) (sb *network.Sandbox, hosts, resolv string, err error) {
	if sb, err = p.attach(ctx, Member{ID: id, Name: name}); err != nil {
		return nil, "", "", fmt.Errorf("container %s: %w", id, err)
	}
	return sb, p.hosts, p.resolv, nil
}

// Member describes one container of a pod.
type Member struct {
	// ID is the container's id and its snapshot's key (a builds.ID); Name says what it
	// is in messages: the service's name, or "RUN" of an image build.
	ID, Name string
	// Labels are added to the pod's.
	Labels map[string]string
	// Image is what the container's fresh snapshot is made from. With RootPath, the
	// container has no snapshot: its root filesystem is that directory, which an image
	// builder mounted (see task.Options).
	Image    *task.Image
	RootPath string
	// Container is what the runtime spec is made of; the pod sets its id, namespace and
	// network.
	Container oci.Container
	// Secrets (KEY=VALUE) reach the process through the hand-off, never the spec.
	Secrets []string
	// Init runs the process under crun-ci's init (see Init).
	Init bool
	// ExtraHosts are NAME -> ADDRESS lines added to the pod's hosts file (extra_hosts);
	// DNS and DNSSearch, when set, give the member a resolv.conf of its own. Neither
	// applies in the host's network namespace, whose files it uses.
	ExtraHosts     [][2]string
	DNS, DNSSearch []string
	// StopSignal is what Stop sends first (SIGTERM when 0).
	StopSignal syscall.Signal
	// Stdin and Terminal attach the container (crun-ci run).
	Stdin    io.Reader
	Terminal bool
}

// Container is a member of a pod. Its methods other than Start, Wait, Stop and Delete
// are the Task's.
type Container struct {
	Task
	name       string
	stopSignal syscall.Signal
	handoff    *secrets.Handoff
	pod        *Pod
	// sandbox is the container's network namespace, nil for the host's.
	sandbox *network.Sandbox
	// memory is the container's memory limit in bytes (0: none), for OOMNote.
	memory int64
	// image and env are its image and its process's environment (its PATH), for the
	// error of a command that is not there.
	image string
	env   []string

	started bool
	// exited is closed when the started task has ended; code and waitErr say how.
	exited  chan struct{}
	code    uint32
	waitErr error
	deleted bool
}

// Create makes one member: its hand-off, if it has secrets, its spec and its container.
func (p *Pod) Create(ctx context.Context, m Member) (_ *Container, retErr error) {
	if p.isClosed() {
		return nil, fmt.Errorf("container %s: its pod is closed", m.ID)
	}
	c := &Container{name: m.Name, stopSignal: m.StopSignal, pod: p, exited: make(chan struct{}), memory: m.Container.Resources.Memory}
	sb, err := p.attach(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", m.ID, err)
	}
	c.sandbox = sb
	oc, err := p.container(m)
	if err != nil {
		return nil, err
	}
	if sb != nil {
		oc.NetNS = sb.Path
		if len(m.DNS) > 0 || len(m.DNSSearch) > 0 {
			if oc.ResolvConf, err = p.ownResolvConf(m); err != nil {
				return nil, fmt.Errorf("container %s: %w", m.ID, err)
			}
		}
	}
	if len(m.Secrets) > 0 {
		if err := os.MkdirAll(p.etc(), 0o755); err != nil {
			return nil, err
		}
		h, err := secrets.NewHandoff(p.handoffPath(m), int(oc.User.UID), int(oc.User.GID), m.Secrets)
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", m.ID, err)
		}
		c.handoff = h
		defer func() {
			if retErr != nil {
				retErr = errors.Join(retErr, h.Close())
			}
		}()
	}
	spec, err := oci.Spec(ctx, oc)
	if err != nil {
		return nil, err
	}
	if m.Image != nil {
		c.image = m.Image.Name
	}
	c.env = spec.Process.Env
	labels := maps.Clone(p.o.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, m.Labels)
	log.G(ctx).Debugf("create container %s", m.ID)
	t, err := p.rt.Create(ctx, task.Options{
		ID: m.ID, Image: m.Image, RootPath: m.RootPath, Spec: spec, Labels: labels,
		FIFODir: p.o.FIFODir, Stdin: m.Stdin, Terminal: m.Terminal,
	})
	if err != nil {
		return nil, err
	}
	c.Task = t
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.members = append(p.members, c)
	}
	p.mu.Unlock()
	if closed { // Close ran meanwhile: this member is its caller's to undo
		cctx, cancel := snapshot.CleanupContext(ctx)
		defer cancel()
		return nil, errors.Join(fmt.Errorf("container %s: its pod is closed", m.ID), c.Delete(cctx))
	}
	return c, nil
}

func (p *Pod) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Spec is the runtime spec that Create would give m: an image builder looks at its mount
// points first.
func (p *Pod) Spec(ctx context.Context, m Member) (*specs.Spec, error) {
	oc, err := p.container(m)
	if err != nil {
		return nil, err
	}
	return oci.Spec(ctx, oc)
}

// container is what m's spec is made from: its own description, with the pod's ids and
// network, the hand-off's mounts and command when it has secrets, and the init's when
// it asks for one.
func (p *Pod) container(m Member) (oci.Container, error) {
	oc := m.Container
	oc.ID, oc.Namespace = m.ID, p.o.Namespace
	oc.HostsFile, oc.ResolvConf = p.hosts, p.resolv
	if (len(m.Secrets) > 0 || m.Init) && p.o.Handoff == nil {
		return oci.Container{}, fmt.Errorf("container %s: secret variables and init need crun-ci's executable", m.ID)
	}
	if len(m.Secrets) > 0 || m.Init {
		oc.Mounts = append(slices.Clone(oc.Mounts), p.o.Handoff.Mounts()...)
	}
	if len(m.Secrets) > 0 {
		oc.Mounts = append(oc.Mounts, mounts.Bind(p.handoffPath(m), secrets.HandoffFIFO, true))
		oc.Args = append(p.o.Handoff.Command("exec-env", secrets.HandoffFIFO, "--"), oc.Args...)
	}
	if m.Init {
		// PID 1 is the init; the hand-off, when there is one, its child.
		oc.Args = append(p.o.Handoff.Command("init", "--"), oc.Args...)
	}
	return oc, nil
}

// ownResolvConf writes the resolv.conf of a member with dns or dns_search: their
// nameservers and search domains instead of the pod's, the pod's other lines kept.
func (p *Pod) ownResolvConf(m Member) (string, error) {
	var b strings.Builder
	for _, line := range strings.Split(string(p.resolvConf), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
			continue
		case f[0] == "nameserver" && len(m.DNS) > 0, (f[0] == "search" || f[0] == "domain") && len(m.DNSSearch) > 0:
			continue
		}
		b.WriteString(line + "\n")
	}
	for _, ns := range m.DNS {
		b.WriteString("nameserver " + ns + "\n")
	}
	if len(m.DNSSearch) > 0 {
		b.WriteString("search " + strings.Join(m.DNSSearch, " ") + "\n")
	}
	path := filepath.Join(p.etc(), "resolv-"+m.ID+".conf")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

func (p *Pod) handoffPath(m Member) string { return filepath.Join(p.etc(), "secrets-"+m.ID) }

// Start creates the task, with its output copied to stdout and stderr, calls before (when
// not nil) with its pid once its mounts are made and before its process starts, and
// starts it unless before failed. Starting is not cut short by ctx: a task half
// started would be killed outright, without the grace of Stop.
func (c *Container) Start(ctx context.Context, stdout, stderr io.Writer, before func(pid uint32) error) error {
	// The network is set up while the task is made; its process starts once it is.
	ready := func(pid uint32) error {
		if err := c.sandbox.Wait(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		if before != nil {
			return before(pid)
		}
		return nil
	}
	if err := c.Task.Start(context.WithoutCancel(ctx), stdout, stderr, ready); err != nil {
		return c.missing(err)
	}
	c.started = true
	go func() {
		c.code, c.waitErr = c.Task.Wait(context.WithoutCancel(ctx))
		close(c.exited)
	}()
	return nil
}

// CreateTask creates the task ahead of Start, with its output copied to stdout and
// stderr; Start then starts that task. Like Start, it is not cut short by ctx.
func (c *Container) CreateTask(ctx context.Context, stdout, stderr io.Writer) error {
	if err := c.Task.CreateTask(context.WithoutCancel(ctx), stdout, stderr); err != nil {
		return c.missing(err)
	}
	return nil
}

// runcExec is how runc says that the process it was to start cannot be: its name, and why.
var runcExec = regexp.MustCompile(`exec: "([^"]*)": (executable file not found in \$PATH|stat [^:]*: no such file or directory|permission denied)`)

// missing turns runc's error about a command that is not in the image into the user's
// words (CommandError).
func (c *Container) missing(err error) error { return CommandError(err, c.image, c.env) }

// CommandError turns runc's chain of errors about a command that is not in the image (or
// cannot be run) into one line in the user's words: `"npm" not found in image busybox
// (PATH=/usr/sbin:/usr/bin:/sbin:/bin)`; other errors it returns as they are. env is the
// process's environment, whose PATH it names.
func CommandError(err error, image string, env []string) error {
	m := runcExec.FindStringSubmatch(err.Error())
	path := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	if named, perr := reference.ParseNormalizedNamed(image); perr == nil {
		image = strings.TrimSuffix(reference.FamiliarString(named), ":latest")
	}
	switch {
	case m == nil:
		return err
	case strings.HasPrefix(m[2], "executable"):
		return fmt.Errorf("%q not found in image %s (PATH=%s)", m[1], image, path)
	case strings.HasPrefix(m[2], "stat"):
		return fmt.Errorf("%q not found in image %s", m[1], image)
	}
	return fmt.Errorf("%q is not executable in image %s", m[1], image)
}

// Wait waits for the task to end and returns its exit code, or ctx's error when ctx ends
// first (the task runs on).
func (c *Container) Wait(ctx context.Context) (uint32, error) {
	if !c.started {
		return 0, fmt.Errorf("wait for container %s: not started", c.ID())
	}
	select {
	case <-c.exited:
		return c.code, c.waitErr
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Stop ends a started task by its stop policy: the stop signal, then, when the task is
// still running after grace (or at once when hurry is closed), SIGKILL. With no grace the
// task gets SIGKILL at once. A grace that it waits for is said on stderr. It returns once
// the task has ended, or ctx has.
func (c *Container) Stop(ctx context.Context, grace time.Duration, hurry <-chan struct{}) error {
	if !c.started || isClosed(c.exited) {
		return nil
	}
	if grace > 0 {
		sig := c.stopSignal
		if sig == 0 {
			sig = syscall.SIGTERM
		}
		if err := c.Kill(ctx, sig); err != nil {
			return err
		}
		deadline := time.Now().Add(grace)
		// Most processes end at once; say nothing of those.
		ended, err := c.waitUpTo(ctx, min(grace, 100*time.Millisecond), hurry)
		if ended || err != nil {
			return err
		}
		if left := time.Until(deadline); left > 0 && !isClosed(hurry) {
			log.G(ctx).Infof("stopping %s: sent %s, waiting up to %s before SIGKILL", c.what(), unix.SignalName(sig), left.Round(100*time.Millisecond))
			if ended, err := c.waitUpTo(ctx, left, hurry); ended || err != nil {
				return err
			}
		}
		log.G(ctx).Infof("stopping %s: SIGKILL", c.what())
	}
	if err := c.Kill(ctx, syscall.SIGKILL); err != nil {
		return err
	}
	ended, err := c.waitUpTo(ctx, snapshot.CleanupTimeout, nil)
	if err == nil && !ended {
		err = fmt.Errorf("stop %s: still running %s after SIGKILL", c.what(), snapshot.CleanupTimeout)
	}
	return err
}

// waitUpTo waits for the task to end, for at most d or until hurry is closed; it reports
// whether it ended, and ctx's error when ctx ended first.
func (c *Container) waitUpTo(ctx context.Context, d time.Duration, hurry <-chan struct{}) (bool, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.exited:
		return true, nil
	case <-t.C:
	case <-hurry:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	return isClosed(c.exited), nil
}

// OOMNote says, for a member whose task exited with a failure, whether the OOM killer
// ended it: "killed: out of memory (limit 64MiB)"; "" when it did not, or when that
// cannot be told (logged at debug level).
func (c *Container) OOMNote(ctx context.Context) string {
	oom, err := c.OOMKilled(ctx)
	if err != nil {
		log.G(ctx).WithError(err).Debugf("container %s: cannot tell whether it ran out of memory", c.ID())
		return ""
	}
	if !oom {
		return ""
	}
	if c.memory > 0 {
		return fmt.Sprintf("killed: out of memory (limit %s)", units.BytesSize(float64(c.memory)))
	}
	return "killed: out of memory"
}

func (c *Container) what() string {
	if c.name == "" {
		return "container " + c.ID()
	}
	return fmt.Sprintf("%q (container %s)", c.name, c.ID())
}

// Delete removes the member now (killing its task if it still runs) and its hand-off,
// before the pod's Close; what is gone is not an error.
func (c *Container) Delete(ctx context.Context) error {
	if c.deleted {
		return nil
	}
	err := c.Task.Delete(ctx)
	if err == nil {
		c.deleted = true
	}
	if c.handoff != nil {
		err = errors.Join(err, c.handoff.Close())
	}
	return err
}

// Release closes the members' secret hand-offs and keeps everything else: a pod kept for
// inspection (--no-remove) holds no secret any longer than its containers ran.
func (p *Pod) Release() error {
	p.mu.Lock()
	members := slices.Clone(p.members)
	p.mu.Unlock()
	var errs []error
	for _, c := range members {
		if c.handoff != nil {
			errs = append(errs, c.handoff.Close())
		}
	}
	return errors.Join(errs...)
}

// Keep ends the pod but keeps its members' containers, snapshots and volumes, for crun-ci
// debug: their tasks are deleted (no shim waits on a kept build), their secret hand-offs
// closed and the pod's network removed (a debug container gets a network of its own);
// the pod's directory stays. Like Close, it runs with a timeout of its own.
func (p *Pod) Keep(ctx context.Context) error {
	ctx, cancel := snapshot.CleanupContext(ctx)
	defer cancel()
	members := p.end()
	var errs []error
	for i := len(members) - 1; i >= 0; i-- {
		c := members[i]
		errs = append(errs, c.Task.DeleteTask(ctx))
		if c.handoff != nil {
			errs = append(errs, c.handoff.Close())
		}
	}
	if p.net != nil {
		errs = append(errs, p.net.Close(ctx))
		p.net = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("keep %s: %w", p.o.ID, err)
	}
	return nil
}

// Close deletes the pod's members, the last made first, and meanwhile its network, then
// its directory (unless a mount is still in it). It runs with a timeout of its own, even
// when ctx was cancelled. When a member cannot be deleted, the directory stays (the
// member may still use it) for `crun-ci cleanup`, and the error says so.
func (p *Pod) Close(ctx context.Context) error {
	ctx, cancel := snapshot.CleanupContext(ctx)
	defer cancel()
	members := p.end()
	// The network goes while containerd deletes the members: both mostly wait (for the
	// kernel's grace periods, for the shims), and no process of a stopped pod uses the
	// network any more.
	netDone := make(chan error, 1)
	go func() {
		if p.net == nil {
			netDone <- nil
			return
		}
		netDone <- p.net.Close(ctx)
	}()
	var errs []error
	for i := len(members) - 1; i >= 0; i-- {
		errs = append(errs, members[i].Delete(ctx))
	}
	netErr := <-netDone
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("keep %s: %w", p.o.Dir, errors.Join(err, netErr))
	}
	if netErr != nil {
		return fmt.Errorf("keep %s: %w", p.o.Dir, netErr)
	}
	p.net = nil
	return builds.RemoveDir(p.o.Dir)
}

// end closes the pod to new members and returns its members, which the caller ends.
func (p *Pod) end() []*Container {
	p.mu.Lock()
	defer p.mu.Unlock()
	members := p.members
	p.members, p.closed = nil, true
	return members
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
