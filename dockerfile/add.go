package dockerfile

import (
	"archive/tar"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/continuity/fs"
	"github.com/crun-ci/crun-ci/network"
	"golang.org/x/sys/unix"
)

// fetchTimeout bounds one download of Fetch.
const fetchTimeout = 60 * time.Second

// IsURL reports whether an ADD source is a remote URL (http:// or https://). Docker
// does not unpack what it downloads: copy a fetched file without CopyOptions.Extract.
func IsURL(src string) bool {
	return strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
}

// Fetch downloads an ADD source URL (http or https) into the directory dir and returns
// the path of the file. The file is named after the last element of the URL path
// ("download" if there is none), has mode 0600, and has the Last-Modified time of the
// response as its modification time when the server sends one. A download that takes
// more than a minute fails, as does one whose ctx is cancelled. dial, when not nil,
// makes the connections (from the build's network namespace; see pod.Pod.Dial), and no
// proxy of crun-ci's environment is used then.
func Fetch(ctx context.Context, rawURL, dir string, dial network.DialFunc) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("fetch %q: not an http or https URL", rawURL)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return "", fmt.Errorf("fetch %q: %w", rawURL, err)
	}
	client := http.DefaultClient
	if dial != nil {
		tr := &http.Transport{DialContext: dial, ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second}
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return "", fmt.Errorf("fetch %q: %w", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fmt.Errorf("fetch %q: HTTP status %s", rawURL, resp.Status)
	}
	name := filepath.Join(dir, fetchName(u))
	if err := writeDownload(name, resp); err != nil {
		return "", fmt.Errorf("fetch %q: %w", rawURL, err)
	}
	return name, nil
}

// fetchName returns the file name of a download from u: the last element of its path,
// or "download".
func fetchName(u *url.URL) string {
	name := path.Base(u.Path)
	if name == "" || name == "." || name == ".." || name == "/" {
		return "download"
	}
	return name
}

// writeDownload writes the body of resp to a new file at name, with mode 0600 and the
// Last-Modified time of resp. A partial file is removed.
func writeDownload(name string, resp *http.Response) (retErr error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, os.Remove(name))
		}
	}()
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if err := os.Chmod(name, 0o600); err != nil {
		return err
	}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			return os.Chtimes(name, t, t)
		}
	}
	return nil
}

// Magic numbers of the compressed formats that Docker unpacks and containerd's
// compression package does not tell (it tells gzip and zstd).
var (
	magicBzip2 = []byte{'B', 'Z', 'h'}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
)

// decompress returns a reader of the decompressed content of the file f, read from its
// start and told by its first bytes as Docker tells it: gzip and zstd are read by
// containerd's compression package, bzip2 by compress/bzip2, xz by the xz command (see
// unxz); anything else is returned as it is. Close releases what the decompressor holds
// (goroutines, the xz process).
func decompress(ctx context.Context, f *os.File) (io.ReadCloser, error) {
	head := make([]byte, len(magicXz))
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch head = head[:n]; {
	case bytes.HasPrefix(head, magicBzip2):
		return io.NopCloser(bzip2.NewReader(f)), nil
	case bytes.HasPrefix(head, magicXz):
		return unxz(ctx, f)
	}
	return compression.DecompressStream(f)
}

// xzWaitDelay bounds how long unxz waits for the end of xz's error output once xz has
// exited.
const xzWaitDelay = 5 * time.Second

// unxz returns a reader of what the xz command, run as Docker runs it (xz -d -c -q),
// writes when it decompresses in. xz reads in itself, so no goroutine of crun-ci does,
// and none can be left blocked on it. A read fails with xz's message when xz fails (a
// truncated or broken stream), and with ctx's error once ctx is done: xz is killed
// then. Close kills xz if it is still running and waits for it.
func unxz(ctx context.Context, in *os.File) (io.ReadCloser, error) {
	cmd := exec.CommandContext(ctx, "xz", "-d", "-c", "-q")
	cmd.Stdin = in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = xzWaitDelay
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("xz archive: %w (the xz command is in Debian's xz-utils)", err)
		}
		return nil, fmt.Errorf("xz archive: %w", err)
	}
	return &xzStream{ctx: ctx, cmd: cmd, out: out, stderr: &stderr}, nil
}

