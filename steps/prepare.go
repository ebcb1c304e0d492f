package steps

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/continuity/fs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crun-ci/crun-ci/builds"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/images"
	"github.com/crun-ci/crun-ci/mounts"
	"github.com/crun-ci/crun-ci/oci"
	"github.com/crun-ci/crun-ci/pod"
	"github.com/crun-ci/crun-ci/remote"
	"github.com/crun-ci/crun-ci/secrets"
	"github.com/crun-ci/crun-ci/task"
)

// prepare checks every precondition of the plan before anything runs, and gathers what
// the steps need: images, resolved host paths, users and the images' content for
// anonymous volumes. All problems are reported together.
func (b *build) prepare(ctx context.Context, plan []*config.Step) error {
	var errs []error
	fail := func(pos config.Pos, svc string, err error) {
		errs = append(errs, &config.Error{Pos: pos, Service: svc, Err: err})
	}
	// The services the plan runs, and those they need: volumes_from sources,
	// dependencies and, when images are pulled, credential services (which run before
	// an image, or a built one's base image, is pulled).
	var roots []string
	var walk func([]*config.Step)
	walk = func(steps []*config.Step) {
		for _, s := range steps {
			if s.Type == config.Run || (s.Type == config.Push && b.o.Push != nil) {
				roots = append(roots, s.Service)
			}
			if d := s.DockercfgService.Text; d != "" && s.Type == config.Push && b.o.Push != nil {
				roots = append(roots, d) // runs when the step pushes
			}
			walk(s.Steps)
			walk(s.OnFail)
		}
	}
	walk(plan)
	b.credServices = map[string][]config.Value{}
	for name, cfg := range b.o.Project.Services {
		if d := cfg.DockercfgService; d.Text != "" {
			b.credServices[name] = []config.Value{d}
		}
	}
	if b.o.Pull != nil {
		// A run step's dockercfg_service (or its group's) runs before the images the
		// step pulls are pulled, as a service's does.
		runStepCredentials(plan, func(s *config.Step, _, d config.Value) {
			if d.Text == "" {
				return
			}
			roots = append(roots, d.Text)
			for _, name := range b.o.Project.Graph.Closure(false, s.Service) {
				if !slices.ContainsFunc(b.credServices[name], func(v config.Value) bool { return v.Text == d.Text }) {
					b.credServices[name] = append(b.credServices[name], d)
				}
			}
		})
	}
	flag := b.o.DockercfgService
	if flag != "" && b.o.Pull != nil {
		if b.o.Project.Services[flag] == nil {
			return &PreconditionError{Errs: []error{fmt.Errorf("--dockercfg-service %q: no such service in %s", flag, b.o.Project.ServicesFile)}}
		}
		roots = append(roots, flag)
	}
	names := b.o.Project.Graph.Closure(b.o.Pull != nil, roots...)
	if flag != "" && b.o.Pull != nil {
		// First, so that the services' and steps' own logins win.
		own := b.o.Project.Graph.Closure(true, flag)
		for _, name := range names {
			if !slices.Contains(own, name) && !slices.ContainsFunc(b.credServices[name], func(v config.Value) bool { return v.Text == flag }) {
				b.credServices[name] = append([]config.Value{{Text: flag}}, b.credServices[name]...)
			}
		}
	}
	// A service whose image another service builds needs that one's build, which
	// makes its image (never pulled).
	b.builders = images.Builders(b.o.Project)
	for _, name := range names {
		if owner := b.builders[name]; owner != "" && !slices.Contains(names, owner) {
			names = append(names, owner)
		}
	}

	if b.o.DockerHost != "" {
		d, err := parseDockerHost(b.o.DockerHost)
		if err != nil {
			return &PreconditionError{Errs: []error{err}}
		}
		b.docker = d
	}
	errs = append(errs, b.checkAddDocker(names)...)
	b.guard = mounts.Guard{BuildDir: b.o.Project.Dir, Allow: b.o.Allow}
	guard := b.guard
	creds, credErrs := b.dockercfgs(names, plan, b.o.Push != nil)
	errs = append(errs, credErrs...)
	images := b.images(ctx, names, creds)
	for _, name := range names {
		cfg, ok := b.o.Project.Services[name]
		if !ok {
			errs = append(errs, fmt.Errorf("service %q: not defined", name))
			continue
		}
		svc := &service{cfg: cfg}
		var confErrs []error
		svc.security, svc.resources, confErrs = b.o.Policy.confine(b.root, cfg)
		errs = append(errs, confErrs...)
		if cfg.Build != nil {
			// Built when the first step that needs it starts.
			ib, errs2 := b.imageBuild(name, cfg)
			errs = append(errs, errs2...)
			if ib != nil {
				ib.creds = creds[buildCredsKey(name)]
			}
			svc.build = ib
		} else if owner := b.builders[name]; owner != "" {
			svc.builtBy = owner // its image comes when a step first needs it
		} else {
			img := images[cfg.Image]
			if img.err != nil {
				fail(cfg.Pos, name, img.err)
			}
			svc.image = img.image
			if img.image != nil {
				svc.health = healthcheckOf(cfg, img.image)
			}
		}
		ms, volErrs := serviceMounts(guard, name, cfg)
		errs = append(errs, volErrs...)
		b.msvc[name] = ms
		// Environment files, plain and encrypted, are read and decrypted now; their
		// values stay in memory.
		plainEnv, secretEnv, errs2 := b.fileEnv(cfg)
		errs = append(errs, errs2...)
		svc.fileEnv, svc.secretEnv = plainEnv, withoutKeys(secretEnv, b.o.Env)
		if (len(secretEnv) > 0 || cfg.Init) && b.exe == nil {
			exe, err := pod.FindExe()
			if err != nil {
				fail(cfg.Pos, name, err)
			} else {
				b.exe = exe
			}
		}
		b.services.put(svc)
	}
	errs = append(errs, b.checkHealthy(names, func(s *service) bool { return s.image != nil })...)
	if len(errs) > 0 {
		return &PreconditionError{Errs: errs}
	}

	for _, name := range names {
		svc := b.svc(name)
		if svc.image == nil {
			continue // an image built later is looked into then
		}
		if err := b.withImage(ctx, svc, svc.image); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return &PreconditionError{Errs: errs}
	}
	return b.pullWithDockercfgServices(ctx, names, creds, images)
}

