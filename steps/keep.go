package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/log"

	"github.com/crun-ci/crun-ci/builds"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/pod"
)

// keepStep says whether step s, which ran in main (nil when its container was never
// made), is kept for crun-ci debug: with NoRemove every step is, with KeepOnFailure one
// that failed or timed out (not one that an interrupt stopped). It returns the record of
// the kept step, or nil.
func (b *build) keepStep(ctx context.Context, s *config.Step, main *pod.Container, failed bool) *builds.KeptStep {
	if main == nil {
		return nil
	}
	timedOut := errors.Is(context.Cause(ctx), errTimeout)
	interrupted := ctx.Err() != nil && !timedOut
	failed = failed || timedOut
	if !b.o.NoRemove && (!b.o.KeepOnFailure || !failed || interrupted) {
		return nil
	}
	k := &builds.KeptStep{Name: s.Name, Service: s.Service, Failed: failed, Container: main.ID()}
	if svc := b.svc(s.Service); svc != nil && svc.image != nil {
		k.Image = svc.image.Name
	}
	return k
}

// recordKept writes the record of the kept steps in the build's directory, so that later
// clean-ups leave the build alone and crun-ci debug finds its steps, and says how to enter
// them.
func (b *build) recordKept(ctx context.Context) error {
	mode := network.Host
	if b.o.Network != nil {
		mode = b.o.Network.Mode()
	}
	k := builds.Kept{
		Build: b.o.BuildID, Project: b.o.Project.Dir, Allow: b.o.Allow, Network: string(mode),
		Created: time.Now().UTC(), Steps: b.kept,
	}
	if b.o.KeepFor > 0 {
		k.Until = k.Created.Add(b.o.KeepFor)
	}
	// --no-remove alone keeps what it always kept, until the next clean-up.
	k.Removable = b.o.NoRemove && !b.o.KeepOnFailure
	if err := builds.WriteKept(b.dir, k); err != nil {
		return err
	}
	until := "until crun-ci cleanup --kept"
	if !k.Until.IsZero() {
		until = fmt.Sprintf("for %s (or until crun-ci cleanup --kept)", b.o.KeepFor)
	}
	if k.Removable {
		until = "until the next crun-ci cleans up (--keep-on-failure keeps it longer)"
	}
	if b.o.NoRemove {
		log.G(ctx).Infof("kept the containers and volumes of build %s (--no-remove) %s; enter a step with: crun-ci debug %s %s", b.o.BuildID, until, b.o.BuildID, shellQuote(config.Printable(b.kept[0].Name)))
		return nil
	}
	names := make([]string, len(b.kept))
	for i, s := range b.kept {
		names[i] = fmt.Sprintf("%q", s.Name)
	}
	log.G(ctx).Warnf("kept the containers and volumes of failed %s %s %s; enter one with: crun-ci debug %s %s", plural(len(names), "step"), strings.Join(names, ", "), until, b.o.BuildID, shellQuote(config.Printable(b.kept[0].Name)))
	return nil
}

// shellQuote quotes s for a shell, unless it needs none.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=@%+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
