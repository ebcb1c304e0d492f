package mounts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Open opens a host path that HostPath returned once more, walking down from the build
// directory (or the grant that covers it) without following any symlink, and returns an
// O_PATH handle: its device and inode are what a mount of the path must show.
//
// Why: HostPath checks a path before the first container starts, but a step can change the
// build directory afterwards (its host volumes are writable), for instance by replacing a
// directory that a later step mounts with a symlink to /etc. The resolved path has no
// symlinks in it (HostPath resolved them all), so Open refuses any it finds now
// (RESOLVE_NO_SYMLINKS), and can neither leave the root (RESOLVE_BENEATH) nor take a magic
// link. Between that and the mount, the name can still be swapped; so the caller also
// compares the mounted directory with the handle (Same) after the container's mounts are
// made and before its process starts. This needs openat2 (Linux 5.6 or newer).
func (g Guard) Open(p string) (*os.File, error) {
	roots, err := g.roots()
	if err != nil {
		return nil, err
	}
	// The deepest root that covers p: a grant inside the build directory must not widen
	// what the walk may cross.
	root := ""
	for _, r := range roots {
		if within(p, r) && len(r) > len(root) {
			root = r
		}
	}
	if root == "" {
		return nil, fmt.Errorf("host path %s: outside the build directory and every grant", p)
	}
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(rootFd)
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Openat2(rootFd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		return nil, fmt.Errorf("host path %s changed since it was checked: a symlink is in it now", p)
	case errors.Is(err, unix.ENOENT):
		return nil, fmt.Errorf("host path %s changed since it was checked: it is gone", p)
	case errors.Is(err, unix.ENOSYS):
		return nil, fmt.Errorf("host path %s: openat2 is not available (Linux 5.6 or newer is needed)", p)
	case err != nil:
		return nil, fmt.Errorf("open host path %s: %w", p, err)
	}
	return os.NewFile(uintptr(fd), p), nil
}

// Covers reports whether p (clean and absolute) lies in the build directory or a grant:
// whether Open would look for it rather than refuse it outright.
func (g Guard) Covers(p string) bool {
	roots, err := g.roots()
	if err != nil {
		return true // Open says what is wrong
	}
	for _, r := range roots {
		if within(p, r) {
			return true
		}
	}
	return false
}

// Same reports whether the file at path inside the filesystem tree root (symlinks in path
// resolved as if root were "/", as a container sees them) is the file f: same device and
// inode.
func Same(f *os.File, root, path string) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		return false, err
	}
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(rootFd)
	fd, err := unix.Openat2(rootFd, path, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &b); err != nil {
		return false, err
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}
