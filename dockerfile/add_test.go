package dockerfile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crun-ci/crun-ci/hostfs"
)

// tarEntry is one entry of a test archive.
type tarEntry struct {
	name, content, link string
	typ                 byte
	mode                int64
	uid, gid            int
}

// makeTar returns a tar archive of entries, all with the modification time when.
func makeTar(t testing.TB, when time.Time, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode,
			Uid: e.uid, Gid: e.gid, ModTime: when, Size: int64(len(e.content)),
			Format: tar.FormatPAX,
		}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gzipped returns b compressed with gzip.
func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bzipped returns b compressed by the bzip2 command, skipping the test without it.
func bzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("bzip2"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no bzip2 command to make a bzip2 archive with (scripts/setup.sh installs it)")
		}
		t.Skip("no bzip2 command to make a bzip2 archive with (scripts/setup.sh installs it)")
	}
	cmd := exec.Command("bzip2", "-c")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// testArchive is an archive with a directory, a file, links, and names that try to
// leave the destination.
func testArchive(t testing.TB, when time.Time) []byte {
	return makeTar(t, when,
		tarEntry{name: "./", typ: tar.TypeDir, mode: 0o700},
		tarEntry{name: "d/", typ: tar.TypeDir, mode: 0o750, uid: 7, gid: 8},
		tarEntry{name: "d/f", typ: tar.TypeReg, mode: 0o640, uid: 7, gid: 8, content: "F"},
		tarEntry{name: "d/l", typ: tar.TypeSymlink, link: "f"},
		tarEntry{name: "d/h", typ: tar.TypeLink, link: "d/f"},
		tarEntry{name: "implicit/parent/x", typ: tar.TypeReg, mode: 0o644, content: "X"},
		tarEntry{name: "../../escape", typ: tar.TypeReg, mode: 0o644, content: "E"},
		tarEntry{name: "/abs", typ: tar.TypeReg, mode: 0o644, content: "A"},
	)
}

// wantArchiveTree is the rootfs after testArchive is unpacked into /dst with its
// owners kept.
var wantArchiveTree = []string{
	"dst dir 0755 0:0",
	"dst/abs file 0644 0:0 A",
	"dst/d dir 0750 7:8",
	"dst/d/f file 0640 7:8 F",
	"dst/d/h file 0640 7:8 F",
	"dst/d/l link 0:0 -> f",
	"dst/escape file 0644 0:0 E",
	"dst/implicit dir 0755 0:0",
	"dst/implicit/parent dir 0755 0:0",
	"dst/implicit/parent/x file 0644 0:0 X",
}

func TestCopyExtract(t *testing.T) {
	when := time.Date(2019, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		compress func(*testing.T, []byte) []byte
	}{
		{"a plain tar", func(_ *testing.T, b []byte) []byte { return b }},
		{"a gzip tar", gzipped},
		{"a bzip2 tar", bzipped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, rootfs := t.TempDir(), t.TempDir()
			// The name says nothing: the content tells an archive.
			if err := os.WriteFile(filepath.Join(from, "archive.bin"), tc.compress(t, testArchive(t, when)), 0o644); err != nil {
				t.Fatal(err)
			}
			o := CopyOptions{UID: -1, GID: -1, Extract: true}
			if err := Copy(t.Context(), dirOf(t, from, hostfs.InRoot), []string{"archive.bin"}, rootfs, "/dst", "", o); err != nil {
				t.Fatal(err)
			}
			checkTree(t, rootfs, wantArchiveTree)
			fi, err := os.Stat(filepath.Join(rootfs, "dst/d/f"))
			if err != nil {
				t.Fatal(err)
			}
			if !fi.ModTime().Equal(when) {
				t.Errorf("dst/d/f: mtime %v, want %v", fi.ModTime(), when)
			}
		})
	}
}

