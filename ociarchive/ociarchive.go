package ociarchive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specsgo "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// File is one entry of the image's single layer.
type File struct {
	// Path inside the image, absolute ("/bin/sh").
	Path string
	// Mode holds the permission bits and the type: fs.ModeDir for a directory,
	// fs.ModeSymlink for a symlink (Linkname is its target); otherwise a regular file.
	Mode     fs.FileMode
	Data     []byte
	Linkname string
	UID, GID int
}

// Image is what Write packs.
type Image struct {
	// Name is the reference the archive carries, e.g. "docker.io/library/busybox:latest".
	Name   string
	Config ocispec.ImageConfig
	Files  []File
	// Healthcheck is written as Docker writes a Dockerfile HEALTHCHECK: the field
	// config.Healthcheck of the image config (durations in nanoseconds).
	Healthcheck *Healthcheck
}

// Healthcheck is Docker's image-config health check.
type Healthcheck struct {
	Test        []string      `json:"Test"`
	Interval    time.Duration `json:"Interval,omitempty"`
	Timeout     time.Duration `json:"Timeout,omitempty"`
	StartPeriod time.Duration `json:"StartPeriod,omitempty"`
	Retries     int           `json:"Retries,omitempty"`
}

// epoch keeps archives reproducible: every entry and the config carry this time.
var epoch = time.Unix(0, 0).UTC()

// Write writes img as an OCI image layout tar to w.
func Write(w io.Writer, img Image) error {
	if img.Name == "" {
		return errors.New("write image archive: no name")
	}
	layer, diffID, err := layerTar(img.Files)
	if err != nil {
		return fmt.Errorf("write image archive %s: %w", img.Name, err)
	}
	platform := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	cfgJSON, err := configJSON(img, diffID)
	if err != nil {
		return err
	}
	cfgDesc := descriptor(ocispec.MediaTypeImageConfig, cfgJSON)
	layerDesc := descriptor(ocispec.MediaTypeImageLayerGzip, layer)
	manifest := ocispec.Manifest{
		Versioned: specsgo.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	manifestDesc := descriptor(ocispec.MediaTypeImageManifest, manifestJSON)
	manifestDesc.Platform = &platform
	manifestDesc.Annotations = map[string]string{
		"io.containerd.image.name": img.Name,
		ocispec.AnnotationRefName:  refName(img.Name),
	}
	index := ocispec.Index{
		Versioned: specsgo.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	layoutJSON, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}
	// docker load reads manifest.json; containerd's importer reads index.json.
	dockerJSON, err := json.Marshal([]struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{
		Config:   blobPath(cfgDesc.Digest),
		RepoTags: []string{img.Name},
		Layers:   []string{blobPath(layerDesc.Digest)},
	}})
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	for _, e := range []struct {
		name string
		data []byte
	}{
		{ocispec.ImageLayoutFile, layoutJSON},
		{"index.json", indexJSON},
		{"manifest.json", dockerJSON},
		{blobPath(cfgDesc.Digest), cfgJSON},
		{blobPath(layerDesc.Digest), layer},
		{blobPath(manifestDesc.Digest), manifestJSON},
	} {
		if err := writeEntry(tw, &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}, e.data); err != nil {
			return fmt.Errorf("write image archive %s: %w", img.Name, err)
		}
	}
	return tw.Close()
}

// configJSON is the image config blob of img with one layer: the OCI config, plus
// Docker's config.Healthcheck when img has one.
func configJSON(img Image, diffID digest.Digest) ([]byte, error) {
	created := epoch
	data, err := json.Marshal(ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   img.Config,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	})
	if err != nil || img.Healthcheck == nil {
		return data, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	cfg, _ := m["config"].(map[string]any)
	if cfg == nil {
		cfg = map[string]any{}
		m["config"] = cfg
	}
	cfg["Healthcheck"] = img.Healthcheck
	return json.Marshal(m)
}

// refName is the tag part of a reference, as `org.opencontainers.image.ref.name` wants it.
func refName(name string) string {
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[i+1:]
	}
	return "latest"
}

func blobPath(d digest.Digest) string {
	return path.Join("blobs", d.Algorithm().String(), d.Encoded())
}

func descriptor(mediaType string, data []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
}

