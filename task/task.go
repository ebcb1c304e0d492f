package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	cgroup1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crun-ci/crun-ci/snapshot"
)

// Runtime is the name of the containerd runtime (shim) crun-ci uses.
const Runtime = "io.containerd.runc.v2"

// Client runs containers through one containerd client. Its namespace is the client's
// default namespace.
type Client struct {
	c *client.Client
}

// New returns a Client over c.
func New(c *client.Client) *Client { return &Client{c: c} }

// Image is an image in containerd's store, unpacked and ready for snapshots.
type Image struct {
	// Name is the normalised reference (docker.io/library/busybox:latest).
	Name    string
	Config  ocispec.ImageConfig
	ChainID digest.Digest
	// Healthcheck is the image's HEALTHCHECK, nil when it has none. Docker keeps it in
	// the image config, where the OCI image spec has no field for it.
	Healthcheck *Healthcheck
}

// Healthcheck is a health check as Docker's image config holds it. Test is ["CMD",
// args…], ["CMD-SHELL", command] or ["NONE"]; zero values mean the defaults.
type Healthcheck struct {
	Test        []string      `json:"Test,omitempty"`
	Interval    time.Duration `json:"Interval,omitempty"`
	Timeout     time.Duration `json:"Timeout,omitempty"`
	StartPeriod time.Duration `json:"StartPeriod,omitempty"`
	Retries     int           `json:"Retries,omitempty"`
}

// healthcheck reads the Healthcheck field of an image's config blob.
func healthcheck(ctx context.Context, img client.Image) (*Healthcheck, error) {
	desc, err := img.Config(ctx)
	if err != nil {
		return nil, err
	}
	blob, err := content.ReadBlob(ctx, img.ContentStore(), desc)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Config struct {
			Healthcheck *Healthcheck
		}
	}
	if err := json.Unmarshal(blob, &cfg); err != nil {
		return nil, err
	}
	return cfg.Config.Healthcheck, nil
}

// Normalize returns the reference as Docker names it: "busybox" is
// "docker.io/library/busybox:latest".
func Normalize(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", ref, err)
	}
	return named.String(), nil
}

// HasImage says whether ref is in containerd's image store, changing nothing (Image
// unpacks it): nil when it is, an error satisfying errdefs.IsNotFound when it is not.
func (c *Client) HasImage(ctx context.Context, ref string) error {
	name, err := Normalize(ref)
	if err != nil {
		return err
	}
	if _, err := c.c.ImageService().Get(ctx, name); err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("image %s is not in containerd's image store: %w", name, errdefs.ErrNotFound)
		}
		return fmt.Errorf("look up image %s: %w", name, err)
	}
	return nil
}

// Image looks ref up in containerd's image store and unpacks it if needed. An image that
// is not there is an error satisfying errdefs.IsNotFound.
func (c *Client) Image(ctx context.Context, ref string) (*Image, error) {
	name, err := Normalize(ref)
	if err != nil {
		return nil, err
	}
	img, err := c.c.GetImage(ctx, name)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("image %s is not in containerd's image store (add it with crun-ci import): %w", name, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("look up image %s: %w", name, err)
	}
	spec, err := img.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("read config of image %s: %w", name, err)
	}
	chain, err := snapshot.ChainID(ctx, img)
	if err != nil {
		return nil, err
	}
	hc, err := healthcheck(ctx, img)
	if err != nil {
		return nil, fmt.Errorf("read health check of image %s: %w", name, err)
	}
	return &Image{Name: name, Config: spec.Config, ChainID: chain, Healthcheck: hc}, nil
}

// View mounts a read-only view of img's filesystem, named key, at target and calls fn
// with it.
func (c *Client) View(ctx context.Context, img *Image, key string, labels map[string]string, target string, fn func(root string) error) error {
	return snapshot.View(ctx, c.c, key, img.ChainID, labels, target, fn)
}

// Import loads an image archive (OCI image layout or `docker save` tar) and unpacks the
// images it holds. It returns their names.
func (c *Client) Import(ctx context.Context, r io.Reader) ([]string, error) {
	imgs, err := c.c.Import(ctx, r)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, i := range imgs {
		img := client.NewImage(c.c, i)
		if _, err := snapshot.ChainID(ctx, img); err != nil {
			return names, err
		}
		names = append(names, i.Name)
	}
	return names, nil
}

