package steps

import (
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strconv"
	"time"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/mounts"
	"github.com/crun-ci/crun-ci/secrets"
)

// SpecRequest asks for the runtime spec of a container of Service (crun-ci spec).
type SpecRequest struct {
	Service string
	Output  io.Writer
}

// spec writes the runtime spec of a container of s's service as a step would create it:
// its image (built or pulled as for a step), its mounts, its network (made, then
// removed), its environment; secret values are masked ("***"): those of encrypted
// variables reach the process through the hand-off and are not in a spec anyway.
func (b *build) spec(ctx context.Context, s *config.Step) {
	start := time.Now()
	r := Result{Step: s.Name, Service: s.Service, Start: start, Status: Passed}
	if err := b.writeSpec(ctx, s); err != nil {
		r.Status, r.Err = Failed, err
	}
	r.Duration = time.Since(start)
	b.record(s, r)
}

func (b *build) writeSpec(ctx context.Context, s *config.Step) (retErr error) {
	seq := b.seq.Add(1)
	volumes := filepath.Join(b.dir, "volumes", strconv.FormatInt(seq, 10))
	plan, err := mounts.ForStep(b.msvc, volumes, b.o.Project.Graph.VolumeOrder(s.Service))
	if err != nil {
		return err
	}
	if err := b.ensure(ctx, s.Name, []string{s.Service}); err != nil {
		return err
	}
	p, err := b.newPod(ctx, seq, volumes, []string{s.Service})
	if err != nil {
		return err
	}
	defer b.teardown(ctx, p, nil, nil)
	m, err := b.describe(ctx, s, seq, s.Service, plan.Mounts[s.Service], true)
	if err != nil {
		return err
	}
	spec, err := p.Spec(ctx, m)
	if err != nil {
		return err
	}
	masked := secrets.NewMasker(b.o.Spec.Output, b.secrets)
	defer func() {
		if err := masked.Close(); err != nil && retErr == nil {
			retErr = err
		}
	}()
	enc := json.NewEncoder(masked)
	enc.SetIndent("", "  ")
	return enc.Encode(spec)
}
