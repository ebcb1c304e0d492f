package dockerfile

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/crun-ci/crun-ci/hostfs"
)

// writeFile writes content to the file name with mode 0644, creating its parents.
func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, 0o644); err != nil {
		t.Fatal(err)
	}
}

// makeTree creates below root, in order, what each spec says: "path=content" a file
// (mode 0644), "path/" a directory (mode 0755), "path->target" a symbolic link.
// Missing parents are created with mode 0755.
func makeTree(t *testing.T, root string, specs ...string) {
	t.Helper()
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, spec := range specs {
		eq, arrow := strings.Index(spec, "="), strings.Index(spec, "->")
		switch {
		case arrow >= 0 && (eq < 0 || arrow < eq):
			name := filepath.Join(root, spec[:arrow])
			mkdirs(t, filepath.Dir(name))
			if err := os.Symlink(spec[arrow+2:], name); err != nil {
				t.Fatal(err)
			}
		case eq >= 0:
			name := filepath.Join(root, spec[:eq])
			mkdirs(t, filepath.Dir(name))
			writeFile(t, name, spec[eq+1:])
		case strings.HasSuffix(spec, "/"):
			mkdirs(t, filepath.Join(root, spec))
		default:
			t.Fatalf("makeTree: bad spec %q", spec)
		}
	}
}

// mkdirs creates dir and its missing parents with mode 0755, whatever the umask.
func mkdirs(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Lstat(dir); err == nil {
		return
	}
	mkdirs(t, filepath.Dir(dir))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// tree describes everything below root, one line per path in sorted order:
// "path type mode uid:gid" followed by the content of a file or the target of a link.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %s %04o %d:%d", filepath.ToSlash(rel), kind(fi.Mode()), unixMode(fi.Mode()), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += " " + string(b)
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line = fmt.Sprintf("%s link %d:%d -> %s", filepath.ToSlash(rel), st.Uid, st.Gid, target)
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkTree fails the test unless tree describes root as want.
func checkTree(t *testing.T, root string, want []string) {
	t.Helper()
	if diff := cmp.Diff(want, tree(t, root)); diff != "" {
		t.Errorf("tree of %s (-want +got):\n%s", root, diff)
	}
}

// kind names the type of a file mode.
func kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "dir"
	case m.IsRegular():
		return "file"
	case m&os.ModeNamedPipe != 0:
		return "fifo"
	case m&os.ModeCharDevice != 0:
		return "chardev"
	case m&os.ModeDevice != 0:
		return "blockdev"
	default:
		return "other"
	}
}