// layerTar packs files into a gzip-compressed tar, returning it and the digest of the
// uncompressed tar (the layer's diff id). Parent directories are added as needed.
func layerTar(files []File) ([]byte, digest.Digest, error) {
	byPath := map[string]File{}
	for _, f := range files {
		p := path.Clean("/" + f.Path)
		if p == "/" {
			return nil, "", fmt.Errorf("file %q: not a path below /", f.Path)
		}
		f.Path = p
		byPath[p] = f
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if _, ok := byPath[dir]; !ok {
				byPath[dir] = File{Path: dir, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	sum := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(zw, sum))
	for _, p := range paths {
		f := byPath[p]
		h := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Mode:    tarMode(f.Mode),
			Uid:     f.UID,
			Gid:     f.GID,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		switch {
		case f.Mode.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		case f.Mode&fs.ModeSymlink != 0:
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Linkname
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := writeEntry(tw, h, f.Data); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gz.Bytes(), digest.NewDigest(digest.SHA256, sum), nil
}

// tarMode is the mode field of a tar header for m: the permission bits and the setuid,
// setgid and sticky bits (a sticky /tmp, a setuid su), which Perm alone drops.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

func writeEntry(tw *tar.Writer, h *tar.Header, data []byte) error {
	if h.ModTime.IsZero() {
		h.ModTime = epoch
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if h.Typeflag == tar.TypeReg {
		_, err := tw.Write(data)
		return err
	}
	return nil
}

// BusyboxPath is where Debian's busybox-static package installs the static binary.
const BusyboxPath = "/bin/busybox"

// Busybox returns the files of a minimal image around the static busybox binary at bin:
// /bin/busybox, a symlink in /bin for each applet it lists, /etc/passwd and /etc/group with
// root and nobody, and /tmp, /root, /proc, /sys and /dev.
func Busybox(bin string) ([]File, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("read busybox (apt-get install busybox-static): %w", err)
	}
	out, err := exec.Command(bin, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets of %s: %w", bin, err)
	}
	files := []File{
		{Path: "/bin/busybox", Mode: 0o755, Data: data},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "/root", Mode: fs.ModeDir | 0o700},
		{Path: "/proc", Mode: fs.ModeDir | 0o555},
		{Path: "/sys", Mode: fs.ModeDir | 0o555},
		{Path: "/dev", Mode: fs.ModeDir | 0o755},
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		files = append(files, File{Path: "/bin/" + applet, Mode: fs.ModeSymlink | 0o777, Linkname: "busybox"})
	}
	return files, nil
}

// BusyboxConfig is the image config of the busybox test image.
func BusyboxConfig() ocispec.ImageConfig {
	return ocispec.ImageConfig{
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd: []string{"sh"},
	}
}

// WriteDockerSave writes img in the layout `docker save` wrote before it adopted OCI:
// manifest.json, the config as <hex>.json and the layer, uncompressed, as
// <hex>/layer.tar; no index.json and no oci-layout. Tests use it to prove that such
// archives load too.
func WriteDockerSave(w io.Writer, img Image) error {
	if img.Name == "" {
		return errors.New("write docker save archive: no name")
	}
	gz, diffID, err := layerTar(img.Files)
	if err != nil {
		return fmt.Errorf("write docker save archive %s: %w", img.Name, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return err
	}
	layer, err := io.ReadAll(zr)
	if err != nil {
		return err
	}
	cfgJSON, err := configJSON(img, diffID)
	if err != nil {
		return err
	}
	cfgName := digest.FromBytes(cfgJSON).Encoded() + ".json"
	layerName := diffID.Encoded() + "/layer.tar"
	manifestJSON, err := json.Marshal([]struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: cfgName, RepoTags: []string{img.Name}, Layers: []string{layerName}}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	if err := writeEntry(tw, &tar.Header{Name: diffID.Encoded() + "/", Mode: 0o755, Typeflag: tar.TypeDir}, nil); err != nil {
		return err
	}
	for _, e := range []struct {
		name string
		data []byte
	}{
		{"manifest.json", manifestJSON},
		{cfgName, cfgJSON},
		{layerName, layer},
	} {
		if err := writeEntry(tw, &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}, e.data); err != nil {
			return fmt.Errorf("write docker save archive %s: %w", img.Name, err)
		}
	}
	return tw.Close()
}

// WriteFile writes img as an OCI image archive to the file at path, as Write does.
func WriteFile(path string, img Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
