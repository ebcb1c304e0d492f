package remote

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Push tags the local image source as target in containerd's store and pushes it to
// target's registry, with the Puller's credentials and plain-HTTP rules.
func (p *Puller) Push(ctx context.Context, source, target string) error {
	return p.PushWith(ctx, source, target, nil)
}

// PushWith is Push with more credentials, which win over the Puller's Keychain for their
// registries (a push step's encrypted_dockercfg_path or dockercfg_service).
func (p *Puller) PushWith(ctx context.Context, source, target string, more Credentials) error {
	is := p.Client.ImageService()
	img, err := is.Get(ctx, source)
	if err != nil {
		return fmt.Errorf("image %s: %w", source, err)
	}
	tagged := img
	tagged.Name = target
	if _, err := is.Create(ctx, tagged); err != nil {
		if !errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("tag %s as %s: %w", source, target, err)
		}
		if _, err := is.Update(ctx, tagged); err != nil {
			return fmt.Errorf("tag %s as %s: %w", source, target, err)
		}
	}
	resolver := p.resolver(more)
	began := time.Now()
	if err := p.Client.Push(quiet(ctx), target, img.Target, client.WithResolver(resolver)); err != nil {
		return pullError(err)
	}
	if p.Progress != nil {
		fmt.Fprintf(p.Progress, "pushed %s (%.1fs)\n", target, time.Since(began).Seconds())
	}
	return nil
}

// Lookup resolves ref (a tagged name) with the Puller's credentials and plain-HTTP
// rules, for things other than images (the shared layer cache's records): its
// descriptor and a fetcher of its blobs. A registry without ref gives an error that
// errdefs.IsNotFound reports.
func (p *Puller) Lookup(ctx context.Context, ref string) (ocispec.Descriptor, remotes.Fetcher, error) {
	r := p.resolver(nil)
	name, desc, err := r.Resolve(quiet(ctx), ref)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return desc, nil, err
		}
		return desc, nil, pullError(err)
	}
	f, err := r.Fetcher(ctx, name)
	if err != nil {
		return desc, nil, pullError(err)
	}
	return desc, quietFetcher{f}, nil
}

// quietFetcher fetches without containerd's info lines about failed requests.
type quietFetcher struct{ remotes.Fetcher }

func (q quietFetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return q.Fetcher.Fetch(quiet(ctx), desc)
}

// PushRecord pushes desc, a manifest in containerd's content store with what it refers
// to, as ref (a tagged name), without naming it in the image store. Blobs the registry
// has are not sent again.
func (p *Puller) PushRecord(ctx context.Context, ref string, desc ocispec.Descriptor) error {
	if err := p.Client.Push(quiet(ctx), ref, desc, client.WithResolver(p.resolver(nil))); err != nil {
		return pullError(err)
	}
	return nil
}
