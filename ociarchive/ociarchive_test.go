package ociarchive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// testImage has a file deep below directories it does not list, so that Write must add
// them, and the special mode bits an image needs (a sticky /tmp, a setuid binary).
func testImage() Image {
	return Image{
		Name: "docker.io/library/crunci-test:1.0",
		Config: ocispec.ImageConfig{
			Env:        []string{"PATH=/bin"},
			Entrypoint: []string{"/bin/sh"},
			Cmd:        []string{"-c", "true"},
			WorkingDir: "/",
		},
		Files: []File{
			{Path: "/usr/local/bin/tool", Mode: 0o755, Data: []byte("#!/bin/sh\necho tool\n")},
			{Path: "/bin/sh", Mode: fs.ModeSymlink | 0o777, Linkname: "busybox"},
			{Path: "/bin/busybox", Mode: 0o755, Data: []byte("not really busybox")},
			{Path: "/bin/su", Mode: fs.ModeSetuid | 0o755, Data: []byte("su")},
			{Path: "etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/sh\n")},
			{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
			{Path: "/home/app/", Mode: fs.ModeDir | 0o700, UID: 1000, GID: 1000},
			{Path: "/srv/shared", Mode: fs.ModeDir | fs.ModeSetgid | 0o775},
		},
	}
}

// readTar returns the regular files of a tar by name, failing on anything else or on a
// name seen twice, and the names in order.
func readTar(t *testing.T, r io.Reader) (map[string][]byte, []string) {
	t.Helper()
	files := map[string][]byte{}
	var names []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, names
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			t.Fatalf("%s: type %c, want a regular file", h.Name, h.Typeflag)
		}
		if _, dup := files[h.Name]; dup {
			t.Fatalf("%s: twice in the archive", h.Name)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = data
		names = append(names, h.Name)
	}
}

