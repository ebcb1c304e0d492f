package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/containerd/log"

	"github.com/crun-ci/crun-ci/civars"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/remote"
	"github.com/crun-ci/crun-ci/secrets"
	"github.com/crun-ci/crun-ci/steps"
)

// KeyEnv may hold the key's base64 instead of a key file, for CI hosts.
const KeyEnv = "CRUNCI_AES_KEY"

// Pipeline says where a build directory's pipeline files are.
type Pipeline struct {
	// Dir is the build directory; Services and Steps are the files ("" for the
	// defaults: codeship-services.yml, .json or docker-compose.yml, and
	// codeship-steps.yml or .json, in Dir).
	Dir, Services, Steps string
	// NoSteps reads the services file only (run, load).
	NoSteps bool
	// CheckFiles makes Load's checks cover every env and encrypted file too
	// (steps.CheckFiles), decrypted with the key of KeyPath ("" for codeship.aes in Dir;
	// $CRUNCI_AES_KEY wins over it): validate.
	CheckFiles bool
	KeyPath    string
}

// Load reads the pipeline and returns it with the warnings of what crun-ci ignores in
// it. With check, it also runs the checks that need no containerd (steps.Check) under
// policy, with the build's key; every problem found is in the error (a join, or a
// *steps.PreconditionError).
func (p Pipeline) Load(policy steps.Policy, check bool) (*config.Project, []error, error) {
	var proj *config.Project
	var err error
	if p.NoSteps {
		proj, err = config.LoadServices(p.Dir, p.Services)
	} else {
		proj, err = config.Load(p.Dir, p.Services, p.Steps)
	}
	if err != nil {
		return nil, nil, err
	}
	warnings := steps.Warnings(proj)
	if check {
		err := steps.Check(proj, policy)
		if p.CheckFiles {
			key, keySource, err2 := secrets.FindKey(os.Getenv(KeyEnv), KeyEnv, secrets.KeyPath(proj.Dir, p.KeyPath))
			if err2 == nil {
				err2 = steps.CheckFiles(proj, policy, key, keySource)
			}
			err = joinChecks(err, err2)
		}
		if err != nil {
			return nil, warnings, err
		}
	}
	return proj, warnings, nil
}

// joinChecks is the problems of both checks as one *steps.PreconditionError, nil when
// there are none.
func joinChecks(a, b error) error {
	var errs []error
	for _, err := range []error{a, b} {
		var pe *steps.PreconditionError
		switch {
		case err == nil:
		case errors.As(err, &pe):
			errs = append(errs, pe.Errs...)
		default:
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &steps.PreconditionError{Errs: errs}
}

// Identity is what a build is known by besides its pipeline: the key of its encrypted
// files and its CI values.
type Identity struct {
	// KeyPath is the key file ("" for codeship.aes in the build directory); $CRUNCI_AES_KEY
	// wins over it.
	KeyPath string
	// CI overrides the values read from the build directory's git repository, by flag
	// name (civars.FlagNames); empty ones do not.
	CI map[string]string
	// Tag is matched by the steps' tag and exclude; "" skips the steps with a tag, as
	// jet did.
	Tag string
}

// NewBuild returns the Build of proj under policy: its key, a new build id and its CI
// values. What keeps it from being made is a *SetupError.
func NewBuild(ctx context.Context, proj *config.Project, policy steps.Policy, id Identity) (Build, error) {
	key, keySource, err := secrets.FindKey(os.Getenv(KeyEnv), KeyEnv, secrets.KeyPath(proj.Dir, id.KeyPath))
	if err != nil {
		return Build{}, &SetupError{err}
	}
	buildID := steps.NewBuildID()
	civ, err := civars.Resolve(ctx, proj.Dir, id.CI, buildID, id.Tag)
	if err != nil {
		return Build{}, &SetupError{err}
	}
	// Without --tag, steps with a tag are skipped, as jet did; CI_BRANCH still comes
	// from git.
	log.G(ctx).Debugf("build %s (CI_BUILD_ID %s) in %s", buildID, civ.BuildID, proj.Dir)
	return Build{Project: proj, Policy: policy, Key: key, KeySource: keySource, ID: buildID, CI: civ, Tag: id.Tag}, nil
}

// Tidy says what `crun-ci cleanup` removes besides what dead builds left.
type Tidy struct {
	// Dry lists what would be removed and removes nothing.
	Dry bool
	// Kept removes the builds kept for crun-ci debug too.
	Kept bool
	// LayerCache empties the layer cache of built images.
	LayerCache bool
	// Rules removes the iptables rules of the state directory's step networks (refused
	// while a build runs, whose networks need them).
	Rules bool
}

// Tidy is `crun-ci cleanup`: it removes what dead builds left (Cleanup) and what t says,
// and says all of it on w.
func (s *Session) Tidy(ctx context.Context, t Tidy, w io.Writer) error {
	dry, layerCache, rules := t.Dry, t.LayerCache, t.Rules
	n, err := s.Cleanup(ctx, dry, t.Kept, w)
	if err != nil {
		return err
	}
	if rules {
		nm, err := network.New(network.None, network.Config{StateDir: s.o.StateDir})
		if err != nil {
			return err
		}
		switch inUse := nm.InUse(); {
		case inUse > 0 && !dry:
			return fmt.Errorf("network rules: %d step networks are in use by running builds; run again once they have ended", inUse)
		case dry:
			fmt.Fprintln(w, "would remove the iptables rules of the step networks")
		default:
			if err := nm.RemoveRules(ctx); err != nil {
				return fmt.Errorf("remove the network rules: %w", err)
			}
			fmt.Fprintln(w, "removed the iptables rules of the step networks")
		}
	}
	switch {
	case n == 0:
		fmt.Fprintln(w, "nothing to clean up")
	case dry:
		fmt.Fprintf(w, "%d builds would be cleaned up\n", n)
	default:
		fmt.Fprintf(w, "%d builds cleaned up\n", n)
	}
	if !layerCache {
		return nil
	}
	gone, err := s.PruneCache(ctx, -1, dry)
	var size int64
	for _, e := range gone {
		size += e.Size
	}
	verb := "removed"
	if dry {
		verb = "would remove"
	}
	fmt.Fprintf(w, "layer cache: %s %d layers (%s)\n", verb, len(gone), remote.Size(size))
	if err != nil {
		return fmt.Errorf("empty the layer cache: %w", err)
	}
	return nil
}
