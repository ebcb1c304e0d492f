package steps

import (
	"context"
	"io"
	"syscall"
	"time"

	"github.com/crun-ci/crun-ci/task"
)

// Runtime is what a build needs of containerd.
type Runtime interface {
	// Image finds an image in the local store, unpacked. Absent is errdefs.ErrNotFound.
	Image(ctx context.Context, ref string) (*task.Image, error)
	// View calls fn with the root of a read-only view of img's filesystem, mounted at
	// target.
	View(ctx context.Context, img *task.Image, key string, labels map[string]string, target string, fn func(root string) error) error
	// Create makes a container on a fresh snapshot of its image.
	Create(ctx context.Context, o task.Options) (Container, error)
	// Lease returns ctx under a new lease and the function that removes it.
	Lease(ctx context.Context, labels map[string]string, expire time.Duration) (context.Context, func(context.Context) error, error)
}

// Container is one created container; see task.Container.
type Container interface {
	ID() string
	// Start creates the task, calls before with its pid (its mounts are made, its
	// process has not started; an error stops here), then starts it.
	Start(ctx context.Context, stdout, stderr io.Writer, before func(pid uint32) error) error
	Wait(ctx context.Context) (uint32, error)
	// OOMKilled reports whether the OOM killer killed a process of the exited task.
	OOMKilled(ctx context.Context) (bool, error)
	Kill(ctx context.Context, sig syscall.Signal) error
	// Resize sets the size of the task's terminal.
	Resize(ctx context.Context, width, height uint32) error
	// Exec runs args in the running task and returns its exit code and the end of its
	// output.
	Exec(ctx context.Context, id string, args []string) (uint32, []byte, error)
	Delete(ctx context.Context) error
}

var (
	_ Runtime   = containerd{}
	_ Container = (*task.Container)(nil)
)

// Containerd returns the Runtime of a containerd client.
func Containerd(c *task.Client) Runtime { return containerd{c} }

type containerd struct{ *task.Client }

func (c containerd) Create(ctx context.Context, o task.Options) (Container, error) {
	ctr, err := c.Client.Create(ctx, o)
	if err != nil {
		return nil, err
	}
	return ctr, nil
}
