package steps

import (
	"context"
	"time"

	"github.com/crun-ci/crun-ci/pod"
	"github.com/crun-ci/crun-ci/task"
)

// Runtime is what a build needs of containerd.
type Runtime interface {
	// Create makes a container on a fresh snapshot of its image (pods do).
	pod.Creator
	// Image finds an image in the local store, unpacked. Absent is errdefs.ErrNotFound.
	Image(ctx context.Context, ref string) (*task.Image, error)
	// View calls fn with the root of a read-only view of img's filesystem, mounted at
	// target.
	View(ctx context.Context, img *task.Image, key string, labels map[string]string, target string, fn func(root string) error) error
	// Lease returns ctx under a new lease and the function that removes it.
	Lease(ctx context.Context, labels map[string]string, expire time.Duration) (context.Context, func(context.Context) error, error)
}

var _ Runtime = containerd{}

// Containerd returns the Runtime of a containerd client.
func Containerd(c *task.Client) Runtime { return containerd{pod.Containerd(c), c} }

type containerd struct {
	pod.Creator
	*task.Client
}

// Create is the pod's, not task.Client's (which returns the concrete container).
func (c containerd) Create(ctx context.Context, o task.Options) (pod.Task, error) {
	return c.Creator.Create(ctx, o)
}
