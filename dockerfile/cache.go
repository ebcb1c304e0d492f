package dockerfile

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/docker/go-units"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/crun-ci/crun-ci/snapshot"
)

// The layer cache's images: crun-ci.local/cache:<key>, labelled with the size of their
// top layer and when they were last used (Unix seconds).
const (
	cacheRepo      = "crun-ci.local/cache"
	labelCache     = "crun-ci.cache"
	labelCacheUsed = "crun-ci.cache.used"
	labelCacheSize = "crun-ci.cache.size"
	// labelCacheShared names the shared cache (its repository) that has the entry.
	labelCacheShared = "crun-ci.cache.shared"
)

func cacheName(key digest.Digest) string { return cacheRepo + ":" + key.Encoded() }

// fromCache gives s the layers of the cache entry of key, when there is one, and reports
// whether there was. A cached layer whose snapshot was removed is unpacked again.
func (x *run) fromCache(ctx context.Context, s *state, key digest.Digest) (bool, error) {
	// The entries this build is still writing are looked up too (a stage may repeat
	// another's instructions).
	x.bg.writes.Wait()
	is := x.c.ImageService()
	img, err := is.Get(ctx, cacheName(key))
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	m, cfg, _, err := readImage(ctx, x.c, img.Target)
	if err != nil {
		return false, fmt.Errorf("entry %s: %w", key.Encoded()[:12], err)
	}
	chain, err := snapshot.ChainID(ctx, client.NewImage(x.c, img))
	if err != nil {
		return false, err
	}
	// The build's lease holds the layers from now on: evicting the entry while this
	// build uses them removes nothing it needs.
	if id, ok := leases.FromContext(ctx); ok {
		lm := x.c.LeasesService()
		res := []leases.Resource{snapshot.LeaseResource(chain.String())}
		for _, l := range m.Layers {
			res = append(res, leases.Resource{ID: l.Digest.String(), Type: "content"})
		}
		for _, r := range res {
			if err := lm.AddResource(ctx, leases.Lease{ID: id}, r); err != nil {
				return false, fmt.Errorf("lease layer %s: %w", r.ID, err)
			}
		}
	}
	s.layers = m.Layers
	s.diffIDs = cfg.RootFS.DiffIDs
	s.dirs = nil
	s.key = key
	if n := len(cfg.History); n > 0 {
		s.config.History = append(s.config.History, cfg.History[n-1])
	}
	if img.Labels == nil {
		img.Labels = map[string]string{}
	}
	img.Labels[labelCacheUsed] = strconv.FormatInt(time.Now().Unix(), 10)
	if _, err := is.Update(ctx, img, "labels."+labelCacheUsed); err != nil {
		return true, err
	}
	if x.b.Shared != nil {
		x.b.Shared.push(ctx, x.c, key, img)
	}
	return true, nil
}

// fromShared gives s the layers of key from the shared cache, when it has them, and
// reports whether it did; what went wrong is a warning.
func (x *run) fromShared(ctx context.Context, s *state, key digest.Digest) bool {
	sh := x.b.Shared
	if sh.unreachable() {
		return false
	}
	got, err := sh.fetch(ctx, x.c, s, key)
	if err == nil && got {
		if got, err = x.fromCache(ctx, s, key); err == nil {
			return got
		}
	}
	var down *downError
	switch {
	case errors.As(err, &down):
		if sh.goneDown(err) {
			x.release()
			fmt.Fprintf(x.r.Output, "warning: cache registry %s: %v; building without it\n", sh.Repo, err)
		}
	case err != nil:
		x.release()
		fmt.Fprintf(x.r.Output, "warning: cache registry: %v; building the layer\n", err)
	}
	return false
}

// toCache keeps the layers of s as the cache entry of its key.
func (x *run) toCache(ctx context.Context, s *state) error {
	desc, err := x.writeManifest(ctx, s)
	if err != nil {
		return err
	}
	img := cacheImage(s.key, desc, s.layers[len(s.layers)-1].Size)
	if err := putImage(ctx, x.c, img); err != nil {
		return err
	}
	if x.b.Shared != nil {
		x.b.Shared.push(ctx, x.c, s.key, img)
	}
	return nil
}

