package hostfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/go-units"
	"golang.org/x/sys/unix"
)

// MaxFile is the default bound of ReadFile's callers for the text files of a pipeline
// (services and steps files, Dockerfiles, .dockerignore, env and encrypted files).
const MaxFile = 10 << 20

// Mode says how a Dir resolves symlinks.
type Mode int

const (
	// Beneath follows symlinks that stay inside the Dir and refuses those that lead out
	// of it: the build directory.
	Beneath Mode = iota
	// InRoot resolves every path as if the Dir were "/": an absolute symlink or ".."
	// stops at the Dir's top, as in a container. A build context, an image's filesystem.
	InRoot
)

// ErrNotRegular and ErrTooLarge are what an *Error wraps when a file is not a regular
// file, or is larger than the bound it is read with.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("file too large")
)

// Error says why a file below a Dir cannot be read.
type Error struct {
	// Path is the file as the caller named it.
	Path string
	// Why completes the sentence that starts with Path: "is a symlink leaving the build
	// directory".
	Why string
	// Err is the cause: a unix.Errno, ErrNotRegular or ErrTooLarge. A file that does not
	// exist satisfies errors.Is(err, fs.ErrNotExist).
	Err error
}

func (e *Error) Error() string { return e.Path + " " + e.Why }

func (e *Error) Unwrap() error { return e.Err }

// Reason is the error without the file's name, for messages that name it already: its
// text is Why, and it wraps Err.
func (e *Error) Reason() error { return &reason{e} }

type reason struct{ e *Error }

func (r *reason) Error() string { return r.e.Why }
func (r *reason) Unwrap() error { return r.e.Err }

// Dir is a directory pinned by an O_PATH handle; see the package documentation.
type Dir struct {
	f    *os.File
	mode Mode
	// name is how messages name the directory: "the build directory".
	name string
}

// Open pins the directory at path (symlinks in path itself are followed: it is the
// operator's or crun-ci's own). name is how messages name it, "the build directory".
func Open(path string, mode Mode, name string) (*Dir, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s %s: %w", name, path, errnoError(err))
	}
	return &Dir{f: os.NewFile(uintptr(fd), path), mode: mode, name: name}, nil
}

// Close releases the handle.
func (d *Dir) Close() error { return d.f.Close() }

// Name is how messages name the directory.
func (d *Dir) Name() string { return d.name }

// Path is the host path the Dir was opened at, for messages and for what needs a path
// (a Dir's content may have been moved since).
func (d *Dir) Path() string { return d.f.Name() }

// Rel returns p relative to the Dir when p is an absolute path inside the Dir's path
// (a pipeline may name a file of its build directory so), else p as it is.
func (d *Dir) Rel(p string) string {
	if !filepath.IsAbs(p) {
		return p
	}
	r, err := filepath.Rel(d.f.Name(), p)
	if err != nil || r == ".." || strings.HasPrefix(r, "../") {
		return p
	}
	return r
}

// Sub pins the directory rel below d (resolved as d resolves), which then resolves its
// own paths with mode. The Dir it returns is independent of d: close both.
func (d *Dir) Sub(rel string, mode Mode, name string) (*Dir, error) {
	fd, err := d.openat(rel, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	return &Dir{f: os.NewFile(uintptr(fd), filepath.Join(d.f.Name(), rel)), mode: mode, name: name}, nil
}

// Open opens the regular file rel for reading, non-blocking. Anything else (a FIFO, a
// device, a socket, a directory) is an *Error wrapping ErrNotRegular and is never opened.
// A symlink is followed as the Dir's mode says.
func (d *Dir) Open(rel string) (*os.File, error) {
	return d.open(rel, 0)
}

// ReadFile reads the regular file rel, of at most max bytes (a larger one is an *Error
// wrapping ErrTooLarge).
func (d *Dir) ReadFile(rel string, max int64) ([]byte, error) {
	f, err := d.open(rel, max)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, &Error{Path: rel, Why: "cannot be read: " + errnoError(err).Error(), Err: err}
	}
	if int64(len(data)) > max {
		return nil, d.tooLarge(rel, max)
	}
	return data, nil
}

// open opens rel as Open does; with max > 0, a file larger than max is refused before
// anything is read.
func (d *Dir) open(rel string, max int64) (*os.File, error) {
	fd, err := d.openat(rel, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &Error{Path: rel, Why: "cannot be read: " + err.Error(), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &Error{Path: rel, Why: "is " + kind(st.Mode) + ", not a regular file", Err: ErrNotRegular}
	}
	if max > 0 && st.Size > max {
		return nil, d.tooLarge(rel, max)
	}
	// Reopen the very file the handle holds: no path is resolved again.
	rfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &Error{Path: rel, Why: "cannot be opened: " + err.Error() + " (is /proc mounted?)", Err: err}
	}
	return os.NewFile(uintptr(rfd), rel), nil
}

func (d *Dir) tooLarge(rel string, max int64) error {
	return &Error{Path: rel, Why: "is larger than " + units.BytesSize(float64(max)), Err: ErrTooLarge}
}

// Lstat describes rel itself (a symlink is not followed); its parents are resolved as the
// Dir's mode says. Sys() is a *syscall.Stat_t.
func (d *Dir) Lstat(rel string) (os.FileInfo, error) {
	return d.stat(rel, unix.O_NOFOLLOW)
}

