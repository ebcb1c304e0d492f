package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
)

// Snapshotter is the one crun-ci uses.
const Snapshotter = "overlayfs"

// ChainID returns the id of the committed snapshot an image unpacks to, unpacking it first
// when it is not yet unpacked.
func ChainID(ctx context.Context, img client.Image) (digest.Digest, error) {
	unpacked, err := img.IsUnpacked(ctx, Snapshotter)
	if err != nil {
		return "", fmt.Errorf("check image %s is unpacked: %w", img.Name(), err)
	}
	if !unpacked {
		if err := img.Unpack(ctx, Snapshotter); err != nil {
			return "", fmt.Errorf("unpack image %s: %w", img.Name(), err)
		}
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return "", fmt.Errorf("read layers of image %s: %w", img.Name(), err)
	}
	return identity.ChainID(diffIDs), nil
}

// Prepare makes a new active snapshot named key on top of parent.
func Prepare(ctx context.Context, c *client.Client, key string, parent digest.Digest, labels map[string]string) error {
	_, err := c.SnapshotService(Snapshotter).Prepare(ctx, key, parent.String(), snapshots.WithLabels(labels))
	if err != nil {
		return fmt.Errorf("prepare snapshot %s: %w", key, err)
	}
	return nil
}

// Remove removes the snapshot named key. A snapshot that is already gone is not an error.
func Remove(ctx context.Context, c *client.Client, key string) error {
	err := c.SnapshotService(Snapshotter).Remove(ctx, key)
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove snapshot %s: %w", key, err)
	}
	return nil
}

// View mounts a read-only view of the snapshot parent, named key, at target (made if
// needed) and calls fn with it. The view is unmounted and removed before View returns.
// Callers keep target inside their own directory, so that a view a killed process left
// mounted is found and unmounted with it, rather than lingering in /tmp.
func View(ctx context.Context, c *client.Client, key string, parent digest.Digest, labels map[string]string, target string, fn func(root string) error) (retErr error) {
	sn := c.SnapshotService(Snapshotter)
	mounts, err := sn.View(ctx, key, parent.String(), snapshots.WithLabels(labels))
	if err != nil {
		return fmt.Errorf("view snapshot %s: %w", parent, err)
	}
	defer func() {
		retErr = errors.Join(retErr, Remove(context.WithoutCancel(ctx), c, key))
	}()
	if err := os.MkdirAll(target, 0o700); err != nil {
		return err
	}
	for i := range mounts {
		mounts[i].Options = append(mounts[i].Options, "ro")
	}
	if err := mount.All(mounts, target); err != nil {
		return fmt.Errorf("mount view of %s: %w", parent, err)
	}
	defer func() {
		if err := mount.UnmountAll(target, 0); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("unmount view of %s: %w", parent, err))
			return
		}
		retErr = errors.Join(retErr, os.Remove(target))
	}()
	return fn(target)
}