// serviceMounts is what the service name mounts: its volumes, parsed, with their host
// paths resolved by guard (inside the build directory or a grant), and its volumes_from.
// A volume that is not one, or whose host path guard refuses, is left out and said.
func serviceMounts(guard mounts.Guard, name string, cfg *config.Service) (mounts.Service, []error) {
	var ms mounts.Service
	var errs []error
	for _, v := range cfg.Volumes {
		vol, err := mounts.Parse(v.Spec)
		host := ""
		if err == nil && !vol.Anonymous() {
			host, err = guard.HostPath(vol.Source)
		}
		if err != nil {
			errs = append(errs, &config.Error{Pos: v.Pos, Service: name, Err: fmt.Errorf("volume %q: %w", v.Spec, err)})
			continue
		}
		ms.Volumes = append(ms.Volumes, vol)
		ms.Hosts = append(ms.Hosts, host)
	}
	for _, f := range cfg.VolumesFrom {
		ms.VolumesFrom = append(ms.VolumesFrom, mounts.From{Service: f.Service, ReadOnly: f.ReadOnly})
	}
	return ms, errs
}

// withImage stores, in place of svc, the service with its image known: img, its health
// check, and what its containers need of the image (see inspect). The value stored
// before is not changed: a step that took it keeps what it saw.
func (b *build) withImage(ctx context.Context, svc *service, img *task.Image) error {
	next := *svc
	next.image, next.health = img, healthcheckOf(svc.cfg, img)
	var err error
	if next.user, next.templates, err = b.inspect(ctx, &next); err != nil {
		return err
	}
	b.services.put(&next)
	return nil
}