// unixMode returns the permission, setuid, setgid and sticky bits of m as chmod takes
// them.
func unixMode(m os.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

func TestCopy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		src     []string // the source tree
		image   []string // the rootfs before the copy
		srcs    []string
		dest    string
		workdir string
		o       CopyOptions
		want    []string // the rootfs after the copy
		wantErr string
	}{
		{
			name: "a file to a new file name creates its parents",
			src:  []string{"a.txt=A"},
			srcs: []string{"a.txt"}, dest: "/x/y/b.txt",
			want: []string{
				"x dir 0755 0:0",
				"x/y dir 0755 0:0",
				"x/y/b.txt file 0644 0:0 A",
			},
		},
		{
			name:  "a file into an existing directory",
			src:   []string{"a.txt=A"},
			image: []string{"etc/"},
			srcs:  []string{"a.txt"}, dest: "/etc",
			want: []string{
				"etc dir 0755 0:0",
				"etc/a.txt file 0644 0:0 A",
			},
		},
		{
			name: "a file into a new directory named with a slash",
			src:  []string{"sub/a.txt=A"},
			srcs: []string{"sub/a.txt"}, dest: "/opt/",
			want: []string{
				"opt dir 0755 0:0",
				"opt/a.txt file 0644 0:0 A",
			},
		},
		{
			name: "a directory copies its contents, links as links",
			src:  []string{"d/a.txt=A", "d/e/b.txt=B", "d/l->a.txt", "d/abs->/etc/passwd"},
			srcs: []string{"d"}, dest: "/app",
			want: []string{
				"app dir 0755 0:0",
				"app/a.txt file 0644 0:0 A",
				"app/abs link 0:0 -> /etc/passwd",
				"app/e dir 0755 0:0",
				"app/e/b.txt file 0644 0:0 B",
				"app/l link 0:0 -> a.txt",
			},
		},
		{
			name:  "a relative destination is relative to the workdir",
			src:   []string{"a.txt=A"},
			image: []string{"srv/app/"},
			srcs:  []string{"a.txt"}, dest: ".", workdir: "/srv/app",
			want: []string{
				"srv dir 0755 0:0",
				"srv/app dir 0755 0:0",
				"srv/app/a.txt file 0644 0:0 A",
			},
		},
		{
			name: "the context root copies everything",
			src:  []string{"a.txt=A", "d/b.txt=B"},
			srcs: []string{"."}, dest: "/",
			want: []string{
				"a.txt file 0644 0:0 A",
				"d dir 0755 0:0",
				"d/b.txt file 0644 0:0 B",
			},
		},
		{
			name: "several sources to a file name",
			src:  []string{"a.txt=A", "b.txt=B"},
			srcs: []string{"a.txt", "b.txt"}, dest: "/x",
			wantErr: "when using COPY with more than one source file, the destination must be a directory and end with a /",
		},
		{
			name:  "several sources into an existing directory without a slash",
			src:   []string{"a.txt=A", "b.txt=B"},
			image: []string{"x/"},
			srcs:  []string{"a.txt", "b.txt"}, dest: "/x",
			want: []string{
				"x dir 0755 0:0",
				"x/a.txt file 0644 0:0 A",
				"x/b.txt file 0644 0:0 B",
			},
		},
		{
			name:  "an owner for what is copied and the parents created, not for existing ones",
			src:   []string{"d/a.txt=A", "d/l->a.txt"},
			image: []string{"home/"},
			srcs:  []string{"d"}, dest: "/home/u/app/", o: CopyOptions{UID: 1000, GID: 1001},
			want: []string{
				"home dir 0755 0:0",
				"home/u dir 0755 1000:1001",
				"home/u/app dir 0755 1000:1001",
				"home/u/app/a.txt file 0644 1000:1001 A",
				"home/u/app/l link 1000:1001 -> a.txt",
			},
		},
		{
			name: "minus one keeps the source's owner",
			src:  []string{"a.txt=A"},
			srcs: []string{"a.txt"}, dest: "/a.txt", o: CopyOptions{UID: -1, GID: -1},
			want: []string{"a.txt file 0644 123:456 A"},
		},
		{
			name: "ignored paths are skipped, exceptions below ignored directories kept",
			src:  []string{"a.txt=A", "a.log=L", "build/tmp.o=O", "build/out/app=APP", "node_modules/x.js=X"},
			srcs: []string{"."}, dest: "/app/",
			o: CopyOptions{Ignored: func(rel string) bool {
				return rel == "a.log" || rel == "node_modules" || strings.HasPrefix(rel, "node_modules/") ||
					(rel == "build" || strings.HasPrefix(rel, "build/")) && rel != "build/out/app"
			}},
			want: []string{
				"app dir 0755 0:0",
				"app/a.txt file 0644 0:0 A",
				"app/build dir 0755 0:0",
				"app/build/out dir 0755 0:0",
				"app/build/out/app file 0644 0:0 APP",
			},
		},
		{
			name:  "an absolute link in the image is resolved inside the rootfs",
			src:   []string{"a.txt=A"},
			image: []string{"data/", "tmp/link->/data"},
			srcs:  []string{"a.txt"}, dest: "/tmp/link/",
			want: []string{
				"data dir 0755 0:0",
				"data/a.txt file 0644 0:0 A",
				"tmp dir 0755 0:0",
				"tmp/link link 0:0 -> /data",
			},
		},
		{
			name:  "a link climbing out of the image stays inside the rootfs",
			src:   []string{"a.txt=A"},
			image: []string{"up->../../../../../../../../.."},
			srcs:  []string{"a.txt"}, dest: "/up/x/",
			want: []string{
				"up link 0:0 -> ../../../../../../../../..",
				"x dir 0755 0:0",
				"x/a.txt file 0644 0:0 A",
			},
		},
		{
			name:  "an existing file and a link to a file are replaced, not written through",
			src:   []string{"d/a.txt=new", "d/b.txt=new"},
			image: []string{"app/a.txt=old", "app/b.txt->/keep.txt", "keep.txt=keep"},
			srcs:  []string{"d"}, dest: "/app",
			want: []string{
				"app dir 0755 0:0",
				"app/a.txt file 0644 0:0 new",
				"app/b.txt file 0644 0:0 new",
				"keep.txt file 0644 0:0 keep",
			},
		},
		{
			name:  "a directory is merged into an existing one, and a link to one",
			src:   []string{"d/lib/new.so=N", "d/etc/conf=C"},
			image: []string{"usr/lib/old.so=O", "lib->usr/lib", "etc/x=X"},
			srcs:  []string{"d"}, dest: "/",
			want: []string{
				"etc dir 0755 0:0",
				"etc/conf file 0644 0:0 C",
				"etc/x file 0644 0:0 X",
				"lib link 0:0 -> usr/lib",
				"usr dir 0755 0:0",
				"usr/lib dir 0755 0:0",
				"usr/lib/new.so file 0644 0:0 N",
				"usr/lib/old.so file 0644 0:0 O",
			},
		},
		{
			name:  "a directory is not replaced by a file",
			src:   []string{"d/x=file"},
			image: []string{"app/x/y=Y"},
			srcs:  []string{"d"}, dest: "/app",
			wantErr: "cannot replace directory",
		},
		{
			name: "a source link named directly is followed",
			src:  []string{"real.txt=R", "link->real.txt"},
			srcs: []string{"link"}, dest: "/opt/",
			want: []string{
				"opt dir 0755 0:0",
				"opt/link file 0644 0:0 R",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, rootfs := t.TempDir(), t.TempDir()
			makeTree(t, from, tc.src...)
			makeTree(t, rootfs, tc.image...)
			if strings.HasPrefix(tc.name, "minus one") {
				if err := os.Lchown(filepath.Join(from, "a.txt"), 123, 456); err != nil {
					t.Fatal(err)
				}
			}
			err := Copy(t.Context(), dirOf(t, from, hostfs.InRoot), tc.srcs, rootfs, tc.dest, tc.workdir, tc.o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Copy error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			checkTree(t, rootfs, tc.want)
		})
	}
}

