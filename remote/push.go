package remote

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
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