// Stat describes rel, following a symlink as the Dir's mode says.
func (d *Dir) Stat(rel string) (os.FileInfo, error) {
	return d.stat(rel, 0)
}

func (d *Dir) stat(rel string, flags int) (os.FileInfo, error) {
	fd, err := d.openat(rel, unix.O_PATH|flags)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), filepath.Base(rel))
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, &Error{Path: rel, Why: "cannot be read: " + err.Error(), Err: err}
	}
	return fi, nil
}

// ReadDir lists the directory rel: what Lstat says of each entry, sorted by name.
func (d *Dir) ReadDir(rel string) ([]os.FileInfo, error) {
	fd, err := d.openat(rel, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK)
	if err != nil {
		return nil, err
	}
	dir := os.NewFile(uintptr(fd), rel)
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, &Error{Path: rel, Why: "cannot be listed: " + errnoError(err).Error(), Err: err}
	}
	slices.Sort(names)
	out := make([]os.FileInfo, 0, len(names))
	for _, n := range names {
		// One path element below an open directory: nothing to resolve.
		efd, err := unix.Openat(fd, n, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			continue // gone since the listing
		}
		if err != nil {
			return nil, &Error{Path: filepath.Join(rel, n), Why: "cannot be read: " + err.Error(), Err: err}
		}
		f := os.NewFile(uintptr(efd), n)
		fi, err := f.Stat()
		f.Close()
		if err != nil {
			return nil, &Error{Path: filepath.Join(rel, n), Why: "cannot be read: " + err.Error(), Err: err}
		}
		out = append(out, fi)
	}
	return out, nil
}

// Readlink returns the target of the symlink rel.
func (d *Dir) Readlink(rel string) (string, error) {
	fd, err := d.openat(rel, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
			return "", &Error{Path: rel, Why: "is not a symlink", Err: unix.EINVAL}
		}
		return "", &Error{Path: rel, Why: "cannot be read: " + err.Error(), Err: err}
	}
	return string(buf[:n]), nil
}

// Resolve returns the path of rel below the Dir, with every symlink resolved as the
// Dir's mode says: "a/b" when rel is a link to "a/b". "." is the Dir itself.
func (d *Dir) Resolve(rel string) (string, error) {
	fd, err := d.openat(rel, unix.O_PATH)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	top, err1 := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(d.f.Fd())))
	p, err2 := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err := errors.Join(err1, err2); err != nil {
		return "", &Error{Path: rel, Why: "cannot be resolved: " + err.Error(), Err: err}
	}
	r, err := filepath.Rel(top, p)
	if err != nil || r == ".." || strings.HasPrefix(r, "../") {
		return "", &Error{Path: rel, Why: "was moved out of " + d.name + " while it was read", Err: unix.EXDEV}
	}
	return r, nil
}

// openat resolves rel below the Dir with openat2 and returns the descriptor.
func (d *Dir) openat(rel string, flags int) (int, error) {
	if d.mode == Beneath {
		if c := filepath.Clean(rel); filepath.IsAbs(rel) || c == ".." || strings.HasPrefix(c, "../") {
			return -1, &Error{Path: rel, Why: "is outside " + d.name, Err: unix.EXDEV}
		}
	}
	resolve := uint64(unix.RESOLVE_NO_MAGICLINKS)
	if d.mode == InRoot {
		resolve |= unix.RESOLVE_IN_ROOT
	} else {
		resolve |= unix.RESOLVE_BENEATH
	}
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: resolve}
	var fd int
	var err error
	for range 16 {
		// EAGAIN: a rename or mount elsewhere raced the lookup; the kernel asks to retry.
		if fd, err = unix.Openat2(int(d.f.Fd()), rel, how); !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err == nil {
		return fd, nil
	}
	return -1, d.lookupError(rel, err)
}

// lookupError says in words why rel could not be looked up.
func (d *Dir) lookupError(rel string, err error) error {
	e := &Error{Path: rel, Err: err}
	switch {
	case errors.Is(err, unix.ENOENT):
		e.Why = "does not exist"
	case errors.Is(err, unix.ENOTDIR):
		e.Why, e.Err = "does not exist (a part of its path is not a directory)", &notDir{err}
	case errors.Is(err, unix.EXDEV):
		e.Why = "leads out of " + d.name + " through a symlink"
		// Is it the file itself?
		how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
		if fd, err := unix.Openat2(int(d.f.Fd()), rel, how); err == nil {
			var st unix.Stat_t
			if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				e.Why = "is a symlink leaving " + d.name
			}
			unix.Close(fd)
		}
	case errors.Is(err, unix.ELOOP):
		e.Why = "has too many levels of symlinks (or a link into /proc)"
	case errors.Is(err, unix.ENOSYS):
		e.Why = "cannot be opened safely: openat2 is not available (Linux 5.6 or newer is needed)"
	default:
		e.Why = "cannot be opened: " + err.Error()
	}
	return e
}

// notDir is ENOTDIR that also reads as fs.ErrNotExist: the file is not there.
type notDir struct{ err error }

func (n *notDir) Error() string { return n.err.Error() }
func (n *notDir) Unwrap() []error {
	return []error{n.err, fs.ErrNotExist}
}

// errnoError drops the operation and path from an *fs.PathError.
func errnoError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// kind names a file type with its article: "a named pipe".
func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a named pipe"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symlink"
	}
	return "a special file"
}