// xzStream is the output of a running xz process.
type xzStream struct {
	ctx    context.Context
	cmd    *exec.Cmd
	out    io.Reader
	stderr *bytes.Buffer
	// done is set once the process has been waited for; err is then what reads return.
	done bool
	err  error
}

var _ io.ReadCloser = (*xzStream)(nil)

func (x *xzStream) Read(p []byte) (int, error) {
	if x.done {
		return 0, x.err
	}
	n, err := x.out.Read(p)
	if errors.Is(err, io.EOF) {
		// xz closed its output: it has exited.
		x.done, x.err = true, io.EOF
		if werr := x.cmd.Wait(); x.ctx.Err() != nil {
			x.err = x.ctx.Err()
		} else if werr != nil {
			x.err = fmt.Errorf("xz: %w", werr)
			if msg := strings.TrimSpace(x.stderr.String()); msg != "" {
				x.err = fmt.Errorf("%s (%w)", msg, werr) // "xz: (stdin): Unexpected end of input (exit status 1)"
			}
		}
		return n, x.err
	}
	return n, err
}

func (x *xzStream) Close() error {
	if x.done {
		return nil
	}
	x.done, x.err = true, os.ErrClosed
	// What is still unread is not wanted: the exit status says nothing then.
	x.cmd.Process.Kill()
	x.cmd.Wait()
	return nil
}

// extract unpacks the file src (below the copier's Dir) into the container directory
// destC if it is a tar archive, plain or compressed, and reports whether it was one.
//
// Entry names are resolved inside destC ("../x" and "/x" land in destC/x); links
// within the archive and in the image are resolved as the container sees them, so
// nothing is written outside rootfs. Once ctx is done, reading the archive fails with
// ctx's error.
func (c *copier) extract(ctx context.Context, src, destC string) (bool, error) {
	f, err := c.from.Open(src)
	if err != nil {
		return false, err
	}
	defer f.Close()
	r, err := decompress(ctx, f)
	if err != nil {
		return false, fmt.Errorf("unpack: %w", err)
	}
	defer r.Close()
	tr := tar.NewReader(ctxReader{ctx, r})
	hdr, err := tr.Next()
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		// Like Docker: what does not start with a tar header is copied as a file.
		return false, nil
	}
	if err := c.mkdirAll(destC); err != nil {
		return true, err
	}
	c.unpacking = true
	defer func() { c.unpacking = false }()
	for ; err == nil; hdr, err = tr.Next() {
		if err := c.extractEntry(tr, hdr, destC); err != nil {
			return true, fmt.Errorf("unpack %q: %w", hdr.Name, err)
		}
	}
	if !errors.Is(err, io.EOF) {
		return true, fmt.Errorf("unpack: %w", err)
	}
	return true, nil
}

// ctxReader reads from r until ctx is done, and then fails with ctx's error.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// extractEntry writes one archive entry below the container directory destC.
func (c *copier) extractEntry(tr *tar.Reader, hdr *tar.Header, destC string) error {
	name := path.Clean("/" + hdr.Name)
	if name == "/" {
		return nil // the archive's root: destC stays as it is
	}
	p := path.Join(destC, name)
	if err := c.mkdirAll(path.Dir(p)); err != nil {
		return err
	}
	dst, err := c.entryPath(p)
	if err != nil {
		return err
	}
	fi := hdr.FileInfo()
	m := meta{mode: fi.Mode(), uid: hdr.Uid, gid: hdr.Gid, mtime: hdr.ModTime}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return c.makeDir(dst, m)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		return c.makeFile(dst, tr, m)
	case tar.TypeSymlink:
		return c.makeSymlink(dst, hdr.Linkname, m)
	case tar.TypeLink:
		return c.makeHardlink(dst, path.Join(destC, path.Clean("/"+hdr.Linkname)))
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return c.makeSpecial(dst, m, unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	default: // headers of extended attributes and the like: nothing to write
		return nil
	}
}

// makeHardlink creates at dst a hard link to the file at the container path targetC,
// replacing what is at dst.
func (c *copier) makeHardlink(dst, targetC string) error {
	parent, err := fs.RootPath(c.rootfs, path.Dir(targetC))
	if err != nil {
		return err
	}
	target := filepath.Join(parent, path.Base(targetC))
	fi, err := os.Lstat(target)
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", targetC, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("hard link to %q: is a directory", targetC)
	}
	if err := replace(dst); err != nil {
		return err
	}
	return os.Link(target, dst)
}