// cacheImage is the cache entry of key: the image of the manifest desc, labelled with
// the size of its top layer and the time now as its last use.
func cacheImage(key digest.Digest, desc ocispec.Descriptor, topSize int64) images.Image {
	return images.Image{Name: cacheName(key), Target: desc, Labels: map[string]string{
		labelCache:     "true",
		labelCacheUsed: strconv.FormatInt(time.Now().Unix(), 10),
		labelCacheSize: strconv.FormatInt(topSize, 10),
	}}
}

// CacheEntry is one layer of the cache.
type CacheEntry struct {
	Name string
	Size int64
	Used time.Time
}

// Cache lists the layer cache, least recently used first.
func Cache(ctx context.Context, c *client.Client) ([]CacheEntry, error) {
	imgs, err := c.ImageService().List(ctx, `labels."`+labelCache+`"==true`)
	if err != nil {
		return nil, fmt.Errorf("list the layer cache: %w", err)
	}
	var out []CacheEntry
	for _, img := range imgs {
		size, _ := strconv.ParseInt(img.Labels[labelCacheSize], 10, 64)
		used, _ := strconv.ParseInt(img.Labels[labelCacheUsed], 10, 64)
		out = append(out, CacheEntry{Name: img.Name, Size: size, Used: time.Unix(used, 0)})
	}
	slices.SortFunc(out, func(a, b CacheEntry) int {
		if c := a.Used.Compare(b.Used); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// evict removes the least recently used cache entries until the cache is within
// CacheMaxSize.
func (b *Builder) evict(ctx context.Context) error {
	if b.CacheMaxSize <= 0 {
		return nil
	}
	_, err := Prune(ctx, b.Client.Containerd(), b.CacheMaxSize, false)
	return err
}

// Prune removes the least recently used entries of the layer cache until it holds at
// most max bytes (all of them when max < 0), and returns what it removed; with dry, it
// only says what it would remove. The garbage is collected before it returns, so the
// space is free then.
func Prune(ctx context.Context, c *client.Client, max int64, dry bool) ([]CacheEntry, error) {
	entries, err := Cache(ctx, c)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, e := range entries {
		total += e.Size
	}
	var evict []CacheEntry
	for _, e := range entries {
		if max >= 0 && total <= max {
			break
		}
		evict = append(evict, e)
		total -= e.Size
	}
	if dry {
		return evict, nil
	}
	var errs []error
	for i, e := range evict {
		var opts []images.DeleteOpt
		if i == len(evict)-1 {
			opts = append(opts, images.SynchronousDelete())
		}
		if err := c.ImageService().Delete(ctx, e.Name, opts...); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return evict, errors.Join(errs...)
}

// ParseSize reads a size such as 500MB, 2GiB, 1g or 1048576 (bytes): kb, mb, gb and tb are
// decimal; kib, mib, gib and tib are binary, and so are k, m, g and t.
//
// go-units has the multipliers but not this grammar: its FromHumanSize takes kib as 1000
// and its RAMInBytes kb as 1024, both accept p, and neither checks that the product fits
// in an int64 (1e30 converts to whatever the platform makes of it), so the suffix and the
// bound stay here.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToLower(s))
	suffixes := []struct {
		suffix string
		mult   int64
	}{
		{"kib", units.KiB}, {"mib", units.MiB}, {"gib", units.GiB}, {"tib", units.TiB},
		{"kb", units.KB}, {"mb", units.MB}, {"gb", units.GB}, {"tb", units.TB},
		{"k", units.KiB}, {"m", units.MiB}, {"g", units.GiB}, {"t", units.TiB}, {"b", 1},
	}
	mult := int64(1)
	for _, u := range suffixes {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || !(n >= 0) || n*float64(mult) >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with a unit (500MB, 2GiB)", s)
	}
	return int64(n * float64(mult)), nil
}