// checkHealthy checks that every service_healthy dependency among the services names
// need has a health check to wait for, for those whose image is known (known says).
func (b *build) checkHealthy(names []string, known func(*service) bool) []error {
	var errs []error
	for _, name := range names {
		svc := b.svc(name)
		if svc == nil {
			continue
		}
		for _, r := range svc.cfg.DependsOn {
			dep := b.svc(r.Service)
			if r.Condition != condHealthy || dep == nil || !known(dep) || dep.health != nil {
				continue
			}
			where := "image"
			if dep.build != nil {
				where = "Dockerfile"
			}
			errs = append(errs, &config.Error{Pos: r.Pos, Service: name, Err: fmt.Errorf("depends_on %q: condition service_healthy, but %q has no health check (no healthcheck key, no HEALTHCHECK in its %s)", r.Service, r.Service, where)})
		}
	}
	return errs
}

// inspect finds out what a service's containers need of its image: the user by name,
// and the image's content at the targets of anonymous volumes (copied once, for every
// step; by volume index, none where the image has nothing), through one read-only view
// when it needs one.
func (b *build) inspect(ctx context.Context, svc *service) (user specs.User, templates map[int]string, _ error) {
	name := svc.cfg.Name
	userSpec := svc.cfg.User
	if userSpec == "" {
		userSpec = svc.image.Config.User
	}
	var anon []int
	for i, v := range b.msvc[name].Volumes {
		if v.Anonymous() && !v.NoCopy {
			anon = append(anon, i)
		}
	}
	fail := func(err error) (specs.User, map[int]string, error) {
		return specs.User{}, nil, &config.Error{Pos: svc.cfg.Pos, Service: name, Err: err}
	}
	if !oci.NeedsLookup(userSpec) && len(anon) == 0 {
		u, err := oci.User(userSpec, nil, nil)
		if err != nil {
			return fail(err)
		}
		return u, nil, nil
	}
	templates = map[int]string{}
	key := builds.ID{Build: b.o.BuildID, Role: builds.RoleView, Service: name}.String()
	labels := maps.Clone(b.labels)
	labels[builds.LabelService] = name
	err := b.rt.View(ctx, svc.image, key, labels, filepath.Join(b.dir, "views", builds.Sanitize(name)), func(root string) error {
		passwd, group := oci.Accounts(root)
		u, err := oci.User(userSpec, passwd, group)
		if err != nil {
			return err
		}
		user = u
		for _, i := range anon {
			src, err := inRoot(root, b.msvc[name].Volumes[i].Target)
			if err != nil {
				return err
			}
			dst := filepath.Join(b.dir, "templates", builds.Sanitize(name), strconv.Itoa(i))
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			any, err := mounts.Copy(dst, src)
			if err != nil {
				return err
			}
			if any {
				templates[i] = dst
			}
		}
		return nil
	})
	if err != nil {
		return fail(fmt.Errorf("image %s: %w", svc.image.Name, err))
	}
	return user, templates, nil
}

// fileEnv reads a service's env_file, encrypted_env_file and encrypted_environment, in
// that order, and notes the values of the encrypted ones for masking.
func (b *build) fileEnv(cfg *config.Service) (plainEnv, secretEnv []string, _ []error) {
	var errs []error
	fail := func(pos config.Pos, err error) {
		errs = append(errs, &config.Error{Pos: pos, Service: cfg.Name, Err: err})
	}
	read := func(v config.Value) ([]byte, bool) {
		data, err := b.readFile(v.Text)
		if err != nil {
			fail(v.Pos, err)
			return nil, false
		}
		return data, true
	}
	add := func(v config.Value, data []byte, secret bool) {
		vars, err := secrets.ParseEnv(data)
		if err != nil {
			fail(v.Pos, fmt.Errorf("%s: %w", v.Text, err))
			return
		}
		for _, e := range vars {
			if !secret {
				plainEnv = append(plainEnv, e.Key+"="+e.Value)
				continue
			}
			secretEnv = append(secretEnv, e.Key+"="+e.Value)
			if e.Value != "" {
				b.secrets = append(b.secrets, e.Value)
			}
		}
	}
	for _, v := range cfg.EnvFiles {
		if data, ok := read(v); ok {
			add(v, data, false)
		}
	}
	for _, v := range cfg.EncryptedEnvFiles {
		if plain, ok := b.decryptFile(v, &errs, cfg.Name); ok {
			add(v, plain, true)
		}
	}
	for i, v := range cfg.EncryptedEnvironment {
		what := fmt.Sprintf("encrypted_environment entry %d", i+1)
		if plain, ok := b.decrypt(v, []byte(v.Text), what, &errs, cfg.Name); ok {
			add(config.Value{Text: what, Pos: v.Pos}, plain, true)
		}
	}
	return plainEnv, secretEnv, errs
}

