package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/crun-ci/crun-ci/builds"
	"github.com/crun-ci/crun-ci/steps"
)

// FindKept finds the kept build and step that crun-ci debug enters: build's step, or,
// when build is "", the step of the most recently kept build that has one of that name.
// It needs no containerd: the records are in the state directory.
func FindKept(stateDir, build, step string) (*builds.Kept, *builds.KeptStep, error) {
	if build != "" {
		if !builds.ValidID(build) {
			return nil, nil, fmt.Errorf("debug: %q is not a build id", build)
		}
		k, err := builds.ReadKept(builds.Dir(stateDir, build))
		switch {
		case err != nil:
			return nil, nil, err
		case k == nil:
			return nil, nil, fmt.Errorf("debug: build %s was not kept (run its pipeline with --keep-on-failure)", build)
		}
		s := k.Step(step)
		if s == nil {
			return nil, nil, fmt.Errorf("debug: build %s kept no step %q (%s)", build, step, keptSteps(k))
		}
		return k, s, nil
	}
	entries, err := os.ReadDir(filepath.Join(stateDir, "builds"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	var kept []*builds.Kept
	for _, e := range entries {
		k, err := builds.ReadKept(filepath.Join(stateDir, "builds", e.Name()))
		if err == nil && k != nil {
			kept = append(kept, k)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Created.After(kept[j].Created) })
	var names []string
	for _, k := range kept {
		if s := k.Step(step); s != nil {
			return k, s, nil
		}
		names = append(names, k.Build+" ("+keptSteps(k)+")")
	}
	if len(kept) == 0 {
		return nil, nil, fmt.Errorf("debug: no build is kept (run the pipeline with --keep-on-failure)")
	}
	return nil, nil, fmt.Errorf("debug: no kept build has a step %q; kept: %s", step, strings.Join(names, "; "))
}

// Debug runs command (a shell when nil) in a new container of a kept step (steps.Debug)
// and returns its exit code. The session must be opened with the network mode the build
// had (k.Network).
func (s *Session) Debug(ctx context.Context, k *builds.Kept, step *builds.KeptStep, command, env []string, attach *steps.Attach) (uint32, error) {
	return steps.Debug(ctx, s.tasks, steps.DebugOptions{
		StateDir: s.o.StateDir, Kept: k, Step: step, Command: command, Env: env,
		Network: s.network, Attach: *attach,
	})
}
