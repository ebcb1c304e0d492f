package dockerfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/continuity/fs"
	"golang.org/x/sys/unix"

	"github.com/crun-ci/crun-ci/hostfs"
)

// CopyOptions say how Copy writes.
type CopyOptions struct {
	// UID and GID own everything copied (and the directories Copy creates for dest); -1
	// keeps the source's owner (COPY --from of another stage; for an extracted archive,
	// the owner recorded in it). COPY from the context passes 0, 0 unless --chown.
	UID, GID int
	// Ignored, when not nil, skips source paths (below from, slash-separated)
	// it returns true for: the context's .dockerignore (Context.Ignored). An ignored
	// directory is still looked into for paths that are not ignored, unless SkipDir
	// says there can be none.
	Ignored func(rel string) bool
	// SkipDir, when not nil, reports whether an ignored directory and everything below
	// it are ignored, so Copy need not look inside (Context.SkipDir). It only makes
	// copying faster.
	SkipDir func(rel string) bool
	// Extract (ADD) unpacks a source that is a local tar archive (plain, gzip, bzip2, xz
	// or zstd, as Docker does; told by content, not by name; xz needs the xz command)
	// into the destination directory instead of copying it. With ArchiveOwners, what is
	// unpacked keeps the owners the archive records (ADD without --chown, as Docker
	// does) whatever UID and GID say.
	Extract       bool
	ArchiveOwners bool
}

// errMultipleSources is the error, worded as Docker's, of several sources copied to one
// file.
var errMultipleSources = errors.New("when using COPY with more than one source file, the destination must be a directory and end with a /")

// Copy copies srcs (paths below from, already resolved: from Sources) to dest inside the
// container root filesystem mounted at rootfs, with Docker's COPY semantics:
//
//   - dest is absolute or relative to workdir (the image's WORKDIR, "/" when empty). It
//     is resolved inside rootfs as the container sees it: symbolic links in the image
//     never lead out of rootfs. Sources are resolved inside from the same way (from
//     resolves InRoot) and read through it: only regular files are ever opened.
//   - A directory source copies its contents into dest. A file source copies to dest,
//     or into dest when dest ends with "/" (or is "." or ends with "/.") or is an
//     existing directory. Several sources need such a directory destination.
//   - Missing parents of dest are created with mode 0755, owned by UID and GID when
//     they are not -1, else by root. A directory dest that Copy creates for a directory
//     source takes that directory's mode and time; an existing one is left as it is.
//   - Modes (with setuid, setgid and sticky bits) and modification times are kept.
//     Symbolic links are copied as links (a source named directly is followed). Hard
//     links become separate files. FIFOs and devices are recreated with mknod, or
//     skipped if that is not permitted; sockets are skipped.
//   - An existing file, link or special file at a destination path is replaced; an
//     existing directory is merged into (a link to a directory in the image counts as
//     that directory). A directory is never replaced by something else: that is an
//     error.
//
// Once ctx is done, Copy stops before the next source and while it unpacks an archive,
// with ctx's error.
func Copy(ctx context.Context, from *hostfs.Dir, srcs []string, rootfs, dest, workdir string, o CopyOptions) error {
	if len(srcs) == 0 {
		return fmt.Errorf("copy to %q: no source files", dest)
	}
	c := &copier{from: from, rootfs: rootfs, o: o}
	destC := containerPath(dest, workdir)
	destDir, err := c.isDir(destC)
	if err != nil {
		return fmt.Errorf("copy to %q: %w", dest, err)
	}
	destDir = destDir || wantsDir(dest)
	if len(srcs) > 1 && !destDir {
		return errMultipleSources
	}
	for _, src := range srcs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.copySource(ctx, src, destC, destDir); err != nil {
			return fmt.Errorf("copy %q to %q: %w", src, dest, err)
		}
	}
	if err := c.finish(); err != nil {
		return fmt.Errorf("copy to %q: %w", dest, err)
	}
	return nil
}

// containerPath returns dest as a clean absolute path in the container: relative to
// workdir unless absolute.
func containerPath(dest, workdir string) string {
	if path.IsAbs(dest) {
		return path.Clean(dest)
	}
	return path.Join("/", workdir, dest)
}

// wantsDir reports whether the destination argument names a directory by its form.
func wantsDir(dest string) bool {
	return dest == "" || dest == "." || dest == ".." ||
		strings.HasSuffix(dest, "/") || strings.HasSuffix(dest, "/.") || strings.HasSuffix(dest, "/..")
}

