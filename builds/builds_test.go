package builds

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestALockIsOwnedWhileHeldAndFreeAfter(t *testing.T) {
	state := t.TempDir()
	l, err := Acquire(state, "0123456789")
	if err != nil {
		t.Fatal(err)
	}
	if live, err := owned(state, "0123456789"); err != nil || !live {
		t.Errorf("owned while held = %v, %v; want true", live, err)
	}
	if _, err := Acquire(state, "0123456789"); err == nil {
		t.Error("a second Acquire of the same build succeeded")
	}
	if _, err := takeOver(state, "0123456789"); err == nil {
		t.Error("takeOver of a held build succeeded")
	}

	// Close drops the lock and keeps the file: the build is an orphan now.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if live, err := owned(state, "0123456789"); err != nil || live {
		t.Errorf("owned after Close = %v, %v; want false", live, err)
	}
	if _, err := os.Stat(lockPath(state, "0123456789")); err != nil {
		t.Errorf("the lock file is gone after Close: %v", err)
	}

	// Release removes the file.
	l, err = takeOver(state, "0123456789")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lockPath(state, "0123456789")); !os.IsNotExist(err) {
		t.Errorf("the lock file remains after Release: %v", err)
	}
	if live, err := owned(state, "0123456789"); err != nil || live {
		t.Errorf("owned without a lock file = %v, %v; want false", live, err)
	}
}

func TestRemoveDirRemovesAndMountedBelowFindsNothingInATempDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "build")
	if err := os.MkdirAll(filepath.Join(dir, "volumes/1/app/0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if m, err := MountedBelow(dir); err != nil || m != "" {
		t.Fatalf("MountedBelow = %q, %v", m, err)
	}
	if err := RemoveDir(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s remains: %v", dir, err)
	}
	// /proc is a mount point on every Linux machine.
	if m, err := MountedBelow("/proc"); err != nil || m == "" {
		t.Errorf("MountedBelow(/proc) = %q, %v; want a mount", m, err)
	}
}

func TestMountedBelowFindsAMountWhosePathMountinfoEscapes(t *testing.T) {
	// The kernel writes a space, tab, newline or backslash in a mount point as an octal
	// escape (\040, \011, \012, \134); MountedBelow must return the path itself.
	dir := filepath.Join(t.TempDir(), "build dir")
	mnt := filepath.Join(dir, "vol\tume\n", `back\09`)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %q: %v", mnt, err)
		}
	})
	if m, err := MountedBelow(dir); err != nil || m != mnt {
		t.Errorf("MountedBelow(%q) = %q, %v; want %q", dir, m, err, mnt)
	}
	// "build di" is a prefix of the mount point's string, not of its path.
	short := dir[:len(dir)-1]
	if m, err := MountedBelow(short); err != nil || m != "" {
		t.Errorf("MountedBelow(%q) = %q, %v; want nothing", short, m, err)
	}
	if err := RemoveDir(dir); err == nil {
		t.Errorf("RemoveDir(%q) removed a directory with a mount below it", dir)
	}
}
