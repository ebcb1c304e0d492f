package dockerfile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/crun-ci/crun-ci/snapshot"
)

// The labels by which containerd's garbage collector sees what an object refers to.
const (
	gcConfig   = "containerd.io/gc.ref.content.config"
	gcLayer    = "containerd.io/gc.ref.content.l."
	gcSnapshot = "containerd.io/gc.ref.snapshot." + snapshot.Snapshotter
)

func goarch() string { return runtime.GOARCH }

// readImage reads the manifest (for this platform) and config of the image whose root
// descriptor is target.
func readImage(ctx context.Context, c *client.Client, target ocispec.Descriptor) (ocispec.Manifest, dockerspec.DockerOCIImage, ocispec.Descriptor, error) {
	cs := c.ContentStore()
	m, err := images.Manifest(ctx, cs, target, platforms.Default())
	if err != nil {
		return ocispec.Manifest{}, dockerspec.DockerOCIImage{}, ocispec.Descriptor{}, err
	}
	blob, err := content.ReadBlob(ctx, cs, m.Config)
	if err != nil {
		return ocispec.Manifest{}, dockerspec.DockerOCIImage{}, ocispec.Descriptor{}, err
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(blob, &cfg); err != nil {
		return ocispec.Manifest{}, dockerspec.DockerOCIImage{}, ocispec.Descriptor{}, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return ocispec.Manifest{}, dockerspec.DockerOCIImage{}, ocispec.Descriptor{}, fmt.Errorf("config %s: %d layers in the config, %d in the manifest", m.Config.Digest, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	return m, cfg, m.Config, nil
}

// writeManifest writes the config and manifest of s into the content store, labelled so
// that the manifest keeps config and layers, and the config keeps the snapshot of the
// layers, from the garbage collector. It returns the manifest's descriptor.
func (x *run) writeManifest(ctx context.Context, s *state) (ocispec.Descriptor, error) {
	cfg := cloneConfig(s.config)
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: s.diffIDs}
	if cfg.RootFS.DiffIDs == nil {
		cfg.RootFS.DiffIDs = []digest.Digest{}
	}
	now := time.Now().UTC()
	cfg.Created = &now
	if cfg.OS == "" {
		cfg.OS, cfg.Architecture = "linux", goarch()
	}
	cfgData, err := json.Marshal(cfg)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfgData), Size: int64(len(cfgData))}
	cfgLabels := map[string]string{}
	if chain := s.chainID(); chain != "" {
		cfgLabels[gcSnapshot] = chain.String()
	}
	if err := x.writeBlob(ctx, cfgData, cfgDesc, cfgLabels); err != nil {
		return ocispec.Descriptor{}, err
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    s.layers,
	}
	if m.Layers == nil {
		m.Layers = []ocispec.Descriptor{}
	}
	mData, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	mDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mData), Size: int64(len(mData))}
	if err := x.writeBlob(ctx, mData, mDesc, manifestLabels(m)); err != nil {
		return ocispec.Descriptor{}, err
	}
	return mDesc, nil
}

// writeBlob writes data as desc into the content store with labels, setting the labels
// also when the blob was there already.
func (x *run) writeBlob(ctx context.Context, data []byte, desc ocispec.Descriptor, labels map[string]string) error {
	cs := x.c.ContentStore()
	if err := content.WriteBlob(ctx, cs, "crun-ci-"+desc.Digest.String(), bytes.NewReader(data), desc, content.WithLabels(labels)); err != nil {
		return fmt.Errorf("write %s: %w", desc.Digest, err)
	}
	return setLabels(ctx, cs, desc.Digest, labels)
}

// manifestLabels are the labels by which a manifest keeps its config and layers from
// the garbage collector.
func manifestLabels(m ocispec.Manifest) map[string]string {
	labels := map[string]string{gcConfig: m.Config.Digest.String()}
	for i, l := range m.Layers {
		labels[gcLayer+strconv.Itoa(i)] = l.Digest.String()
	}
	return labels
}

// setLabels sets labels on the blob dgst of the content store, leaving its others.
func setLabels(ctx context.Context, cs content.Store, dgst digest.Digest, labels map[string]string) error {
	if len(labels) == 0 {
		return nil
	}
	var fields []string
	for k := range labels {
		fields = append(fields, "labels."+k)
	}
	if _, err := cs.Update(ctx, content.Info{Digest: dgst, Labels: labels}, fields...); err != nil {
		return fmt.Errorf("label %s: %w", dgst, err)
	}
	return nil
}

// writeImage names s's image name in the image store, replacing an image of that name.
func (x *run) writeImage(ctx context.Context, name string, s *state) error {
	desc, err := x.writeManifest(ctx, s)
	if err != nil {
		return err
	}
	return putImage(ctx, x.c, images.Image{Name: name, Target: desc, Labels: map[string]string{"crun-ci.built": "true"}})
}

// putImage creates img, or updates the image of that name.
func putImage(ctx context.Context, c *client.Client, img images.Image) error {
	is := c.ImageService()
	if _, err := is.Create(ctx, img); err != nil {
		if !errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("create image %s: %w", img.Name, err)
		}
		if _, err := is.Update(ctx, img); err != nil {
			return fmt.Errorf("update image %s: %w", img.Name, err)
		}
	}
	return nil
}
