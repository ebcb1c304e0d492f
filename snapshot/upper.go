package snapshot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/continuity/fs"
	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// errNotUpper says that a snapshot's changes cannot be read from its upper directory
// alone; containerd's walking differ, which compares the whole trees, is used instead.
var errNotUpper = errors.New("changes are not all in the upper directory")

// upperDir returns the directory that holds all of an active snapshot's changes, from
// its mounts: the upperdir of an overlay mount (what overlayfs wrote: new and changed
// files, whiteouts for removed ones, opaque directories for replaced ones), or the
// directory of a bind mount when the snapshot has no parent. Options crun-ci does not
// know could change what the upper directory means, so they mean errNotUpper.
func upperDir(ms []mount.Mount) (string, error) {
	if len(ms) != 1 {
		return "", errNotUpper
	}
	m := ms[0]
	switch m.Type {
	case "bind":
		return m.Source, nil
	case "overlay":
		upper := ""
		for _, o := range m.Options {
			switch {
			case strings.HasPrefix(o, "upperdir="):
				upper = strings.TrimPrefix(o, "upperdir=")
			case strings.HasPrefix(o, "lowerdir="), strings.HasPrefix(o, "workdir="), o == "index=off", o == "rw":
			default:
				return "", errNotUpper
			}
		}
		if upper == "" {
			return "", errNotUpper
		}
		return upper, nil
	}
	return "", errNotUpper
}

// writeUpper writes the changes recorded in the upper directory upper as a layer tar
// stream to w, as Docker's overlay2 driver does, without looking at the lower layers:
// every entry is added (a parent directory overlayfs copied up is in the layer as it
// is), a whiteout (a 0/0 character device) becomes a .wh. file, and an opaque directory
// gets a .wh..wh..opq entry. A directory overlayfs renamed in place (redirect_dir) or
// a file whose data is still below (metacopy) is errNotUpper: their contents are not in
// the upper directory.
func writeUpper(ctx context.Context, w io.Writer, upper string) error {
	cw := archive.NewChangeWriter(w, upper)
	err := filepath.Walk(upper, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(upper, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		name := "/" + rel
		if fi.Mode()&os.ModeCharDevice != 0 {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Rdev == 0 {
				return cw.HandleChange(fs.ChangeKindDelete, name, fi, nil)
			}
		}
		for _, attr := range []string{"trusted.overlay.redirect", "trusted.overlay.metacopy"} {
			if _, err := unix.Lgetxattr(p, attr, nil); err == nil {
				return fmt.Errorf("%s has %s: %w", name, attr, errNotUpper)
			}
		}
		if err := cw.HandleChange(fs.ChangeKindAdd, name, fi, nil); err != nil {
			return err
		}
		if fi.IsDir() {
			var opaque [1]byte
			if n, err := unix.Lgetxattr(p, "trusted.overlay.opaque", opaque[:]); err == nil && n == 1 && opaque[0] == 'y' {
				// The archive writer turns a removed ".wh..opq" into ".wh..wh..opq".
				return cw.HandleChange(fs.ChangeKindDelete, name+"/.wh..opq", fi, nil)
			}
		}
		return nil
	})
	return errors.Join(err, cw.Close())
}

// diffUpper writes the changes of the active snapshot with mounts ms, read from its
// upper directory (see writeUpper), as a gzip layer into the content store, labelled
// with its uncompressed digest as containerd's differ labels it. It is errNotUpper when
// the mounts do not allow that, before anything is written.
func diffUpper(ctx context.Context, cs content.Store, key string, ms []mount.Mount) (ocispec.Descriptor, digest.Digest, error) {
	upper, err := upperDir(ms)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	if _, err := os.Stat(upper); err != nil {
		// containerd's directories are not visible here (another mount namespace).
		return ocispec.Descriptor{}, "", fmt.Errorf("%w: %v", errNotUpper, err)
	}
	ref := "crun-ci-diff-" + key
	cw, err := content.OpenWriter(ctx, cs, content.WithRef(ref))
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("diff layer: %w", err)
	}
	defer cw.Close()
	if err := cw.Truncate(0); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("diff layer: %w", err)
	}
	compressed, uncompressed := digest.SHA256.Digester(), digest.SHA256.Digester()
	var size int64
	buf := bufio.NewWriterSize(io.MultiWriter(cw, compressed.Hash(), countWriter{&size}), 1<<20)
	gz := gzip.NewWriter(buf)
	err = writeUpper(ctx, io.MultiWriter(gz, uncompressed.Hash()), upper)
	if err == nil {
		err = gz.Close()
	}
	if err == nil {
		err = buf.Flush()
	}
	if err != nil {
		cctx, cancel := CleanupContext(ctx)
		defer cancel()
		cs.Abort(cctx, ref)
		if errors.Is(err, errNotUpper) {
			return ocispec.Descriptor{}, "", err
		}
		return ocispec.Descriptor{}, "", fmt.Errorf("diff layer: %w", err)
	}
	diffID := uncompressed.Digest()
	labels := map[string]string{"containerd.io/uncompressed": diffID.String()}
	if err := cw.Commit(ctx, size, compressed.Digest(), content.WithLabels(labels)); err != nil {
		if !errdefs.IsAlreadyExists(err) {
			return ocispec.Descriptor{}, "", fmt.Errorf("diff layer: %w", err)
		}
		// The same layer is there already (built before, or pulled): it gets the label.
		if _, err := cs.Update(ctx, content.Info{Digest: compressed.Digest(), Labels: labels}, "labels.containerd.io/uncompressed"); err != nil {
			return ocispec.Descriptor{}, "", fmt.Errorf("diff layer: %w", err)
		}
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: compressed.Digest(), Size: size}, diffID, nil
}

type countWriter struct{ n *int64 }

func (c countWriter) Write(p []byte) (int, error) {
	*c.n += int64(len(p))
	return len(p), nil
}