// Options describe a container to create.
type Options struct {
	// ID is the container id and its snapshot's key.
	ID     string
	Image  *Image
	Spec   *specs.Spec
	Labels map[string]string
	// FIFODir is where the FIFOs of the task's output are made; "" means containerd's
	// default. Keeping them under the build's directory means a killed crun-ci leaves
	// none elsewhere.
	FIFODir string
	// Stdin, when not nil, is copied to the task's standard input; at its end the task's
	// stdin is closed. Terminal gives the task a terminal (the spec must ask for one
	// too); its output then comes on stdout only.
	Stdin    io.Reader
	Terminal bool
	// Existing says the active snapshot named ID is there already (an image builder
	// prepared it): Create neither prepares nor removes it, and Delete keeps it.
	Existing bool
	// Snapshot, with Existing, is the key of that snapshot when it is not ID: the
	// snapshot of a kept container, which a debug container works on.
	Snapshot string
	// RootPath, when set, is the container's root filesystem: a directory its caller
	// (an image builder) mounted and unmounts. The container then has no snapshot, and
	// deleting its task (its shim, runc's state) does not touch that filesystem, so that
	// can go on while the caller uses the filesystem.
	RootPath string
}

// Container is a created container, and its task once started.
type Container struct {
	client   *Client
	fifoDir  string
	stdin    io.Reader
	terminal bool
	existing bool
	ctr      client.Container
	task     client.Task
	exit     <-chan client.ExitStatus
	// io is the task's, kept apart from task, which Delete clears while a Wait may still
	// drain the output.
	io cio.IO
}

// Create makes a fresh snapshot of the image and the container on it (or on the Existing
// snapshot, or the RootPath). On error nothing is left behind.
func (c *Client) Create(ctx context.Context, o Options) (_ *Container, retErr error) {
	// Delete removes only a snapshot Create made.
	existing := o.Existing || o.RootPath != ""
	spec := o.Spec
	opts := []client.NewContainerOpts{client.WithRuntime(Runtime, nil), client.WithContainerLabels(o.Labels)}
	switch {
	case o.RootPath != "":
		rooted := *o.Spec
		rooted.Root = &specs.Root{Path: o.RootPath, Readonly: o.Spec.Root != nil && o.Spec.Root.Readonly}
		spec = &rooted
	case o.Existing && o.Snapshot != "":
		opts = append(opts, client.WithSnapshotter(snapshot.Snapshotter), client.WithSnapshot(o.Snapshot))
	default:
		opts = append(opts, client.WithSnapshotter(snapshot.Snapshotter), client.WithSnapshot(o.ID))
	}
	opts = append(opts, client.WithSpec(spec))
	if !existing {
		if err := snapshot.Prepare(ctx, c.c, o.ID, o.Image.ChainID, o.Labels); err != nil {
			return nil, err
		}
		defer func() {
			if retErr != nil {
				cctx, cancel := snapshot.CleanupContext(ctx)
				defer cancel()
				retErr = errors.Join(retErr, snapshot.Remove(cctx, c.c, o.ID))
			}
		}()
	}
	ctr, err := c.c.NewContainer(ctx, o.ID, opts...)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", o.ID, err)
	}
	return &Container{client: c, ctr: ctr, fifoDir: o.FIFODir, stdin: o.Stdin, terminal: o.Terminal, existing: existing}, nil
}

// ID returns the container id.
func (c *Container) ID() string { return c.ctr.ID() }

