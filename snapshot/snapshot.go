package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Snapshotter is the one crun-ci uses.
const Snapshotter = "overlayfs"

// CleanupTimeout bounds every clean-up of what a build made in containerd (a view, a
// snapshot, a container, a pod), which runs even when the build was interrupted.
const CleanupTimeout = time.Minute

// CleanupContext is what a deferred clean-up runs with: not cancelled with ctx (an
// interrupted build still cleans up), and bounded by CleanupTimeout (a clean-up cannot
// hang the build).
func CleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), CleanupTimeout)
}

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
		cctx, cancel := CleanupContext(ctx)
		defer cancel()
		retErr = errors.Join(retErr, Remove(cctx, c, key))
	}()
	for i := range mounts {
		mounts[i].Options = append(mounts[i].Options, "ro")
	}
	return mountAt(mounts, target, "view of "+parent.String(), fn)
}

// Mount mounts the active snapshot key read-write at target (made if needed) and calls
// fn with it; it is unmounted and target removed before Mount returns.
func Mount(ctx context.Context, c *client.Client, key, target string, fn func(root string) error) error {
	ms, err := c.SnapshotService(Snapshotter).Mounts(ctx, key)
	if err != nil {
		return fmt.Errorf("mounts of snapshot %s: %w", key, err)
	}
	return mountAt(ms, target, "snapshot "+key, fn)
}

// mountAt mounts ms at target (made if needed) and calls fn with it; it is unmounted and
// target removed before mountAt returns. what names the mount in errors.
func mountAt(ms []mount.Mount, target, what string, fn func(root string) error) (retErr error) {
	if err := os.MkdirAll(target, 0o700); err != nil {
		return err
	}
	if err := mount.All(ms, target); err != nil {
		return fmt.Errorf("mount %s: %w", what, err)
	}
	defer func() {
		if err := mount.UnmountAll(target, 0); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("unmount %s: %w", what, err))
			return
		}
		retErr = errors.Join(retErr, os.Remove(target))
	}()
	return fn(target)
}

// Commit commits the active snapshot key as name. It reports false, and no error, when a
// snapshot of that name exists already (the same layer on the same parents): the active
// one is then left for its owner to remove.
func Commit(ctx context.Context, c *client.Client, name, key string) (bool, error) {
	if err := c.SnapshotService(Snapshotter).Commit(ctx, name, key); err != nil {
		if errdefs.IsAlreadyExists(err) {
			return false, nil
		}
		return false, fmt.Errorf("commit snapshot %s: %w", key, err)
	}
	return true, nil
}

// Diff writes the changes of the active snapshot key over its parent (the committed
// snapshot parent) as a gzip layer into the content store, and returns the layer's
// descriptor and uncompressed digest. The changes are read from the snapshot's overlayfs
// upper directory where that holds them all (see writeUpper), else as CompareDiff.
func Diff(ctx context.Context, c *client.Client, key string, parent digest.Digest, labels map[string]string) (ocispec.Descriptor, digest.Digest, error) {
	upper, err := c.SnapshotService(Snapshotter).Mounts(ctx, key)
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("mounts of snapshot %s: %w", key, err)
	}
	desc, diffID, err := diffUpper(ctx, c.ContentStore(), key, upper)
	if !errors.Is(err, errNotUpper) {
		return desc, diffID, err
	}
	return compareDiff(ctx, c, key, upper, parent, labels)
}

// CompareDiff is Diff through containerd's diff service alone, which walks the trees of
// the snapshot and of a view of its parent, keyed key+"-lower" and labelled, made for it
// and removed.
func CompareDiff(ctx context.Context, c *client.Client, key string, parent digest.Digest, labels map[string]string) (ocispec.Descriptor, digest.Digest, error) {
	upper, err := c.SnapshotService(Snapshotter).Mounts(ctx, key)
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("mounts of snapshot %s: %w", key, err)
	}
	return compareDiff(ctx, c, key, upper, parent, labels)
}

// compareDiff is CompareDiff of the snapshot key whose mounts are upper.
func compareDiff(ctx context.Context, c *client.Client, key string, upper []mount.Mount, parent digest.Digest, labels map[string]string) (_ ocispec.Descriptor, _ digest.Digest, retErr error) {
	sn := c.SnapshotService(Snapshotter)
	lowerKey := key + "-lower"
	lower, err := sn.View(ctx, lowerKey, parent.String(), snapshots.WithLabels(labels))
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("view snapshot %s: %w", parent, err)
	}
	defer func() {
		cctx, cancel := CleanupContext(ctx)
		defer cancel()
		retErr = errors.Join(retErr, Remove(cctx, c, lowerKey))
	}()
	desc, err := c.DiffService().Compare(ctx, lower, upper)
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("diff layer: %w", err)
	}
	info, err := c.ContentStore().Info(ctx, desc.Digest)
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("diff layer: %w", err)
	}
	diffID, err := digest.Parse(info.Labels["containerd.io/uncompressed"])
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("diff layer %s: no uncompressed digest: %w", desc.Digest, err)
	}
	return desc, diffID, nil
}

// LeaseResource is the committed snapshot name as a lease holds it.
func LeaseResource(name string) leases.Resource {
	return leases.Resource{ID: name, Type: "snapshots/" + Snapshotter}
}

// Walk calls fn with every snapshot that matches the filters (containerd's filter
// syntax, e.g. a label).
func Walk(ctx context.Context, c *client.Client, fn func(snapshots.Info) error, filters ...string) error {
	return c.SnapshotService(Snapshotter).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		return fn(info)
	}, filters...)
}
