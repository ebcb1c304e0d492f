package dockerfile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/crun-ci/crun-ci/snapshot"
)

// ParseCacheRegistry reads the repository of a shared layer cache (HOST[:PORT]/NAME,
// normalised as Docker does): a name without a tag or digest, whose tags are the cache
// keys.
func ParseCacheRegistry(s string) (string, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	if _, ok := named.(reference.Tagged); ok {
		return "", fmt.Errorf("%q: want a repository without a tag (its tags are the cache keys)", s)
	}
	if _, ok := named.(reference.Digested); ok {
		return "", fmt.Errorf("%q: want a repository without a digest", s)
	}
	return named.Name(), nil
}

// Registry is what the shared cache needs of a registry client (remote.Puller), with
// the host's credentials: lookups and pushes of records.
type Registry interface {
	Lookup(ctx context.Context, ref string) (ocispec.Descriptor, remotes.Fetcher, error)
	PushRecord(ctx context.Context, ref string, desc ocispec.Descriptor) error
}

// lookupTimeout bounds the question whether the registry has a key, so that a
// registry that does not answer costs a build seconds, once.
const lookupTimeout = 10 * time.Second

// Shared is a layer cache that many hosts share through a registry repository: the
// record of a cache key is the local entry's manifest (its config and every layer up to
// the key's), pushed as the tag that is the key's hex digest, so any registry holds it.
// A key missing locally is looked up there before its instruction runs; what is built
// is pushed in the background, one record after another (later records share the
// earlier ones' layers, which are then not sent again), and Wait waits for the pushes.
//
// A registry that cannot be reached is a warning, once: the build goes on without it.
// A record that does not fit (not a manifest of the build's layers plus one) is a
// warning and is not used.
type Shared struct {
	// Repo is the repository (ParseCacheRegistry).
	Repo     string
	Registry Registry

	mu     sync.Mutex
	down   error
	queued map[string]bool
	last   chan struct{}
	wg     sync.WaitGroup
	cancel []context.CancelFunc
	pushed int
	failed []error
}

// ref is the record of key.
func (sh *Shared) ref(key digest.Digest) string { return sh.Repo + ":" + key.Encoded() }

// unreachable says whether the registry failed to answer before.
func (sh *Shared) unreachable() bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.down != nil
}

// goneDown records that the registry did not answer, and reports whether it is the
// first time (the time to say so).
func (sh *Shared) goneDown(err error) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	first := sh.down == nil
	if first {
		sh.down = err
	}
	return first
}

// errNoFit is a record that is not what its key says.
var errNoFit = errors.New("does not fit")