// CreateTask creates the task, with its stdout and stderr copied to the writers: its
// mounts are made, its process waits to be started (Start). Start creates it when
// CreateTask was not called.
func (c *Container) CreateTask(ctx context.Context, stdout, stderr io.Writer) (retErr error) {
	if c.task != nil {
		return fmt.Errorf("create task %s: created already", c.ID())
	}
	var stdin io.Reader
	created := make(chan struct{})
	var t client.Task
	defer func() {
		if t == nil {
			close(created) // the reader gives up waiting for a task that never came
		}
	}()
	if c.stdin != nil {
		stdin = &closingReader{r: c.stdin, created: created, close: func() {
			if c.terminal || t == nil {
				return // a terminal reads its end of input itself (^D)
			}
			t.CloseIO(context.WithoutCancel(ctx), client.WithStdinCloser)
		}}
	}
	opts := []cio.Opt{cio.WithStreams(stdin, stdout, stderr)}
	if c.terminal {
		opts = append(opts, cio.WithTerminal)
	}
	if c.fifoDir != "" {
		if err := os.MkdirAll(c.fifoDir, 0o700); err != nil {
			return fmt.Errorf("create task %s: %w", c.ID(), err)
		}
		opts = append(opts, cio.WithFIFODir(c.fifoDir))
	}
	task, err := c.ctr.NewTask(ctx, cio.NewCreator(opts...))
	if err != nil {
		return fmt.Errorf("create task %s: %w", c.ID(), err)
	}
	t, c.task, c.io = task, task, task.IO()
	close(created)
	// Wait before Start, so that the exit of a short-lived process is not missed.
	exit, err := t.Wait(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("wait for task %s: %w", c.ID(), err)
	}
	c.exit = exit
	return nil
}

// Start creates the task (unless CreateTask did: then stdout and stderr are those it
// was given), calls before (when not nil) with the pid of the created task, whose mounts
// are made but whose process has not started, and starts it unless before failed.
func (c *Container) Start(ctx context.Context, stdout, stderr io.Writer, before func(pid uint32) error) (retErr error) {
	if c.task == nil {
		if err := c.CreateTask(ctx, stdout, stderr); err != nil {
			return err
		}
	}
	if before != nil {
		if err := before(c.task.Pid()); err != nil {
			return err
		}
	}
	if err := c.task.Start(ctx); err != nil {
		return fmt.Errorf("start task %s: %w", c.ID(), err)
	}
	return nil
}

// Wait waits for the task to exit and returns its exit code. When ctx ends first, it
// returns ctx's error and the task runs on.
func (c *Container) Wait(ctx context.Context) (uint32, error) {
	if c.exit == nil {
		return 0, fmt.Errorf("wait for container %s: no task", c.ID())
	}
	select {
	case st := <-c.exit:
		code, _, err := st.Result()
		if err != nil {
			// The error is containerd's gRPC status; ToNative makes it an errdefs
			// error, so that a lost connection reads as errdefs.ErrUnavailable.
			return 0, fmt.Errorf("wait for task %s: %w", c.ID(), errgrpc.ToNative(err))
		}
		// The shim closes the output pipes once the process and every holder of its
		// stdout and stderr are gone; wait for the copy to drain them, so that the last
		// lines are never lost to Delete, which closes the pipes.
		c.io.Wait()
		return code, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// OOMKilled reports whether the kernel's OOM killer killed a process of the task's
// cgroup, which is when its memory limit was reached. Ask after the task has exited and
// before Delete, while containerd still has its cgroup.
func (c *Container) OOMKilled(ctx context.Context) (bool, error) {
	if c.task == nil {
		return false, nil
	}
	m, err := c.task.Metrics(ctx)
	if err != nil {
		return false, fmt.Errorf("metrics of task %s: %w", c.ID(), err)
	}
	v, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return false, fmt.Errorf("metrics of task %s: %w", c.ID(), err)
	}
	switch st := v.(type) {
	case *cgroup1.Metrics:
		return st.GetMemoryOomControl().GetOomKill() > 0, nil
	case *cgroup2.Metrics:
		return st.GetMemoryEvents().GetOomKill() > 0, nil
	}
	return false, fmt.Errorf("metrics of task %s: unknown type %T", c.ID(), v)
}

// Kill sends sig to the task's process. A task that is gone is not an error.
func (c *Container) Kill(ctx context.Context, sig syscall.Signal) error {
	if c.task == nil {
		return nil
	}
	if err := c.task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("kill task %s: %w", c.ID(), err)
	}
	return nil
}

// DeleteTask removes the task (killing it if it still runs) and keeps the container and
// its snapshot: its shim goes, its filesystem stays.
func (c *Container) DeleteTask(ctx context.Context) error {
	if c.task == nil {
		return nil
	}
	if _, err := c.task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete task %s: %w", c.ID(), err)
	}
	c.task = nil
	return nil
}

