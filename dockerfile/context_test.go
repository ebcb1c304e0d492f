package dockerfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/crun-ci/crun-ci/hostfs"
)

// ignoreRules is the .dockerignore the context tests use.
const ignoreRules = `# comment
*.log
!keep.log
build
!build/out/**
**/secret.txt
node_modules
/docs/*.md
!docs/README.md
`

// dirOf pins the directory dir for the test.
func dirOf(t *testing.T, dir string, mode hostfs.Mode) *hostfs.Dir {
	t.Helper()
	d, err := hostfs.Open(dir, mode, "the test directory")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// openContext opens the build context at dir as a build does.
func openContext(t *testing.T, dir string) (*Context, error) {
	t.Helper()
	return NewContext(dirOf(t, dir, hostfs.InRoot), hostfs.MaxFile)
}

// ignoreRulesContext returns an empty context whose .dockerignore holds ignoreRules.
func ignoreRulesContext(t *testing.T) *Context {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, ".dockerignore"), ignoreRules)
	c, err := openContext(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIgnored(t *testing.T) {
	c := ignoreRulesContext(t)
	for _, tc := range []struct {
		rel  string
		want bool
	}{
		{".", false},
		{"main.go", false},
		{"a.log", true},
		{"keep.log", false},
		{"sub/a.log", false}, // "*.log" matches at the root only
		{"build", true},
		{"build/tmp/x.o", true},
		{"build/out", true},
		{"build/out/app", false},
		{"secret.txt", true},
		{"x/y/secret.txt", true},
		{"node_modules", true},
		{"node_modules/a/b.js", true},
		{"docs/guide.md", true},
		{"docs/README.md", false},
		{"docs/img/a.png", false},
	} {
		t.Run(tc.rel, func(t *testing.T) {
			if got := c.Ignored(tc.rel); got != tc.want {
				t.Errorf("Ignored(%q) = %v, want %v", tc.rel, got, tc.want)
			}
		})
	}
}

func TestSkipDir(t *testing.T) {
	c := ignoreRulesContext(t)
	for _, tc := range []struct {
		rel  string
		want bool
	}{
		{"node_modules", true},
		{"build", false}, // "!build/out/**" may match below it
		{"build/tmp", true},
		{"build/out", false},
		{"src", false}, // not ignored at all
	} {
		if got := c.SkipDir(tc.rel); got != tc.want {
			t.Errorf("SkipDir(%q) = %v, want %v", tc.rel, got, tc.want)
		}
	}
}

func TestOpenContextWithoutIgnoreFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.log"), "x")
	c, err := openContext(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Ignored("a.log") {
		t.Error("a.log ignored without a .dockerignore")
	}
	if _, err := hostfs.Open(filepath.Join(dir, "missing"), hostfs.InRoot, "the build context"); err == nil {
		t.Error("a missing context directory opened")
	}
}

// sourcesContext makes the build context the Sources tests use, and a directory
// outside it.
func sourcesContext(t *testing.T) (ctxDir, outside string) {
	t.Helper()
	root := t.TempDir()
	ctxDir, outside = filepath.Join(root, "ctx"), filepath.Join(root, "outside")
	makeTree(t, outside, "secret.txt=outside secret")
	makeTree(t, ctxDir,
		".dockerignore="+ignoreRules,
		"a.txt=a", "b.txt=b", "a.log=log", "keep.log=keep",
		"dir1/a.txt=1", "dir2/a.txt=2", "dir2/b.bin=b",
		"build/tmp.o=o", "build/out/app=app",
		"node_modules/x.js=x",
		"sub/secret.txt=s",
		"rel-out->../outside",
		"abs-out->"+outside,
		"abs-in->/a.txt",
		"climb->../../../../../../a.txt",
		"dangling->nowhere",
	)
	return ctxDir, outside
}

func TestSources(t *testing.T) {
	ctxDir, _ := sourcesContext(t)
	c, err := openContext(t, ctxDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		srcs    []string
		want    []string
		wantErr string
	}{
		{name: "a file", srcs: []string{"a.txt"}, want: []string{"a.txt"}},
		{name: "a leading slash is the context root", srcs: []string{"/a.txt"}, want: []string{"a.txt"}},
		{name: "the context root", srcs: []string{"."}, want: []string{"."}},
		{name: "a wildcard in the last element", srcs: []string{"*.txt"}, want: []string{"a.txt", "b.txt"}},
		{name: "a wildcard in a directory element", srcs: []string{"dir*/a.txt"}, want: []string{"dir1/a.txt", "dir2/a.txt"}},
		{name: "a wildcard skips ignored files", srcs: []string{"*.log"}, want: []string{"keep.log"}},
		{name: "several sources are sorted and deduplicated", srcs: []string{"b.txt", "*.txt", "a.txt"}, want: []string{"a.txt", "b.txt"}},
		{name: "dot-dot stops at the context root", srcs: []string{"../a.txt"}, want: []string{"a.txt"}},
		{name: "an ignored directory with an exception below it", srcs: []string{"build"}, want: []string{"build"}},
		{name: "an absolute link resolves inside the context", srcs: []string{"abs-in"}, want: []string{"abs-in"}},
		{name: "a link climbing out stays in the context", srcs: []string{"climb"}, want: []string{"climb"}},
		{name: "a missing file", srcs: []string{"foo.txt"}, wantErr: `"foo.txt": not found in the build context (or excluded by .dockerignore)`},
		{name: "an ignored file", srcs: []string{"a.log"}, wantErr: `"a.log": not found in the build context (or excluded by .dockerignore)`},
		{name: "a file below an ignored directory", srcs: []string{"node_modules/x.js"}, wantErr: `"node_modules/x.js": not found`},
		{name: "an ignored directory without exceptions", srcs: []string{"node_modules"}, wantErr: `"node_modules": not found`},
		{name: "a wildcard matching nothing", srcs: []string{"*.md"}, wantErr: `"*.md": not found`},
		{name: "a relative link out of the context", srcs: []string{"rel-out/secret.txt"}, wantErr: `"rel-out/secret.txt": not found`},
		{name: "an absolute link out of the context", srcs: []string{"abs-out/secret.txt"}, wantErr: `"abs-out/secret.txt": not found`},
		{name: "a dangling link", srcs: []string{"dangling"}, wantErr: `"dangling": not found`},
		{name: "a path below a file", srcs: []string{"a.txt/x"}, wantErr: `"a.txt/x": not found`},
		{name: "a bad pattern", srcs: []string{"[a"}, wantErr: `"[a": pattern "[a": syntax error in pattern`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Sources(tc.srcs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Sources(%q) error = %v, want one containing %q", tc.srcs, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Sources(%q): %v", tc.srcs, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Sources(%q) (-want +got):\n%s", tc.srcs, diff)
			}
		})
	}
}