func unmarshal(t *testing.T, name string, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// blob returns the blob of d, checking its size.
func blob(t *testing.T, files map[string][]byte, d ocispec.Descriptor) []byte {
	t.Helper()
	name := "blobs/sha256/" + d.Digest.Encoded()
	data, ok := files[name]
	if !ok {
		t.Fatalf("%s: missing, named by a %s descriptor", name, d.MediaType)
	}
	if int64(len(data)) != d.Size {
		t.Errorf("%s: %d bytes, descriptor says %d", name, len(data), d.Size)
	}
	return data
}

// octal is a tar mode that prints as one.
type octal int64

func (o octal) String() string { return fmt.Sprintf("%#o", int64(o)) }

// layerEntry is what TestWrite compares of one layer entry.
type layerEntry struct {
	Name     string
	Type     byte
	Mode     octal
	UID, GID int
	Linkname string
	Data     string
	ModTime  time.Time
}

func TestWrite(t *testing.T) {
	img := testImage()
	var buf bytes.Buffer
	if err := Write(&buf, img); err != nil {
		t.Fatalf("Write: %v", err)
	}
	files, names := readTar(t, bytes.NewReader(buf.Bytes()))

	t.Run("the layout files come first", func(t *testing.T) {
		if diff := cmp.Diff([]string{"oci-layout", "index.json", "manifest.json"}, names[:3]); diff != "" {
			t.Errorf("first entries (-want +got):\n%s", diff)
		}
		var layout ocispec.ImageLayout
		unmarshal(t, "oci-layout", files["oci-layout"], &layout)
		if layout.Version != ocispec.ImageLayoutVersion {
			t.Errorf("oci-layout version %q, want %q", layout.Version, ocispec.ImageLayoutVersion)
		}
	})

	t.Run("every blob is named by its sha256", func(t *testing.T) {
		n := 0
		for name, data := range files {
			enc, ok := strings.CutPrefix(name, "blobs/sha256/")
			if !ok {
				continue
			}
			n++
			sum := sha256.Sum256(data)
			if got := hex.EncodeToString(sum[:]); got != enc {
				t.Errorf("%s: sha256 is %s", name, got)
			}
		}
		if n != 3 {
			t.Errorf("%d blobs, want 3 (config, layer, manifest)", n)
		}
		if len(files) != n+3 {
			t.Errorf("entries %v: want the 3 layout files and the blobs only", names)
		}
	})

	var index ocispec.Index
	unmarshal(t, "index.json", files["index.json"], &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json has %d manifests, want 1", len(index.Manifests))
	}
	md := index.Manifests[0]

	t.Run("index.json names the image", func(t *testing.T) {
		if index.SchemaVersion != 2 || index.MediaType != ocispec.MediaTypeImageIndex {
			t.Errorf("index.json: schema %d, media type %q", index.SchemaVersion, index.MediaType)
		}
		if md.MediaType != ocispec.MediaTypeImageManifest {
			t.Errorf("manifest descriptor media type %q", md.MediaType)
		}
		want := map[string]string{
			"io.containerd.image.name": img.Name,
			ocispec.AnnotationRefName:  "1.0",
		}
		if diff := cmp.Diff(want, md.Annotations); diff != "" {
			t.Errorf("manifest annotations (-want +got):\n%s", diff)
		}
		wantPlatform := &ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
		if diff := cmp.Diff(wantPlatform, md.Platform); diff != "" {
			t.Errorf("manifest platform (-want +got):\n%s", diff)
		}
	})

	var manifest ocispec.Manifest
	unmarshal(t, "manifest", blob(t, files, md), &manifest)
	if len(manifest.Layers) != 1 {
		t.Fatalf("manifest has %d layers, want 1", len(manifest.Layers))
	}
	cfgData := blob(t, files, manifest.Config)
	layer := blob(t, files, manifest.Layers[0])

	t.Run("the manifest points at the config and one gzip layer", func(t *testing.T) {
		if manifest.SchemaVersion != 2 || manifest.MediaType != ocispec.MediaTypeImageManifest {
			t.Errorf("manifest: schema %d, media type %q", manifest.SchemaVersion, manifest.MediaType)
		}
		if manifest.Config.MediaType != ocispec.MediaTypeImageConfig {
			t.Errorf("config media type %q", manifest.Config.MediaType)
		}
		if manifest.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip {
			t.Errorf("layer media type %q", manifest.Layers[0].MediaType)
		}
	})

	t.Run("manifest.json is docker save's form", func(t *testing.T) {
		var docker []struct {
			Config   string
			RepoTags []string
			Layers   []string
		}
		unmarshal(t, "manifest.json", files["manifest.json"], &docker)
		want := []struct {
			Config   string
			RepoTags []string
			Layers   []string
		}{{
			Config:   "blobs/sha256/" + manifest.Config.Digest.Encoded(),
			RepoTags: []string{img.Name},
			Layers:   []string{"blobs/sha256/" + manifest.Layers[0].Digest.Encoded()},
		}}
		if diff := cmp.Diff(want, docker); diff != "" {
			t.Errorf("manifest.json (-want +got):\n%s", diff)
		}
	})

	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("layer: %v", err)
	}

	t.Run("the config carries the image config and the layer's diff id", func(t *testing.T) {
		var cfg ocispec.Image
		unmarshal(t, "config", cfgData, &cfg)
		if diff := cmp.Diff(img.Config, cfg.Config); diff != "" {
			t.Errorf("config (-want +got):\n%s", diff)
		}
		if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
			t.Errorf("config platform %s/%s, want linux/%s", cfg.OS, cfg.Architecture, runtime.GOARCH)
		}
		if cfg.Created == nil || !cfg.Created.Equal(time.Unix(0, 0)) {
			t.Errorf("config created %v, want the epoch", cfg.Created)
		}
		want := ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(raw)}}
		if diff := cmp.Diff(want, cfg.RootFS); diff != "" {
			t.Errorf("rootfs (-want +got):\n%s", diff)
		}
	})

	t.Run("the layer holds the files, their parents and their modes, sorted", func(t *testing.T) {
		var got []layerEntry
		tr := tar.NewReader(bytes.NewReader(raw))
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, layerEntry{Name: h.Name, Type: h.Typeflag, Mode: octal(h.Mode), UID: h.Uid, GID: h.Gid, Linkname: h.Linkname, Data: string(data), ModTime: h.ModTime.UTC()})
		}
		epoch := time.Unix(0, 0).UTC()
		dir := func(name string, mode octal) layerEntry {
			return layerEntry{Name: name, Type: tar.TypeDir, Mode: mode, ModTime: epoch}
		}
		reg := func(name string, mode octal, data string) layerEntry {
			return layerEntry{Name: name, Type: tar.TypeReg, Mode: mode, Data: data, ModTime: epoch}
		}
		home := dir("home/app/", 0o700)
		home.UID, home.GID = 1000, 1000
		want := []layerEntry{
			dir("bin/", 0o755),
			reg("bin/busybox", 0o755, "not really busybox"),
			{Name: "bin/sh", Type: tar.TypeSymlink, Mode: 0o777, Linkname: "busybox", ModTime: epoch},
			reg("bin/su", 0o4755, "su"),
			dir("etc/", 0o755),
			reg("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n"),
			dir("home/", 0o755),
			home,
			dir("srv/", 0o755),
			dir("srv/shared/", 0o2775),
			dir("tmp/", 0o1777),
			dir("usr/", 0o755),
			dir("usr/local/", 0o755),
			dir("usr/local/bin/", 0o755),
			reg("usr/local/bin/tool", 0o755, "#!/bin/sh\necho tool\n"),
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("layer (-want +got):\n%s", diff)
		}
	})

	t.Run("the archive is reproducible", func(t *testing.T) {
		var again bytes.Buffer
		if err := Write(&again, testImage()); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if !bytes.Equal(buf.Bytes(), again.Bytes()) {
			t.Errorf("two writes of one image differ (%d and %d bytes)", buf.Len(), again.Len())
		}
	})
}

