package steps

import (
	"fmt"

	"github.com/crun-ci/crun-ci/civars"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/hostfs"
	"github.com/crun-ci/crun-ci/mounts"
)

// Check runs the checks that need no containerd on every service of the project: volume
// specs parse, host paths exist and stay inside the build directory or a grant. It returns
// every problem, as errors.Join of *config.Error. The Dockerfiles of built services are
// found and checked too (see dockerfileOf), and the Go templates of build arguments and
// push steps' image_tag.
func Check(p *config.Project, policy Policy) error {
	guard := mounts.Guard{BuildDir: p.Dir, Allow: policy.Allow}
	root, err := hostfs.Open(p.Dir, hostfs.Beneath, "the build directory")
	if err != nil {
		return err
	}
	defer root.Close()
	var errs []error
	for _, name := range p.Order {
		svc := p.Services[name]
		for _, v := range svc.Volumes {
			vol, err := mounts.Parse(v.Spec)
			if err == nil && !vol.Anonymous() {
				_, err = guard.HostPath(vol.Source)
			}
			if err != nil {
				errs = append(errs, &config.Error{Pos: v.Pos, Service: name, Err: fmt.Errorf("volume %q: %w", v.Spec, err)})
			}
		}
	}
	for _, name := range p.Order {
		_, _, confErrs := policy.confine(root, p.Services[name])
		errs = append(errs, confErrs...)
	}
	for _, name := range p.Order {
		if svc := p.Services[name]; svc.Build != nil {
			_, _, _, bErrs := dockerfileOf(root, name, svc, policy.MaxFile)
			errs = append(errs, bErrs...)
		}
	}
	// The templates of build arguments and push tags expand for any build.
	for _, name := range p.Order {
		if b := p.Services[name].Build; b != nil {
			for _, a := range b.Args {
				if a.Value == nil {
					continue
				}
				if err := civars.CheckTemplate(*a.Value); err != nil {
					errs = append(errs, &config.Error{Pos: a.Pos, Service: name, Err: fmt.Errorf("build.args %s: %w", a.Key, err)})
				}
			}
		}
	}
	config.WalkSteps(p.Steps, func(s *config.Step) {
		if s.Type != config.Push || s.ImageTag == "" {
			return
		}
		if err := civars.CheckTemplate(s.ImageTag); err != nil {
			e := &config.Error{Pos: s.Pos, Err: fmt.Errorf("image_tag: %w", err)}
			if s.NameGiven {
				e.Step = s.Name
			}
			errs = append(errs, e)
		}
	})
	if len(errs) == 0 {
		return nil
	}
	return &PreconditionError{Errs: errs}
}