// copier writes into one container root filesystem what it reads from one Dir.
type copier struct {
	from   *hostfs.Dir
	rootfs string
	o      CopyOptions
	// dirs are the directories written, whose times are set last: writing into a
	// directory changes its modification time.
	dirs []dirTimes
	// unpacking is set while an archive is unpacked.
	unpacking bool
}

// dirTimes is a directory whose modification time is set by finish.
type dirTimes struct {
	path  string
	mtime time.Time
}

// copySource copies one source to the container path destC; destDir says whether destC
// is a directory to copy a file source into.
func (c *copier) copySource(ctx context.Context, src, destC string, destDir bool) error {
	base, err := c.from.Resolve(src)
	if err != nil {
		return err
	}
	fi, err := c.from.Lstat(base)
	if err != nil {
		return err
	}
	entries, err := walk(c.from, base, fi, filter{ignored: c.o.Ignored, skipDir: c.o.SkipDir})
	if err != nil || len(entries) == 0 {
		return err
	}
	if c.o.Extract && fi.Mode().IsRegular() {
		ok, err := c.extract(ctx, base, destC)
		if ok || err != nil {
			return err
		}
	}
	if fi.IsDir() {
		return c.copyDir(entries, destC)
	}
	target := destC
	if destDir {
		target = path.Join(destC, path.Base(path.Join("/", src)))
	}
	if err := c.mkdirAll(path.Dir(target)); err != nil {
		return err
	}
	dst, err := c.entryPath(target)
	if err != nil {
		return err
	}
	return c.write(entries[0], dst)
}

// copyDir copies the contents of a directory source, listed by walk, into the
// container directory destC, which is created with the source directory's metadata if
// missing.
func (c *copier) copyDir(entries []entry, destC string) error {
	if err := c.mkdirAll(path.Dir(destC)); err != nil {
		return err
	}
	dst, err := c.entryPath(destC)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
		if err := c.write(entries[0], dst); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	for _, e := range entries[1:] {
		dst, err := c.entryPath(path.Join(destC, e.rel))
		if err != nil {
			return err
		}
		if err := c.write(e, dst); err != nil {
			return fmt.Errorf("%s: %w", e.rel, err)
		}
	}
	return nil
}

// isDir reports whether the container path p is an existing directory, or a link to
// one.
func (c *copier) isDir(p string) (bool, error) {
	real, err := fs.RootPath(c.rootfs, p)
	if err != nil {
		if notFound(err) {
			return false, nil
		}
		return false, err
	}
	fi, err := os.Stat(real)
	if err != nil {
		if notFound(err) {
			return false, nil
		}
		return false, err
	}
	return fi.IsDir(), nil
}

// entryPath returns the host path to write the container path p at: its parent
// resolved inside rootfs, and its last element as is, unless that is a symbolic link to
// a directory, which is followed.
func (c *copier) entryPath(p string) (string, error) {
	if p == "/" {
		return c.rootfs, nil
	}
	parent, err := fs.RootPath(c.rootfs, path.Dir(p))
	if err != nil {
		return "", err
	}
	dst := filepath.Join(parent, path.Base(p))
	if fi, err := os.Lstat(dst); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if dir, err := c.isDir(p); err == nil && dir {
			return fs.RootPath(c.rootfs, p)
		}
	}
	return dst, nil
}