func TestWriteErrors(t *testing.T) {
	tests := []struct {
		name    string
		img     Image
		wantErr string
	}{
		{name: "an image needs a name", img: Image{Files: []File{{Path: "/x"}}}, wantErr: "write image archive: no name"},
		{name: "the root is not a file", img: Image{Name: "x", Files: []File{{Path: "/", Mode: fs.ModeDir}}}, wantErr: `write image archive x: file "/": not a path below /`},
		{name: "a path that cleans to the root is not a file", img: Image{Name: "x", Files: []File{{Path: "/a/.."}}}, wantErr: `write image archive x: file "/a/..": not a path below /`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Write(io.Discard, tt.img)
			if err == nil {
				t.Fatalf("Write succeeded, want error %q", tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Fatalf("Write error = %q, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestRefName(t *testing.T) {
	tests := []struct {
		name string
		ref  string
		want string
	}{
		{name: "a tag is the ref name", ref: "docker.io/library/busybox:1.36", want: "1.36"},
		{name: "no tag is latest", ref: "docker.io/library/busybox", want: "latest"},
		{name: "a registry port is not a tag", ref: "localhost:5000/busybox", want: "latest"},
		{name: "a tag after a registry port", ref: "localhost:5000/busybox:v1", want: "v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := refName(tt.ref); got != tt.want {
				t.Errorf("refName(%q) = %q, want %q", tt.ref, got, tt.want)
			}
		})
	}
}

func TestBusybox(t *testing.T) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("no static busybox at %s (apt-get install busybox-static): %v", BusyboxPath, err)
	}
	files, err := Busybox(BusyboxPath)
	if err != nil {
		t.Fatalf("Busybox: %v", err)
	}
	byPath := map[string]File{}
	for _, f := range files {
		if _, dup := byPath[f.Path]; dup {
			t.Errorf("%s: listed twice", f.Path)
		}
		byPath[f.Path] = f
	}

	sh, ok := byPath["/bin/sh"]
	if !ok {
		t.Fatalf("no /bin/sh among %d files", len(files))
	}
	if sh.Mode&fs.ModeSymlink == 0 || sh.Linkname != "busybox" {
		t.Errorf("/bin/sh: mode %v, link %q; want a symlink to busybox", sh.Mode, sh.Linkname)
	}
	bb := byPath["/bin/busybox"]
	if !bb.Mode.IsRegular() || bb.Mode.Perm() != 0o755 || len(bb.Data) == 0 {
		t.Errorf("/bin/busybox: mode %v, %d bytes; want an executable file", bb.Mode, len(bb.Data))
	}
	if tmp := byPath["/tmp"]; tmp.Mode != fs.ModeDir|fs.ModeSticky|0o777 {
		t.Errorf("/tmp: mode %v, want a sticky world-writable directory", tmp.Mode)
	}
	for _, p := range []string{"/etc/passwd", "/etc/group", "/root", "/proc", "/sys", "/dev"} {
		if _, ok := byPath[p]; !ok {
			t.Errorf("%s: missing", p)
		}
	}
	for _, f := range files {
		if f.Mode&fs.ModeSymlink != 0 && (path.Dir(f.Path) != "/bin" || f.Linkname != "busybox") {
			t.Errorf("%s: link to %q, want applet links in /bin to busybox", f.Path, f.Linkname)
		}
	}

	img := Image{Name: "docker.io/library/busybox:latest", Config: BusyboxConfig(), Files: files}
	if err := Write(io.Discard, img); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func TestBusyboxMissing(t *testing.T) {
	_, err := Busybox(t.TempDir() + "/busybox")
	if err == nil || !strings.Contains(err.Error(), "apt-get install busybox-static") {
		t.Errorf("Busybox of a missing binary: error %v, want one that says apt-get install busybox-static", err)
	}
}
