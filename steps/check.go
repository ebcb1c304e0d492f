package steps

import (
	"fmt"

	"github.com/crun-ci/crun-ci/civars"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/hostfs"
	"github.com/crun-ci/crun-ci/images"
	"github.com/crun-ci/crun-ci/mounts"
	"github.com/crun-ci/crun-ci/secrets"
)

// Check runs the checks that need no containerd on every service of the project: volume
// specs parse, host paths exist and stay inside the build directory or a grant. It returns
// every problem, as errors.Join of *config.Error. The Dockerfiles of built services are
// found and checked too (see dockerfileOf), the Go templates of build arguments and
// push steps' image_tag, and each push step's image_name and registry against its
// service's image.
func Check(p *config.Project, policy Policy) error {
	guard := mounts.Guard{BuildDir: p.Dir, Allow: policy.Allow}
	root, err := hostfs.Open(p.Dir, hostfs.Beneath, "the build directory")
	if err != nil {
		return err
	}
	defer root.Close()
	var errs []error
	for _, name := range p.Order {
		_, volErrs := serviceMounts(guard, name, p.Services[name])
		errs = append(errs, volErrs...)
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
		if s.Type != config.Push {
			return
		}
		stepErr := func(err error) {
			e := &config.Error{Pos: s.Pos, Err: err}
			if s.NameGiven {
				e.Step = s.Name
			}
			errs = append(errs, e)
		}
		if err := civars.CheckTemplate(s.ImageTag); s.ImageTag != "" && err != nil {
			stepErr(fmt.Errorf("image_tag: %w", err))
		}
		if svc := p.Services[s.Service]; svc != nil {
			own := svc.Image
			if svc.Build != nil {
				own, _ = images.BuiltName(p.Dir, svc)
			}
			if _, err := pushRepository(s, own); err != nil {
				stepErr(err)
			}
		}
	})
	if len(errs) == 0 {
		return nil
	}
	return &PreconditionError{Errs: errs}
}

// CheckFiles checks every env file and encrypted file of the project (environment,
// build arguments, Docker configs of services and steps), used by the steps run or not:
// that it is there, in the build directory, and decrypts with key (nil when there is
// none; keySource says where it was looked for) into what it must hold. A build checks
// those its plan needs before it starts; validate checks them all.
func CheckFiles(p *config.Project, policy Policy, key *secrets.Key, keySource string) error {
	root, err := hostfs.Open(p.Dir, hostfs.Beneath, "the build directory")
	if err != nil {
		return err
	}
	defer root.Close()
	var errs []error
	b := &build{o: Options{Project: p, Policy: policy, Key: key, KeySource: keySource}, root: root}
	for _, name := range p.Order {
		cfg := p.Services[name]
		_, _, envErrs := b.fileEnv(cfg)
		errs = append(errs, envErrs...)
		if bc := cfg.Build; bc != nil {
			for _, v := range bc.EncryptedArgsFile {
				if plain, ok := b.decryptFile(v, &errs, name); ok {
					b.parseArgs(v, plain, &errs, name)
				}
			}
			for i, v := range bc.EncryptedArgs {
				what := fmt.Sprintf("encrypted_args entry %d", i+1)
				if plain, ok := b.decrypt(v, []byte(v.Text), what, &errs, name); ok {
					b.parseArgs(config.Value{Text: what, Pos: v.Pos}, plain, &errs, name)
				}
			}
		}
	}
	_, credErrs := b.dockercfgs(p.Order, p.Steps, true)
	errs = append(errs, credErrs...)
	if len(errs) == 0 {
		return nil
	}
	return &PreconditionError{Errs: errs}
}