func TestCopyKeepsModesAndTimes(t *testing.T) {
	from, rootfs := t.TempDir(), t.TempDir()
	makeTree(t, from, "d/bin/tool=T", "d/tmp/", "d/s/secret=S", "d/l->bin/tool")
	when := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
	if err := syscall.Mkfifo(filepath.Join(from, "d/fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(from, "d/fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{
		"d/bin/tool": 0o755 | os.ModeSetuid,
		"d/tmp":      0o777 | os.ModeSticky,
		"d/s/secret": 0o600,
		"d/s":        0o700 | os.ModeSetgid,
	} {
		if err := os.Chmod(filepath.Join(from, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"d/bin/tool", "d/s/secret", "d/bin", "d/s", "d/tmp", "d"} {
		if err := os.Chtimes(filepath.Join(from, name), when, when); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Lutimes(filepath.Join(from, "d/l"), []unix.Timeval{unix.NsecToTimeval(when.UnixNano()), unix.NsecToTimeval(when.UnixNano())}); err != nil {
		t.Fatal(err)
	}

	if err := Copy(t.Context(), dirOf(t, from, hostfs.InRoot), []string{"d"}, rootfs, "/out", "", CopyOptions{}); err != nil {
		t.Fatal(err)
	}

	want := []string{
		"out dir 0755 0:0",
		"out/bin dir 0755 0:0",
		"out/bin/tool file 4755 0:0 T",
		"out/fifo fifo 0640 0:0",
		"out/l link 0:0 -> bin/tool",
		"out/s dir 2700 0:0",
		"out/s/secret file 0600 0:0 S",
		"out/tmp dir 1777 0:0",
	}
	checkTree(t, rootfs, want)
	for _, name := range []string{"out", "out/bin", "out/bin/tool", "out/s", "out/s/secret", "out/tmp", "out/l"} {
		fi, err := os.Lstat(filepath.Join(rootfs, name))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(when) {
			t.Errorf("%s: mtime %v, want %v", name, fi.ModTime(), when)
		}
	}
}

func TestCopyLeavesAnExistingDestinationDirectoryAsItIs(t *testing.T) {
	from, rootfs := t.TempDir(), t.TempDir()
	makeTree(t, from, "d/a=A")
	if err := os.Chmod(filepath.Join(from, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	makeTree(t, rootfs, "usr/")
	if err := Copy(t.Context(), dirOf(t, from, hostfs.InRoot), []string{"d"}, rootfs, "/usr", "", CopyOptions{UID: 5, GID: 5}); err != nil {
		t.Fatal(err)
	}
	want := []string{"usr dir 0755 0:0", "usr/a file 0644 5:5 A"}
	checkTree(t, rootfs, want)
}

func TestCopyWithContextIgnore(t *testing.T) {
	ctxDir, rootfs := t.TempDir(), t.TempDir()
	makeTree(t, ctxDir, ".dockerignore="+ignoreRules,
		"main.go=M", "a.log=L", "keep.log=K",
		"build/tmp.o=O", "build/out/app=APP",
		"node_modules/x.js=X", "src/secret.txt=S", "src/x.go=X",
		"docs/guide.md=G", "docs/README.md=R")
	c, err := openContext(t, ctxDir)
	if err != nil {
		t.Fatal(err)
	}
	rels, err := c.Sources([]string{"."})
	if err != nil {
		t.Fatal(err)
	}
	o := CopyOptions{UID: 0, GID: 0, Ignored: c.Ignored, SkipDir: c.SkipDir}
	if err := Copy(t.Context(), c.root, rels, rootfs, "/app", "", o); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"app dir 0755 0:0",
		"app/.dockerignore file 0644 0:0 " + ignoreRules,
		"app/build dir 0755 0:0",
		"app/build/out dir 0755 0:0",
		"app/build/out/app file 0644 0:0 APP",
		"app/docs dir 0755 0:0",
		"app/docs/README.md file 0644 0:0 R",
		"app/keep.log file 0644 0:0 K",
		"app/main.go file 0644 0:0 M",
		"app/src dir 0755 0:0",
		"app/src/x.go file 0644 0:0 X",
	}
	checkTree(t, rootfs, want)
}

func TestCopyDeviceAndSocket(t *testing.T) {
	from, rootfs := t.TempDir(), t.TempDir()
	makeTree(t, from, "d/")
	if err := unix.Mknod(filepath.Join(from, "d/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Skipf("cannot make a device node here: %v", err)
	}
	if err := os.Chmod(filepath.Join(from, "d/null"), 0o666); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(from, "d/sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	if err := Copy(t.Context(), dirOf(t, from, hostfs.InRoot), []string{"d"}, rootfs, "/dev", "", CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"dev dir 0755 0:0", "dev/null chardev 0666 0:0"}
	checkTree(t, rootfs, want)
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(rootfs, "dev/null"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("dev/null: device %d:%d, want 1:3", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
}