// fetch brings the record of key into the local cache, unpacked, when the registry has
// one that fits s (s's layers and one more), and reports whether it did. A missing
// record is no error; an unreachable registry is one of type *downError.
func (sh *Shared) fetch(ctx context.Context, c *client.Client, s *state, key digest.Digest) (bool, error) {
	ref := sh.ref(key)
	rctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	desc, fetcher, err := sh.Registry.Lookup(rctx, ref)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, &downError{err}
	}
	cs := c.ContentStore()
	get := func(descs ...ocispec.Descriptor) error {
		return images.Dispatch(ctx, remotes.FetchHandler(cs, fetcher), nil, descs...)
	}
	// The manifest and config first: a record that does not fit costs no layer.
	if desc.MediaType != ocispec.MediaTypeImageManifest && desc.MediaType != images.MediaTypeDockerSchema2Manifest {
		return false, fmt.Errorf("record %s: %w: media type %q, want an image manifest", ref, errNoFit, desc.MediaType)
	}
	if desc.Size > 4<<20 {
		return false, fmt.Errorf("record %s: %w: a manifest of %d bytes", ref, errNoFit, desc.Size)
	}
	if err := get(desc); err != nil {
		return false, fmt.Errorf("record %s: %w", ref, err)
	}
	var m ocispec.Manifest
	if err := readJSON(ctx, cs, desc, &m); err != nil {
		return false, fmt.Errorf("record %s: %w: %v", ref, errNoFit, err)
	}
	if len(m.Layers) != len(s.diffIDs)+1 {
		return false, fmt.Errorf("record %s: %w: %d layers, want %d", ref, errNoFit, len(m.Layers), len(s.diffIDs)+1)
	}
	if m.Config.Size > 4<<20 {
		return false, fmt.Errorf("record %s: %w: a config of %d bytes", ref, errNoFit, m.Config.Size)
	}
	if err := get(m.Config); err != nil {
		return false, fmt.Errorf("record %s: %w", ref, err)
	}
	var cfg dockerspec.DockerOCIImage
	if err := readJSON(ctx, cs, m.Config, &cfg); err != nil {
		return false, fmt.Errorf("record %s: config: %w: %v", ref, errNoFit, err)
	}
	if ids := cfg.RootFS.DiffIDs; len(ids) != len(m.Layers) || !slices.Equal(ids[:len(s.diffIDs)], s.diffIDs) {
		return false, fmt.Errorf("record %s: %w: its layers are not the build's so far", ref, errNoFit)
	}
	if err := get(m.Layers...); err != nil {
		return false, fmt.Errorf("record %s: layers: %w", ref, err)
	}
	// The manifest keeps its config and layers, as a local entry's does; unpacking
	// labels the config with the snapshot (and checks each layer's diff ID).
	if err := setLabels(ctx, cs, desc.Digest, manifestLabels(m)); err != nil {
		return false, fmt.Errorf("record %s: %w", ref, err)
	}
	img := cacheImage(key, desc, m.Layers[len(m.Layers)-1].Size)
	img.Labels[labelCacheShared] = sh.Repo
	if err := client.NewImage(c, img).Unpack(ctx, snapshot.Snapshotter); err != nil {
		return false, fmt.Errorf("record %s: unpack: %w", ref, err)
	}
	if err := putImage(ctx, c, img); err != nil {
		return false, err
	}
	return true, nil
}

// readJSON decodes the blob of desc.
func readJSON(ctx context.Context, cs content.Provider, desc ocispec.Descriptor, v any) error {
	b, err := content.ReadBlob(ctx, cs, desc)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// downError is a registry that did not answer.
type downError struct{ err error }

func (e *downError) Error() string { return e.err.Error() }
func (e *downError) Unwrap() error { return e.err }

// push queues the push of img, the local entry of key, once per key and unless it came
// from (or went to) the shared cache before, after the pushes queued before it. ctx
// gives the namespace; the push outlives it, until Wait.
func (sh *Shared) push(ctx context.Context, c *client.Client, key digest.Digest, img images.Image) {
	if img.Labels[labelCacheShared] == sh.Repo {
		return // pushed before, or fetched from there
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ref := sh.ref(key)
	if sh.down != nil || sh.queued[ref] {
		return
	}
	if sh.queued == nil {
		sh.queued = map[string]bool{}
	}
	sh.queued[ref] = true
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sh.cancel = append(sh.cancel, cancel)
	prev, done := sh.last, make(chan struct{})
	sh.last = done
	sh.wg.Add(1)
	go func() {
		defer sh.wg.Done()
		defer close(done)
		if prev != nil {
			<-prev
		}
		err := sh.Registry.PushRecord(pctx, ref, img.Target)
		if err == nil {
			// Later builds of this host need not push it again.
			img.Labels = maps.Clone(img.Labels)
			img.Labels[labelCacheShared] = sh.Repo
			_, err = c.ImageService().Update(pctx, img, "labels."+labelCacheShared)
			if errdefs.IsNotFound(err) {
				err = nil // evicted meanwhile
			}
		}
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if err != nil {
			sh.failed = append(sh.failed, fmt.Errorf("push %s: %w", ref, err))
		} else {
			sh.pushed++
		}
	}()
}

// Wait waits for the queued pushes (stopping them when ctx ends) and says how many
// records were pushed; the error joins the failed pushes.
func (sh *Shared) Wait(ctx context.Context) (int, error) {
	done := make(chan struct{})
	go func() {
		sh.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	// Stops the pushes still running (ctx ended), releases the others'.
	sh.mu.Lock()
	cancels := sh.cancel
	sh.cancel = nil
	sh.mu.Unlock()
	for _, c := range cancels {
		c()
	}
	<-done
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n, errs := sh.pushed, sh.failed
	sh.pushed, sh.failed = 0, nil
	return n, errors.Join(errs...)
}
