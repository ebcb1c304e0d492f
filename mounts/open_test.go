package mounts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenRefusesASymlinkThatAppearedAfterTheCheck(t *testing.T) {
	build, outside := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(build, "a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	g := Guard{BuildDir: build}
	p, err := g.HostPath("./a/b")
	if err != nil {
		t.Fatal(err)
	}
	f, err := g.Open(p)
	if err != nil {
		t.Fatalf("open before the swap: %v", err)
	}
	f.Close()

	// Swap a parent for a link out of the build directory.
	if err := os.RemoveAll(filepath.Join(build, "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(outside, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(build, "a")); err != nil {
		t.Fatal(err)
	}
	_, err = g.Open(p)
	if err == nil || !strings.Contains(err.Error(), "changed since it was checked: a symlink is in it now") {
		t.Errorf("open after the swap: %v, want the symlink refused", err)
	}

	// And a path that is gone.
	os.Remove(filepath.Join(build, "a"))
	_, err = g.Open(p)
	if err == nil || !strings.Contains(err.Error(), "changed since it was checked: it is gone") {
		t.Errorf("open after removal: %v", err)
	}
}

func TestSameComparesTheOpenedFileWithAPathInARoot(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"x", "y"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Inside root, /link points to /x as a container would see it.
	if err := os.Symlink("/x", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for path, want := range map[string]bool{"/x": true, "/link": true, "/y": false} {
		got, err := Same(f, root, path)
		if err != nil || got != want {
			t.Errorf("Same(x, %s) = %v, %v; want %v", path, got, err, want)
		}
	}
}
