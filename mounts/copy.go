package mounts

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Copy copies the tree at src into the existing directory dst, keeping modes, owners and
// symlinks, the way Docker fills a new volume from the image. Symlinks are copied as links,
// never followed; device nodes and sockets are skipped. It reports whether src held
// anything; a src that does not exist holds nothing.
func Copy(dst, src string) (bool, error) {
	st, err := os.Lstat(src)
	if err != nil {
		if os.IsNotExist(err) {
			return false, nil
		}
		return false, err
	}
	if !st.IsDir() {
		return false, nil
	}
	any := false
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if rel == "." {
			// The volume directory takes the mode and owner of the image's directory.
			return own(target, info, nil)
		}
		any = true
		switch m := info.Mode(); {
		case m.IsDir():
			return own(target, info, os.Mkdir(target, 0o700))
		case m&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return own(target, info, os.Symlink(link, target))
		case m.IsRegular():
			return own(target, info, copyFile(target, p))
		case m&fs.ModeNamedPipe != 0:
			return own(target, info, unix.Mkfifo(target, 0o600))
		default:
			return nil
		}
	})
	if err != nil {
		return any, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return any, nil
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// own gives target the owner, then the mode of info, after the step that made target (err)
// succeeded. The mode comes last because chown clears the setuid and setgid bits of a
// file, even for root. A symlink has no mode of its own.
func own(target string, info fs.FileInfo, err error) error {
	if err != nil {
		return err
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	m := info.Mode()
	if m&fs.ModeSymlink != 0 {
		return nil
	}
	return os.Chmod(target, m.Perm()|m&(fs.ModeSticky|fs.ModeSetgid|fs.ModeSetuid))
}