// withoutKeys returns the entries of env whose keys override does not set: -e wins over
// what the hand-off adds when the process starts.
func withoutKeys(env, override []string) []string {
	set := map[string]bool{}
	for _, e := range override {
		k, _, _ := strings.Cut(e, "=")
		set[k] = true
	}
	var out []string
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); !set[k] {
			out = append(out, e)
		}
	}
	return out
}

// dockercfgs decrypts the services' encrypted_dockercfg_path files and returns their
// credentials by image reference (merged when several services share an image); they
// stay in memory. The files of the plan's push steps are checked too (with pushes): they
// are decrypted again when the step pushes.
func (b *build) dockercfgs(names []string, plan []*config.Step, pushes bool) (map[string]remote.Credentials, []error) {
	out := map[string]remote.Credentials{}
	var errs []error
	// --encrypted-dockercfg-path: the login for every image the build pulls, below the
	// services' and steps' own.
	if path := b.o.EncryptedDockercfgPath; path != "" {
		creds, err := b.decryptDockercfg(config.Value{Text: path})
		if err != nil {
			errs = append(errs, fmt.Errorf("--encrypted-dockercfg-path %s: %w", path, err))
		}
		for _, name := range names {
			if cfg := b.o.Project.Services[name]; cfg != nil && err == nil {
				key := credsKey(name, cfg)
				out[key] = creds.With(out[key])
			}
		}
	}
	for _, name := range names {
		cfg := b.o.Project.Services[name]
		if cfg == nil || cfg.EncryptedDockercfgPath.Text == "" {
			continue
		}
		v := cfg.EncryptedDockercfgPath
		creds, err := b.decryptDockercfg(v)
		if err != nil {
			errs = append(errs, &config.Error{Pos: v.Pos, Service: name, Err: err})
			continue
		}
		key := credsKey(name, cfg)
		out[key] = out[key].With(creds)
	}
	stepErr := func(s *config.Step, v config.Value, err error) {
		e := &config.Error{Pos: v.Pos, Err: err}
		if s.NameGiven {
			e.Step = s.Name
		}
		errs = append(errs, e)
	}
	if pushes {
		config.WalkSteps(plan, func(s *config.Step) {
			if v := s.EncryptedDockercfgPath; s.Type == config.Push && v.Text != "" {
				if _, err := b.decryptDockercfg(v); err != nil {
					stepErr(s, v, err)
				}
			}
		})
	}
	// A run step's encrypted_dockercfg_path is for the images that step pulls: its
	// service's and those its service needs.
	runStepCredentials(plan, func(s *config.Step, v, _ config.Value) {
		if v.Text == "" {
			return
		}
		creds, err := b.decryptDockercfg(v)
		if err != nil {
			stepErr(s, v, err)
			return
		}
		for _, name := range b.o.Project.Graph.Closure(false, s.Service) {
			key := credsKey(name, b.o.Project.Services[name])
			out[key] = out[key].With(creds)
		}
	})
	return out, errs
}