func TestCopyExtractWithOwner(t *testing.T) {
	from, rootfs := t.TempDir(), t.TempDir()
	archive := makeTar(t, time.Now(), tarEntry{name: "f", typ: tar.TypeReg, mode: 0o600, uid: 7, gid: 8, content: "F"})
	if err := os.WriteFile(filepath.Join(from, "a.tar"), archive, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Copy(t.Context(), dirOf(t, from, hostfs.InRoot), []string{"a.tar"}, rootfs, "/x/", "", CopyOptions{UID: 1, GID: 2, Extract: true}); err != nil {
		t.Fatal(err)
	}
	want := []string{"x dir 0755 1:2", "x/f file 0600 1:2 F"}
	checkTree(t, rootfs, want)
}

// TestCopyExtractStaysInsideRootfs unpacks an archive whose link points out of the
// destination and which then writes through it: the write lands inside the rootfs.
func TestCopyExtractStaysInsideRootfs(t *testing.T) {
	from, root := t.TempDir(), t.TempDir()
	rootfs := filepath.Join(root, "rootfs")
	makeTree(t, rootfs, "etc/")
	archive := makeTar(t, time.Now(),
		tarEntry{name: "up", typ: tar.TypeSymlink, link: "../../../../../../../.."},
		tarEntry{name: "up/etc/owned", typ: tar.TypeReg, mode: 0o644, content: "O"},
		tarEntry{name: "hard", typ: tar.TypeLink, link: "up/etc/owned"},
	)
	if err := os.WriteFile(filepath.Join(from, "a.tar"), archive, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Copy(t.Context(), dirOf(t, from, hostfs.InRoot), []string{"a.tar"}, rootfs, "/dst/", "", CopyOptions{Extract: true}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"dst dir 0755 0:0",
		"dst/hard file 0644 0:0 O",
		"dst/up link 0:0 -> ../../../../../../../..",
		"etc dir 0755 0:0",
		"etc/owned file 0644 0:0 O",
	}
	checkTree(t, rootfs, want)
	if _, err := os.Lstat(filepath.Join(root, "etc")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("something was written next to the rootfs: %v", err)
	}
}

func TestCopyExtractHardLinkOutOfArchive(t *testing.T) {
	from, rootfs := t.TempDir(), t.TempDir()
	makeTree(t, rootfs, "etc/shadow=S")
	archive := makeTar(t, time.Now(), tarEntry{name: "h", typ: tar.TypeLink, link: "../etc/shadow"})
	if err := os.WriteFile(filepath.Join(from, "a.tar"), archive, 0o644); err != nil {
		t.Fatal(err)
	}
	// "../etc/shadow" names /dst/etc/shadow, which does not exist.
	err := Copy(t.Context(), dirOf(t, from, hostfs.InRoot), []string{"a.tar"}, rootfs, "/dst/", "", CopyOptions{Extract: true})
	if err == nil || !strings.Contains(err.Error(), `hard link to "/dst/etc/shadow"`) {
		t.Fatalf("Copy error = %v, want one about the hard link target", err)
	}
}

func TestCopyWithoutExtractOrNotAnArchive(t *testing.T) {
	archive := makeTar(t, time.Now(), tarEntry{name: "f", typ: tar.TypeReg, mode: 0o644, content: "F"})
	for _, tc := range []struct {
		name    string
		content []byte
		extract bool
	}{
		{"a tar without Extract", archive, false},
		{"a gzip file that holds no tar", gzipped(t, []byte("just text")), true},
		{"a text file", []byte("just text"), true},
		{"an empty file", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, rootfs := t.TempDir(), t.TempDir()
			if err := os.WriteFile(filepath.Join(from, "a.tar.gz"), tc.content, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := Copy(t.Context(), dirOf(t, from, hostfs.InRoot), []string{"a.tar.gz"}, rootfs, "/dst/", "", CopyOptions{Extract: tc.extract}); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(rootfs, "dst/a.tar.gz"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.content) {
				t.Error("the file was not copied as it is")
			}
		})
	}
}

// A cancelled build stops unpacking: before the next source, and while the archive is
// read.
func TestCopyExtractStopsWhenCancelled(t *testing.T) {
	from, rootfs := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(from, "a.tar"), testArchive(t, time.Now()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	d := dirOf(t, from, hostfs.InRoot)
	if err := Copy(ctx, d, []string{"a.tar"}, rootfs, "/dst/", "", CopyOptions{Extract: true}); !errors.Is(err, context.Canceled) {
		t.Errorf("Copy error = %v, want context.Canceled", err)
	}
	c := &copier{from: d, rootfs: rootfs, o: CopyOptions{Extract: true}}
	if ok, err := c.extract(ctx, "a.tar", "/dst"); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("extract = %v, %v, want false, context.Canceled", ok, err)
	}
	checkTree(t, rootfs, nil)
}

func TestCopyExtractXz(t *testing.T) {
	from, rootfs := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(from, "a.tar.xz"), []byte("\xfd7zXZ\x00rest"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Copy(t.Context(), dirOf(t, from, hostfs.InRoot), []string{"a.tar.xz"}, rootfs, "/dst/", "", CopyOptions{Extract: true})
	if err == nil || !strings.Contains(err.Error(), "xz archives are not supported") {
		t.Fatalf("Copy error = %v, want one saying xz is not supported", err)
	}
}

func TestIsURL(t *testing.T) {
	for src, want := range map[string]bool{
		"http://example.com/a.tar":  true,
		"https://example.com/a.tar": true,
		"ftp://example.com/a":       false,
		"a.txt":                     false,
		"/http://x":                 false,
		"git@github.com:a/b.git":    false,
	} {
		if got := IsURL(src); got != want {
			t.Errorf("IsURL(%q) = %v, want %v", src, got, want)
		}
	}
}

func TestFetch(t *testing.T) {
	lastModified := time.Date(2015, 10, 21, 7, 28, 0, 0, time.UTC)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/files/tool.sh":
			w.Header().Set("Last-Modified", lastModified.Format(http.TimeFormat))
			w.Write([]byte("#!/bin/sh\n"))
		case "/":
			w.Write([]byte("index"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	t.Run("a file is named after the URL path and gets its Last-Modified time", func(t *testing.T) {
		dir := t.TempDir()
		got, err := Fetch(ctx, srv.URL+"/files/tool.sh?v=1", dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(dir, "tool.sh"); got != want {
			t.Errorf("Fetch = %q, want %q", got, want)
		}
		checkTree(t, dir, []string{"tool.sh file 0600 0:0 #!/bin/sh\n"})
		fi, err := os.Stat(got)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(lastModified) {
			t.Errorf("mtime %v, want %v", fi.ModTime(), lastModified)
		}
	})

	t.Run("a URL without a path names the file download", func(t *testing.T) {
		dir := t.TempDir()
		got, err := Fetch(ctx, srv.URL, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(dir, "download"); got != want {
			t.Errorf("Fetch = %q, want %q", got, want)
		}
	})

	t.Run("an HTTP error names the URL and the status", func(t *testing.T) {
		dir := t.TempDir()
		u := srv.URL + "/missing.tar"
		_, err := Fetch(ctx, u, dir, nil)
		if err == nil || !strings.Contains(err.Error(), u) || !strings.Contains(err.Error(), "404 Not Found") {
			t.Fatalf("Fetch error = %v, want one naming %q and 404 Not Found", err, u)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("Fetch left %d files behind", len(entries))
		}
	})

	t.Run("an unreachable server", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		u := "http://" + l.Addr().String() + "/a.tar"
		l.Close()
		_, err = Fetch(ctx, u, t.TempDir(), nil)
		if err == nil || !strings.Contains(err.Error(), u) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("Fetch error = %v, want one naming %q and the refused connection", err, u)
		}
	})

	t.Run("a cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := Fetch(ctx, srv.URL+"/files/tool.sh", t.TempDir(), nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Fetch error = %v, want context.Canceled", err)
		}
	})

	t.Run("not an http URL", func(t *testing.T) {
		_, err := Fetch(ctx, "ftp://example.com/a", t.TempDir(), nil)
		if err == nil || !strings.Contains(err.Error(), `"ftp://example.com/a"`) {
			t.Fatalf("Fetch error = %v, want one naming the URL", err)
		}
	})
}