// TestSourcesCopyStaysInside copies sources whose links lead out of the context and
// checks that what lands in the image comes from inside it.
func TestSourcesCopyStaysInside(t *testing.T) {
	ctxDir, _ := sourcesContext(t)
	c, err := openContext(t, ctxDir)
	if err != nil {
		t.Fatal(err)
	}
	rels, err := c.Sources([]string{"climb", "abs-in"})
	if err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	o := CopyOptions{Ignored: c.Ignored, SkipDir: c.SkipDir}
	if err := Copy(t.Context(), c.root, rels, rootfs, "/dst/", "", o); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"dst dir 0755 0:0",
		"dst/abs-in file 0644 0:0 a",
		"dst/climb file 0644 0:0 a",
	}
	checkTree(t, rootfs, want)
}

func TestDigest(t *testing.T) {
	ctxDir, _ := sourcesContext(t)
	digestOf := func() string {
		t.Helper()
		c, err := openContext(t, ctxDir)
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.Digest([]string{".", "a.txt"})
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	base := digestOf()
	if !strings.HasPrefix(base, "sha256:") {
		t.Fatalf("Digest = %q, want a sha256 digest", base)
	}

	for _, tc := range []struct {
		name    string
		change  func(t *testing.T)
		changes bool
	}{
		{"changing the mtime of a file", func(t *testing.T) {
			when := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
			if err := os.Chtimes(filepath.Join(ctxDir, "a.txt"), when, when); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"changing the owner of a file", func(t *testing.T) {
			if err := os.Lchown(filepath.Join(ctxDir, "b.txt"), 1234, 1234); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"changing an ignored file", func(t *testing.T) {
			writeFile(t, filepath.Join(ctxDir, "node_modules/x.js"), "y")
		}, false},
		{"adding an ignored file", func(t *testing.T) {
			writeFile(t, filepath.Join(ctxDir, "more.log"), "log")
		}, false},
		{"changing one byte of a file", func(t *testing.T) {
			writeFile(t, filepath.Join(ctxDir, "dir1/a.txt"), "2")
		}, true},
		{"changing the excepted file below an ignored directory", func(t *testing.T) {
			writeFile(t, filepath.Join(ctxDir, "build/out/app"), "app2")
		}, true},
		{"adding a file", func(t *testing.T) {
			writeFile(t, filepath.Join(ctxDir, "dir1/new.txt"), "")
		}, true},
		{"adding an empty directory", func(t *testing.T) {
			if err := os.Mkdir(filepath.Join(ctxDir, "empty"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"changing a mode", func(t *testing.T) {
			if err := os.Chmod(filepath.Join(ctxDir, "b.txt"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"changing a link target", func(t *testing.T) {
			link := filepath.Join(ctxDir, "dangling")
			if err := os.Remove(link); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("elsewhere", link); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.change(t)
			got := digestOf()
			if changed := got != base; changed != tc.changes {
				t.Errorf("digest changed = %v, want %v", changed, tc.changes)
			}
			base = got
		})
	}
}

// TestDigestSameContentSameDigest checks that the digest depends on what is copied, not
// on where the context is.
func TestDigestSameContentSameDigest(t *testing.T) {
	var digests []string
	for range 2 {
		dir := t.TempDir()
		makeTree(t, dir, "a/b.txt=hello", "a/l->b.txt", "c=")
		c, err := openContext(t, dir)
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.Digest([]string{"a", "c"})
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
	}
	if digests[0] != digests[1] {
		t.Errorf("same content, different digests: %v", digests)
	}
}
