package hostfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// tree makes files below dir: a name ending in "/" is a directory, "->" makes a symlink
// ("link -> target"), "|" a FIFO ("name|").
func tree(t *testing.T, dir string, entries ...string) {
	t.Helper()
	for _, e := range entries {
		var err error
		switch {
		case strings.Contains(e, " -> "):
			link, target, _ := strings.Cut(e, " -> ")
			err = os.Symlink(target, filepath.Join(dir, link))
		case strings.HasSuffix(e, "/"):
			err = os.MkdirAll(filepath.Join(dir, e), 0o755)
		case strings.HasSuffix(e, "|"):
			err = unix.Mkfifo(filepath.Join(dir, strings.TrimSuffix(e, "|")), 0o600)
		default:
			name, content, _ := strings.Cut(e, "=")
			err = os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadFile(t *testing.T) {
	outside := t.TempDir()
	tree(t, outside, "secret=host secret\n")
	dir := t.TempDir()
	tree(t, dir,
		"Dockerfile=FROM busybox\n",
		"sub/",
		"sub/env=A=1\n",
		"inside -> sub/env",
		"sub/up -> ../Dockerfile",
		"abs -> "+filepath.Join(outside, "secret"),
		"rel-out -> ../"+filepath.Base(outside)+"/secret",
		"out-dir -> "+outside,
		"fifo|",
		"big="+strings.Repeat("x", 100),
		"loop -> loop",
		"proc -> /proc/self/fd/0",
	)
	d, err := Open(dir, Beneath, "the build directory")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tests := []struct {
		name, path string
		want       string // the content, or the error when wantErr
		wantErr    bool
		is         error
	}{
		{name: "a regular file is read", path: "Dockerfile", want: "FROM busybox\n"},
		{name: "a file in a subdirectory is read", path: "sub/env", want: "A=1\n"},
		{name: "a symlink inside the directory is followed", path: "inside", want: "A=1\n"},
		{name: "a symlink up and back inside is followed", path: "sub/up", want: "FROM busybox\n"},
		{name: "an absolute symlink out is refused", path: "abs", wantErr: true, want: "abs is a symlink leaving the build directory", is: unix.EXDEV},
		{name: "a relative symlink out is refused", path: "rel-out", wantErr: true, want: "rel-out is a symlink leaving the build directory"},
		{name: "a path through a symlinked directory out is refused", path: "out-dir/secret", wantErr: true, want: "out-dir/secret leads out of the build directory through a symlink"},
		{name: "a path with .. out is refused", path: "../x", wantErr: true, want: "../x is outside the build directory"},
		{name: "an absolute path is refused", path: "/etc/passwd", wantErr: true, want: "/etc/passwd is outside the build directory"},
		{name: "a FIFO is refused without blocking", path: "fifo", wantErr: true, want: "fifo is a named pipe, not a regular file", is: ErrNotRegular},
		{name: "a directory is refused", path: "sub", wantErr: true, want: "sub is a directory, not a regular file", is: ErrNotRegular},
		{name: "a file over the bound is refused", path: "big", wantErr: true, want: "big is larger than 64B", is: ErrTooLarge},
		{name: "a missing file says so", path: "nope", wantErr: true, want: "nope does not exist", is: fs.ErrNotExist},
		{name: "a missing parent says so", path: "Dockerfile/x", wantErr: true, want: "Dockerfile/x does not exist (a part of its path is not a directory)", is: fs.ErrNotExist},
		{name: "a symlink loop is refused", path: "loop", wantErr: true, want: "loop has too many levels of symlinks (or a link into /proc)"},
		{name: "a link into /proc is refused", path: "proc", wantErr: true, want: "proc is a symlink leaving the build directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan struct{})
			var got []byte
			var err error
			go func() {
				got, err = d.ReadFile(tt.path, 64)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("ReadFile blocked")
			}
			if !tt.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, string(got)); diff != "" {
					t.Errorf("content (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatalf("read %q, want error %q", got, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error %q, want %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
}

func TestDeviceIsNeverOpened(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mknod needs root")
	}
	dir := t.TempDir()
	if err := unix.Mknod(filepath.Join(dir, "zero"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5))); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dir, Beneath, "the build directory")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = d.ReadFile("zero", MaxFile)
	if err == nil || err.Error() != "zero is a character device, not a regular file" {
		t.Fatalf("error %v, want that zero is a character device", err)
	}
}

func TestInRoot(t *testing.T) {
	outside := t.TempDir()
	tree(t, outside, "passwd=host\n")
	dir := t.TempDir()
	tree(t, dir,
		"etc/",
		"etc/passwd=image\n",
		"abs -> /etc/passwd",
		"up -> ../../../../etc/passwd",
		"link-dir -> /etc",
	)
	d, err := Open(dir, InRoot, "the image")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, p := range []string{"/etc/passwd", "etc/passwd", "abs", "up", "link-dir/passwd", "/../../etc/passwd"} {
		got, err := d.ReadFile(p, MaxFile)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if string(got) != "image\n" {
			t.Errorf("%s: read %q, want the image's file", p, got)
		}
	}
	for p, want := range map[string]string{"abs": "etc/passwd", "link-dir": "etc", ".": "."} {
		got, err := d.Resolve(p)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("Resolve(%q) = %q, want %q", p, got, want)
		}
	}
}

func TestListing(t *testing.T) {
	dir := t.TempDir()
	tree(t, dir, "b=1", "a/", "c -> b", "fifo|")
	d, err := Open(dir, InRoot, "the build context")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fis, err := d.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fi := range fis {
		got = append(got, fi.Name()+" "+fi.Mode().Type().String())
	}
	want := []string{"a d---------", "b ----------", "c L---------", "fifo p---------"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadDir (-want +got):\n%s", diff)
	}
	if target, err := d.Readlink("c"); err != nil || target != "b" {
		t.Errorf("Readlink = %q, %v; want b", target, err)
	}
	if _, err := d.Readlink("b"); err == nil || err.Error() != "b is not a symlink" {
		t.Errorf("Readlink of a file: %v", err)
	}
	fi, err := d.Lstat("c")
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("Lstat(c) = %v, %v; want a symlink", fi, err)
	}
	fi, err = d.Stat("c")
	if err != nil || !fi.Mode().IsRegular() {
		t.Errorf("Stat(c) = %v, %v; want the file", fi, err)
	}
}

// A Dir keeps reading the directory it pinned when its name is swapped for a symlink to
// somewhere else: the attack of a step that replaces a build context.
func TestPinnedAgainstSwap(t *testing.T) {
	outside := t.TempDir()
	tree(t, outside, "Dockerfile=host\n")
	dir := t.TempDir()
	tree(t, dir, "ctx/", "ctx/Dockerfile=ours\n")
	root, err := Open(dir, Beneath, "the build directory")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	ctx, err := root.Sub("ctx", InRoot, "the build context")
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	if err := os.Rename(filepath.Join(dir, "ctx"), filepath.Join(dir, "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "ctx")); err != nil {
		t.Fatal(err)
	}
	got, err := ctx.ReadFile("Dockerfile", MaxFile)
	if err != nil || string(got) != "ours\n" {
		t.Errorf("read %q, %v; want the pinned context's file", got, err)
	}
	if _, err := root.Sub("ctx", InRoot, "the build context"); err == nil || err.Error() != "ctx is a symlink leaving the build directory" {
		t.Errorf("Sub of the swapped context: %v", err)
	}
}