// mkdirAll creates the missing directories of the container path p, with mode 0755,
// owned by the copy's owner.
func (c *copier) mkdirAll(p string) error {
	cur := "/"
	for _, elem := range strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/") {
		if elem == "" {
			continue
		}
		cur = path.Join(cur, elem)
		real, err := fs.RootPath(c.rootfs, cur)
		if err != nil {
			return err
		}
		fi, err := os.Lstat(real)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("create directory %q: %w", cur, syscall.ENOTDIR)
			}
			continue
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.Mkdir(real, 0o755); err != nil {
			return err
		}
		if err := c.setOwner(real, 0, 0); err != nil {
			return err
		}
		if err := os.Chmod(real, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// meta is the metadata a written path gets.
type meta struct {
	mode     os.FileMode
	uid, gid int
	mtime    time.Time
}

// sourceMeta returns the metadata of a source as Copy writes it.
func sourceMeta(fi os.FileInfo) meta {
	m := meta{mode: fi.Mode(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		m.uid, m.gid = int(st.Uid), int(st.Gid)
	}
	return m
}

// write copies the source entry e to the host path dst.
func (c *copier) write(e entry, dst string) error {
	m := sourceMeta(e.fi)
	switch mode := e.fi.Mode(); {
	case mode.IsDir():
		return c.makeDir(dst, m)
	case mode.IsRegular():
		f, err := c.from.Open(e.path)
		if err != nil {
			return err
		}
		defer f.Close()
		return c.makeFile(dst, f, m)
	case mode&os.ModeSymlink != 0:
		target, err := c.from.Readlink(e.path)
		if err != nil {
			return err
		}
		return c.makeSymlink(dst, target, m)
	case mode&(os.ModeNamedPipe|os.ModeDevice) != 0:
		var rdev uint64
		if st, ok := e.fi.Sys().(*syscall.Stat_t); ok {
			rdev = st.Rdev
		}
		return c.makeSpecial(dst, m, rdev)
	default: // sockets
		return nil
	}
}

// makeDir creates the directory dst, or merges into it if it exists, and gives it m.
func (c *copier) makeDir(dst string, m meta) error {
	fi, err := os.Lstat(dst)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
	case err != nil:
		return err
	case !fi.IsDir():
		if err := os.Remove(dst); err != nil {
			return err
		}
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
	}
	if err := c.setOwner(dst, m.uid, m.gid); err != nil {
		return err
	}
	if err := os.Chmod(dst, m.mode&modeBits); err != nil {
		return err
	}
	c.dirs = append(c.dirs, dirTimes{path: dst, mtime: m.mtime})
	return nil
}

// makeFile writes the content r to a new file at dst, replacing what is there, and
// gives it m.
func (c *copier) makeFile(dst string, r io.Reader, m meta) error {
	if err := replace(dst); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return c.setMeta(dst, m)
}

// makeSymlink creates a symbolic link to target at dst, replacing what is there.
func (c *copier) makeSymlink(dst, target string, m meta) error {
	if err := replace(dst); err != nil {
		return err
	}
	if err := os.Symlink(target, dst); err != nil {
		return err
	}
	if err := c.setOwner(dst, m.uid, m.gid); err != nil {
		return err
	}
	return setTime(dst, m.mtime)
}

// makeSpecial creates a FIFO or device node at dst, replacing what is there. Where
// mknod is not permitted (no root, or a user namespace), it does nothing.
func (c *copier) makeSpecial(dst string, m meta, rdev uint64) error {
	if err := replace(dst); err != nil {
		return err
	}
	mode := uint32(m.mode.Perm())
	switch {
	case m.mode&os.ModeNamedPipe != 0:
		mode |= unix.S_IFIFO
	case m.mode&os.ModeCharDevice != 0:
		mode |= unix.S_IFCHR
	default:
		mode |= unix.S_IFBLK
	}
	if err := unix.Mknod(dst, mode, int(rdev)); err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil
		}
		return &os.PathError{Op: "mknod", Path: dst, Err: err}
	}
	return c.setMeta(dst, m)
}

// modeBits are the mode bits Copy keeps.
const modeBits = os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky

// replace removes what is at dst, unless it is a directory, which is an error, or
// nothing.
func replace(dst string) error {
	fi, err := os.Lstat(dst)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("cannot replace directory %s", dst)
	}
	return os.Remove(dst)
}

// setMeta gives the file (not a link, not a directory) at dst its owner, mode and
// time.
func (c *copier) setMeta(dst string, m meta) error {
	if err := c.setOwner(dst, m.uid, m.gid); err != nil {
		return err
	}
	// chown clears setuid and setgid: chmod after it.
	if err := os.Chmod(dst, m.mode&modeBits); err != nil {
		return err
	}
	return setTime(dst, m.mtime)
}

// setOwner gives dst (not following a link) the copy's owner, or uid and gid where the
// options keep the source's.
func (c *copier) setOwner(dst string, uid, gid int) error {
	if c.unpacking && c.o.ArchiveOwners {
		return os.Lchown(dst, uid, gid)
	}
	if c.o.UID >= 0 {
		uid = c.o.UID
	}
	if c.o.GID >= 0 {
		gid = c.o.GID
	}
	return os.Lchown(dst, uid, gid)
}

// setTime sets the access and modification times of dst (not following a link) to t.
func setTime(dst string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: dst, Err: err}
	}
	return nil
}

// finish sets the times of the directories written, deepest last written first.
func (c *copier) finish() error {
	for i := len(c.dirs) - 1; i >= 0; i-- {
		if err := setTime(c.dirs[i].path, c.dirs[i].mtime); err != nil {
			return err
		}
	}
	c.dirs = nil
	return nil
}