// runStepCredentials calls f for every run step of plan (on_fail ones too) with its
// credentials: its own encrypted_dockercfg_path and dockercfg_service when it has either,
// otherwise its nearest group's. At most one of the two is set (config drops a
// dockercfg_service next to an encrypted_dockercfg_path).
func runStepCredentials(plan []*config.Step, f func(s *config.Step, encrypted, service config.Value)) {
	var walk func([]*config.Step, [2]config.Value)
	walk = func(steps []*config.Step, inherited [2]config.Value) {
		for _, s := range steps {
			own := [2]config.Value{s.EncryptedDockercfgPath, s.DockercfgService}
			if own[0].Text == "" && own[1].Text == "" {
				own = inherited
			}
			switch s.Type {
			case config.Run:
				f(s, own[0], own[1])
			case config.Serial, config.Parallel:
				walk(s.Steps, own)
				walk(s.OnFail, own)
				continue
			}
			walk(s.OnFail, inherited)
		}
	}
	walk(plan, [2]config.Value{})
}

// decryptDockercfg reads an encrypted_dockercfg_path file (relative to the build
// directory), decrypts it with the build's key and parses the Docker config in it.
func (b *build) decryptDockercfg(v config.Value) (remote.Credentials, error) {
	if b.o.Key == nil {
		return nil, fmt.Errorf("%s needs the key, which is not there (%s)", v.Text, b.o.KeySource)
	}
	data, err := b.readFile(v.Text)
	if err != nil {
		return nil, err
	}
	plain, err := secrets.Decrypt(*b.o.Key, data)
	if err != nil {
		return nil, fmt.Errorf("decrypt %s: %w", v.Text, err)
	}
	return remote.ParseCredentials(v.Text, plain)
}

type imageResult struct {
	image *task.Image
	err   error
	// later says the image is to be pulled with the credentials of a dockercfg_service,
	// once that service is ready (see pullWithDockercfgServices).
	later bool
}

// images finds the images of the services, pulling those that are missing (or all, with
// PullIfPresent) when a puller is set: each image once, all at the same time. An image
// that a service with credential services (credServices) would pull is left for later.
func (b *build) images(ctx context.Context, names []string, creds map[string]remote.Credentials) map[string]imageResult {
	out := map[string]imageResult{}
	later := map[string]bool{}
	for _, name := range names {
		if cfg := b.o.Project.Services[name]; cfg != nil && cfg.Build == nil && len(b.credServices[name]) > 0 && b.o.Pull != nil {
			later[cfg.Image] = true
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range names {
		cfg := b.o.Project.Services[name]
		if cfg == nil || cfg.Build != nil || b.builders[name] != "" {
			continue
		}
		ref := cfg.Image
		mu.Lock()
		_, started := out[ref]
		if !started {
			out[ref] = imageResult{} // started: the goroutine fills it in
		}
		mu.Unlock()
		if started {
			continue
		}
		wg.Go(func() {
			var r imageResult
			if later[ref] {
				r.image, r.later, r.err = b.imgs.Waiting(ctx, ref)
			} else {
				r.image, r.err = b.imgs.Get(ctx, ref, constCreds(creds[ref]))
			}
			mu.Lock()
			out[ref] = r
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// constCreds gives creds when a pull asks for credentials.
func constCreds(creds remote.Credentials) func(context.Context) (remote.Credentials, error) {
	return func(context.Context) (remote.Credentials, error) { return creds, nil }
}

// inRoot resolves an absolute path inside a mounted image filesystem at root, following
// symlinks as the container would see them, never out of root.
func inRoot(root, p string) (string, error) {
	return fs.RootPath(root, p)
}

// readFile reads a file that the pipeline names (env_file, encrypted files), relative to
// the build directory and inside it, of at most the build's bound.
func (b *build) readFile(name string) ([]byte, error) {
	return b.root.ReadFile(b.root.Rel(name), b.o.maxFile())
}

// credsKey is where dockercfgs keeps the credentials of service name's pulls: under
// its image, or, built, under buildCredsKey, for the base images of its build.
func credsKey(name string, cfg *config.Service) string {
	if cfg.Build != nil {
		return buildCredsKey(name)
	}
	return cfg.Image
}
