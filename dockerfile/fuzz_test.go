package dockerfile

import (
	"archive/tar"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/crun-ci/crun-ci/hostfs"
)

// FuzzExtract unpacks what ADD would unpack from a file a step left in the build context:
// whatever the archive says, nothing is written outside the image's root filesystem, and
// what is written there stays below it.
func FuzzExtract(f *testing.F) {
	when := time.Unix(1e9, 0)
	f.Add(testArchive(f, when))
	f.Add(makeTar(f, when,
		tarEntry{name: "link", typ: tar.TypeSymlink, link: "../../outside"},
		tarEntry{name: "link/x", typ: tar.TypeReg, mode: 0o644, content: "through the link"},
		tarEntry{name: "abs", typ: tar.TypeSymlink, link: "/"},
		tarEntry{name: "abs/etc/x", typ: tar.TypeReg, mode: 0o644, content: "X"},
		tarEntry{name: "hard", typ: tar.TypeLink, link: "../../../etc/passwd"},
		tarEntry{name: "fifo", typ: tar.TypeFifo, mode: 0o644},
		tarEntry{name: "dev", typ: tar.TypeChar, mode: 0o644},
	))
	f.Add([]byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0})
	f.Add([]byte("BZh91AY&SY"))
	f.Add(zstded(f, testArchive(f, when)))
	// testdata/fuzz has xz archives for a machine without the xz command.
	if _, err := exec.LookPath("xz"); err == nil {
		f.Add(xzed(f, testArchive(f, when)))
	}
	f.Fuzz(func(t *testing.T, archive []byte) {
		top, err := os.MkdirTemp("", "fuzz-extract-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(top)
		from, rootfs, outside := filepath.Join(top, "from"), filepath.Join(top, "rootfs"), filepath.Join(top, "outside")
		for _, d := range []string{from, rootfs, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(from, "a.tar"), archive, 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := hostfs.Open(from, hostfs.InRoot, "the build context")
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		// Errors are fine (a broken archive, owners a test without root cannot set).
		Copy(t.Context(), d, []string{"a.tar"}, rootfs, "/dst/", "", CopyOptions{UID: -1, GID: -1, Extract: true, ArchiveOwners: true})
		top2, err := os.ReadDir(top)
		if err != nil {
			t.Fatal(err)
		}
		if len(top2) != 3 {
			t.Errorf("the archive made %d entries next to the root filesystem", len(top2)-3)
		}
		if left, _ := os.ReadDir(outside); len(left) != 0 {
			t.Errorf("the archive wrote %d entries outside the root filesystem", len(left))
		}
		if got, _ := os.ReadFile(filepath.Join(from, "a.tar")); string(got) != string(archive) {
			t.Error("the archive changed the build context")
		}
		// No hard link to a file outside: writing through it would change the host.
		var others []os.FileInfo
		for _, p := range []string{"/etc/passwd", filepath.Join(from, "a.tar")} {
			if fi, err := os.Stat(p); err == nil {
				others = append(others, fi)
			}
		}
		filepath.WalkDir(rootfs, func(p string, de fs.DirEntry, err error) error {
			if err != nil || !de.Type().IsRegular() {
				return nil
			}
			fi, err := de.Info()
			if err != nil {
				return nil
			}
			for _, o := range others {
				if os.SameFile(fi, o) {
					t.Errorf("%s is a hard link to %s", p, o.Name())
				}
			}
			return nil
		})
	})
}

// FuzzDockerignore reads a .dockerignore a step could have written: patterns that do not
// compile are an error, never a panic, and the rules then answer for any path.
func FuzzDockerignore(f *testing.F) {
	for _, s := range []string{ignoreRules, "", "!", "**", "[", "a/**/b\n!a/c", "\\", "../x\n/abs\n", "#comment\n\n  spaces  \n", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rules string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte(rules), 0o644); err != nil {
			t.Fatal(err)
		}
		root, err := hostfs.Open(dir, hostfs.InRoot, "the build context")
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		c, err := NewContext(root, hostfs.MaxFile)
		if err != nil {
			return
		}
		for _, p := range []string{"a", "a/b", "node_modules/x", "docs/README.md", "x/y/z.log", ".dockerignore", "Dockerfile"} {
			c.Ignored(p)
			c.SkipDir(p)
		}
		if c.Ignored(".") {
			t.Error("the context root is ignored")
		}
	})
}
