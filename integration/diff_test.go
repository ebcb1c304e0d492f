package integration

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/crun-ci/crun-ci/snapshot"
)

// TestALayerReadFromTheUpperDirectoryAppliesAsContainerdsDiff makes a snapshot of
// busybox with every kind of change (new nested files, a hard link, a symlink, an
// appended file, a removed file, a changed mode, a directory removed and made again, a
// setuid file, a file made and removed), diffs it with snapshot.Diff (read from
// overlayfs' upper directory) and with containerd's walking differ, applies both layers
// onto busybox in fresh snapshots and compares each tree with the snapshot's own, entry
// by entry: kind, mode, owner, size, content, link target, link count and modification
// time in seconds, as layers keep it (but for directories from containerd's differ,
// which leaves out a directory whose only change is its time).
func TestALayerReadFromTheUpperDirectoryAppliesAsContainerdsDiff(t *testing.T) {
	requireRoot(t)
	c := ctrd.Client
	ctx, done, err := c.WithLease(namespaces.WithNamespace(context.Background(), namespace), leases.WithRandomID(), leases.WithExpiration(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer done(context.WithoutCancel(ctx))
	img, err := c.GetImage(ctx, "docker.io/library/busybox:latest")
	if err != nil {
		t.Fatal(err)
	}
	parent, err := snapshot.ChainID(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"crun-ci.test": t.Name()}
	dir := t.TempDir()
	prepare := func(key string) {
		t.Helper()
		if err := snapshot.Prepare(ctx, c, key, parent, labels); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := snapshot.Remove(context.Background(), c, key); err != nil {
				t.Error(err)
			}
		})
	}
	mounted := func(key string, fn func(root string) error) {
		t.Helper()
		if err := snapshot.Mount(ctx, c, key, filepath.Join(dir, key), fn); err != nil {
			t.Fatal(err)
		}
	}
	key := "crunci-difftest"
	prepare(key)
	mounted(key, func(root string) error {
		at := func(p string) string { return filepath.Join(root, p) }
		steps := []func() error{
			func() error { return os.MkdirAll(at("new/dir"), 0o750) },
			func() error { return os.WriteFile(at("new/dir/a.txt"), []byte("a\n"), 0o640) },
			func() error { return os.Link(at("new/dir/a.txt"), at("new/dir/b.txt")) },
			func() error { return os.Symlink("dir/a.txt", at("new/link")) },
			func() error { return os.WriteFile(at("new/suid"), []byte("#!/bin/sh\n"), 0o755) },
			func() error { return os.Chown(at("new/suid"), 65534, 65534) },
			func() error { return os.Chmod(at("new/suid"), fs.ModeSetuid|0o755) },
			func() error {
				f, err := os.OpenFile(at("etc/passwd"), os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					return err
				}
				_, err = f.WriteString("app:x:1000:1000::/app:/bin/sh\n")
				return errors.Join(err, f.Close())
			},
			func() error { return os.Remove(at("etc/group")) },
			func() error { return os.Chmod(at("root"), 0o750) },
			func() error { return os.RemoveAll(at("bin")) },
			func() error { return os.Mkdir(at("bin"), 0o755) },
			func() error { return os.WriteFile(at("bin/only"), []byte("only\n"), 0o755) },
			func() error { return os.WriteFile(at("tmp/gone"), nil, 0o644) },
			func() error { return os.Remove(at("tmp/gone")) },
		}
		for i, step := range steps {
			if err := step(); err != nil {
				return fmt.Errorf("change %d: %w", i, err)
			}
		}
		return nil
	})
	var want map[string]string
	mounted(key, func(root string) error {
		want = treeOf(t, root, false)
		return nil
	})

	fast, fastID, err := snapshot.Diff(ctx, c, key, parent, labels)
	if err != nil {
		t.Fatal(err)
	}
	walked, walkedID, err := snapshot.CompareDiff(ctx, c, key, parent, labels)
	if err != nil {
		t.Fatal(err)
	}
	// Only the upper directory records a directory made again as opaque; containerd's
	// walking differ lists each removed entry instead.
	names := layerNames(t, ctx, c.ContentStore(), fast)
	for _, want := range []string{"bin/.wh..wh..opq", "etc/.wh.group", "new/dir/a.txt", "new/link"} {
		if !slices.Contains(names, want) {
			t.Errorf("layer read from the upper directory lacks %s: %v", want, names)
		}
	}
	if slices.Contains(names, "tmp/gone") || slices.Contains(names, "tmp/.wh.gone") {
		t.Errorf("a file made and removed is in the layer: %v", names)
	}

	for _, l := range []struct {
		name   string
		desc   ocispec.Descriptor
		diffID digest.Digest
		// containerd's walking differ leaves out a directory whose only change is
		// its modification time (continuity's sameFile).
		dirTimes bool
	}{{"upper", fast, fastID, true}, {"walked", walked, walkedID, false}} {
		k := key + "-" + l.name
		prepare(k)
		ms, err := c.SnapshotService(snapshot.Snapshotter).Mounts(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		applied, err := c.DiffService().Apply(ctx, l.desc, ms)
		if err != nil {
			t.Fatalf("apply the %s layer: %v", l.name, err)
		}
		if applied.Digest != l.diffID {
			t.Errorf("the %s layer's uncompressed digest is %s, its label says %s", l.name, applied.Digest, l.diffID)
		}
		var got map[string]string
		mounted(k, func(root string) error {
			got = treeOf(t, root, !l.dirTimes)
			return nil
		})
		truth := want
		if !l.dirTimes {
			mounted(key, func(root string) error {
				truth = treeOf(t, root, true)
				return nil
			})
		}
		union := maps.Clone(got)
		maps.Copy(union, truth)
		for _, p := range slices.Sorted(maps.Keys(union)) {
			if got[p] != truth[p] {
				t.Errorf("%s after applying the %s layer: %q, in the snapshot %q", p, l.name, got[p], truth[p])
			}
		}
	}
	if len(want) < 8 {
		t.Errorf("only %d entries in the snapshot", len(want))
	}
	if _, ok := want["/etc/group"]; ok {
		t.Error("/etc/group was not removed")
	}
	if _, ok := want["/bin/sh"]; ok {
		t.Error("/bin/sh is there: the opaque /bin did not hide the lower one")
	}
}

// treeOf describes every entry below root, keyed by its path; with noDirTimes, the
// modification times of directories are left out.
func treeOf(t *testing.T, root string, noDirTimes bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		d := fmt.Sprintf("%v %d:%d nlink=%d mtime=%d", fi.Mode(), st.Uid, st.Gid, st.Nlink, fi.ModTime().Unix())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			d += " -> " + target
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			d += fmt.Sprintf(" size=%d sha256=%x", len(data), sha256.Sum256(data))
		case fi.IsDir():
			d = fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
			if !noDirTimes {
				d += fmt.Sprintf(" mtime=%d", fi.ModTime().Unix())
			}
		}
		out[p[len(root):]] = d
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// layerNames lists the entries of a gzip layer in the content store.
func layerNames(t *testing.T, ctx context.Context, cs content.Store, desc ocispec.Descriptor) []string {
	t.Helper()
	ra, err := cs.ReaderAt(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	gz, err := gzip.NewReader(content.NewReader(ra))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.Clean(h.Name))
	}
}