// Delete removes the task (killing it if it still runs), the container and its snapshot
// (unless it was created on an Existing one). What is already gone is not an error, so
// Delete may be called again after a failure.
func (c *Container) Delete(ctx context.Context) error {
	var errs []error
	if err := c.DeleteTask(ctx); err != nil {
		errs = append(errs, err)
	}
	var opts []client.DeleteOpts
	if !c.existing {
		opts = append(opts, client.WithSnapshotCleanup)
	}
	if err := c.ctr.Delete(ctx, opts...); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete container %s: %w", c.ID(), err))
	}
	if !c.existing {
		// WithSnapshotCleanup skips the snapshot when the container record was already
		// gone.
		errs = append(errs, snapshot.Remove(ctx, c.client.c, c.ID()))
	}
	return errors.Join(errs...)
}

// Containerd returns the containerd client, for packages (the image builder) that work
// with its content, snapshots and diffs directly.
func (c *Client) Containerd() *client.Client { return c.c }

// Lease returns ctx carrying a new lease for a build, which keeps the snapshots and
// content the build makes safe from containerd's garbage collector while the build runs,
// and a function that deletes it. The lease expires after expire in any case, so that a
// killed build cannot pin its objects for ever.
func (c *Client) Lease(ctx context.Context, labels map[string]string, expire time.Duration) (context.Context, func(context.Context) error, error) {
	ls := c.c.LeasesService()
	l, err := ls.Create(ctx, leases.WithRandomID(), leases.WithExpiration(expire), leases.WithLabels(labels))
	if err != nil {
		return nil, nil, fmt.Errorf("create lease: %w", err)
	}
	release := func(ctx context.Context) error {
		// Synchronously: what only the lease held (the layers of an image build that
		// no image kept) is collected before the build ends, not at some later
		// mutation of containerd's store.
		if err := ls.Delete(ctx, l, leases.SynchronousDelete); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete lease %s: %w", l.ID, err)
		}
		return nil
	}
	return leases.WithLease(ctx, l.ID), release, nil
}

// Exec runs args in the running task with the task's user, environment and working
// directory, and returns the exit code and the last 4 KiB of its output (stdout and
// stderr). When ctx ends first, the process is killed and ctx's error returned.
func (c *Container) Exec(ctx context.Context, id string, args []string) (uint32, []byte, error) {
	if c.task == nil {
		return 0, nil, fmt.Errorf("exec in container %s: no task", c.ID())
	}
	spec, err := c.ctr.Spec(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("exec in container %s: %w", c.ID(), err)
	}
	proc := *spec.Process
	proc.Args, proc.Terminal = args, false
	out := &tail{max: 4096}
	opts := []cio.Opt{cio.WithStreams(nil, out, out)}
	if c.fifoDir != "" {
		opts = append(opts, cio.WithFIFODir(c.fifoDir))
	}
	p, err := c.task.Exec(ctx, id, &proc, cio.NewCreator(opts...))
	if err != nil {
		return 0, nil, fmt.Errorf("exec in container %s: %w", c.ID(), err)
	}
	defer func() {
		cctx, cancel := snapshot.CleanupContext(ctx)
		defer cancel()
		p.Delete(cctx, client.WithProcessKill)
	}()
	exit, err := p.Wait(context.WithoutCancel(ctx))
	if err != nil {
		return 0, nil, fmt.Errorf("exec in container %s: %w", c.ID(), err)
	}
	if err := p.Start(ctx); err != nil {
		return 0, nil, fmt.Errorf("exec in container %s: %w", c.ID(), err)
	}
	select {
	case st := <-exit:
		code, _, err := st.Result()
		p.IO().Wait()
		return code, out.bytes(), errgrpc.ToNative(err)
	case <-ctx.Done():
		p.Kill(context.WithoutCancel(ctx), syscall.SIGKILL)
		<-exit
		return 0, out.bytes(), ctx.Err()
	}
}

// tail keeps the last max bytes written to it; writes may come from two goroutines.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.b...)
}

// closingReader calls close, once the task exists, when r is at its end: the task's stdin
// is then closed, so that a command reading it to the end finishes.
type closingReader struct {
	r       io.Reader
	created chan struct{}
	close   func()
	once    sync.Once
}

func (c *closingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil {
		c.once.Do(func() {
			<-c.created
			c.close()
		})
	}
	return n, err
}

// Resize sets the size of the task's terminal.
func (c *Container) Resize(ctx context.Context, width, height uint32) error {
	if c.task == nil {
		return nil
	}
	return c.task.Resize(ctx, width, height)
}
