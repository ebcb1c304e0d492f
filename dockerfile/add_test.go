package dockerfile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

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
func gzipped(t testing.TB, b []byte) []byte {
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

// bzipped returns b compressed by the bzip2 command.
func bzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	return compressedBy(t, b, "bzip2", "-c")
}

// xzed returns b compressed by the xz command.
func xzed(t testing.TB, b []byte) []byte {
	t.Helper()
	return compressedBy(t, b, "xz", "-c")
}

// compressedBy returns what the command name with args writes when it reads b, skipping
// the test without the command; in CI (CI set) its absence fails the test.
func compressedBy(t testing.TB, b []byte, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		msg := fmt.Sprintf("no %s command to make a %s archive with (scripts/setup.sh installs it)", name, name)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// zstded returns b compressed with zstd.
func zstded(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
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
		compress func(testing.TB, []byte) []byte
	}{
		{"a plain tar", func(_ testing.TB, b []byte) []byte { return b }},
		{"a gzip tar", gzipped},
		{"a bzip2 tar", bzipped},
		{"an xz tar", xzed},
		{"a zstd tar", zstded},
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
	text := []byte("just text")
	for _, tc := range []struct {
		name    string
		content func(*testing.T) []byte
		extract bool
	}{
		{"a tar without Extract", func(*testing.T) []byte { return archive }, false},
		{"a gzip file that holds no tar", func(t *testing.T) []byte { return gzipped(t, text) }, true},
		{"a bzip2 file that holds no tar", func(t *testing.T) []byte { return bzipped(t, text) }, true},
		{"an xz file that holds no tar", func(t *testing.T) []byte { return xzed(t, text) }, true},
		{"a zstd file that holds no tar", func(t *testing.T) []byte { return zstded(t, text) }, true},
		{"an xz file that is broken after its magic number", func(*testing.T) []byte { return []byte("\xfd7zXZ\x00rest") }, true},
		{"a text file", func(*testing.T) []byte { return text }, true},
		{"an empty file", func(*testing.T) []byte { return nil }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, rootfs := t.TempDir(), t.TempDir()
			content := tc.content(t)
			if err := os.WriteFile(filepath.Join(from, "a.tar.gz"), content, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := Copy(t.Context(), dirOf(t, from, hostfs.InRoot), []string{"a.tar.gz"}, rootfs, "/dst/", "", CopyOptions{Extract: tc.extract}); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(rootfs, "dst/a.tar.gz"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, content) {
				t.Error("the file was not copied as it is")
			}
		})
	}
}

// An archive cut short after its first entries is an error that says why, whatever
// its compression, not a file copied as it is.
func TestCopyExtractTruncated(t *testing.T) {
	// Incompressible and larger than a bzip2 block of bzip2 -1 (100 kB), so that the
	// first entry can be read and the cut falls inside the second.
	noise := make([]byte, 256<<10)
	rand.NewChaCha8([32]byte{}).Read(noise)
	archive := makeTar(t, time.Now(),
		tarEntry{name: "first", typ: tar.TypeReg, mode: 0o644, content: "1"},
		tarEntry{name: "noise", typ: tar.TypeReg, mode: 0o644, content: string(noise)},
	)
	for _, tc := range []struct {
		name     string
		compress func(testing.TB, []byte) []byte
		want     string
	}{
		{"a plain tar", func(_ testing.TB, b []byte) []byte { return b }, "unexpected EOF"},
		{"a gzip tar", gzipped, "unexpected EOF"},
		{"a bzip2 tar", func(t testing.TB, b []byte) []byte { return compressedBy(t, b, "bzip2", "-c", "-1") }, "unexpected EOF"},
		{"an xz tar", xzed, "xz: (stdin): Unexpected end of input (exit status 1)"},
		{"a zstd tar", zstded, "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, rootfs := t.TempDir(), t.TempDir()
			b := tc.compress(t, archive)
			if err := os.WriteFile(filepath.Join(from, "a.tar"), b[:len(b)/2], 0o644); err != nil {
				t.Fatal(err)
			}
			err := Copy(t.Context(), dirOf(t, from, hostfs.InRoot), []string{"a.tar"}, rootfs, "/dst/", "", CopyOptions{Extract: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Copy error = %v, want one with %q", err, tc.want)
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

func TestCopyExtractXzWithoutTheXzCommand(t *testing.T) {
	from, rootfs := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(from, "a.tar.xz"), []byte("\xfd7zXZ\x00rest"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	err := Copy(t.Context(), dirOf(t, from, hostfs.InRoot), []string{"a.tar.xz"}, rootfs, "/dst/", "", CopyOptions{Extract: true})
	if !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), `copy "a.tar.xz" to "/dst/": unpack: xz archive:`) || !strings.Contains(err.Error(), "xz-utils") {
		t.Fatalf("Copy error = %v, want one saying the xz command is missing", err)
	}
}

// openBytes returns a file, open for reading, that holds b.
func openBytes(t *testing.T, b []byte) *os.File {
	t.Helper()
	name := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// The xz process never outlives its use: a cancelled context kills it while it waits
// for input, and Close kills it in the middle of a stream.
func TestUnxz(t *testing.T) {
	data := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{1}).Read(data)
	stream := xzed(t, data)

	t.Run("a cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		// Half the stream, and the other half never comes: xz waits for input.
		in, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		defer w.Close()
		go w.Write(stream[:len(stream)/2])
		r, err := unxz(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := io.ReadFull(r, make([]byte, 1<<10)); err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(100*time.Millisecond, cancel)
		done := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, r)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("read error = %v, want context.Canceled", err)
			}
		case <-time.After(xzWaitDelay):
			t.Fatal("reading xz's output did not end after the context was cancelled")
		}
		if ps := r.(*xzStream).cmd.ProcessState; ps == nil || ps.Exited() {
			t.Errorf("xz state %v, want killed", ps)
		}
	})

	t.Run("Close in the middle of a stream", func(t *testing.T) {
		r, err := unxz(t.Context(), openBytes(t, stream))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(r, make([]byte, 1<<10)); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if ps := r.(*xzStream).cmd.ProcessState; ps == nil {
			t.Error("xz was not waited for")
		}
		if _, err := r.Read(make([]byte, 1)); !errors.Is(err, os.ErrClosed) {
			t.Errorf("read after Close: %v, want os.ErrClosed", err)
		}
	})

	t.Run("the whole stream", func(t *testing.T) {
		r, err := unxz(t.Context(), openBytes(t, stream))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Error("xz's output is not what was compressed")
		}
	})
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
