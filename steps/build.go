package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containerd/log"

	"github.com/crun-ci/crun-ci/builds"
	"github.com/crun-ci/crun-ci/civars"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/dockerfile"
	"github.com/crun-ci/crun-ci/hostfs"
	"github.com/crun-ci/crun-ci/images"
	"github.com/crun-ci/crun-ci/pod"
	"github.com/crun-ci/crun-ci/remote"
	"github.com/crun-ci/crun-ci/secrets"
	"github.com/crun-ci/crun-ci/task"
)

// ImageBuilder builds images from Dockerfiles (dockerfile.Builder).
type ImageBuilder interface {
	Build(ctx context.Context, r dockerfile.Request) (*dockerfile.Result, error)
}

// imageBuild is how one service's image is built, which happens when the first step
// that needs the image starts (a Dockerfile may ADD what an earlier step wrote): the
// build's images.Store runs it once.
type imageBuild struct {
	req   dockerfile.Request
	creds remote.Credentials
}

// buildCredsKey is the key under which dockercfgs keeps the encrypted_dockercfg_path
// credentials of a built service: they are for its base images.
func buildCredsKey(service string) string { return "build:" + service }

// imageBuild checks a service's build key (context and Dockerfile inside the build
// directory, build arguments, encrypted ones decrypted) and returns its build.
func (b *build) imageBuild(name string, cfg *config.Service) (*imageBuild, []error) {
	var errs []error
	fail := func(pos config.Pos, err error) {
		errs = append(errs, &config.Error{Pos: pos, Service: name, Err: err})
	}
	bc := cfg.Build
	if b.o.Builder == nil {
		fail(bc.Pos, fmt.Errorf("build: this command builds no images"))
		return nil, errs
	}
	image, err := images.BuiltName(b.o.Project.Dir, cfg)
	if err != nil {
		fail(bc.Pos, fmt.Errorf("build: %w", err))
	}
	context, dockerfilePath, text, pathErrs := dockerfileOf(b.root, name, cfg, b.o.MaxFile)
	if len(pathErrs) > 0 {
		return nil, append(errs, pathErrs...)
	}
	args := map[string]string{}
	data := civars.TemplateData{Values: b.o.CI, ServiceName: name, ImageName: image}
	for _, a := range bc.Args {
		if a.Value == nil {
			if v, ok := os.LookupEnv(a.Key); ok {
				args[a.Key] = v
			}
			continue
		}
		v, err := data.Expand(*a.Value)
		if err != nil {
			fail(a.Pos, fmt.Errorf("build argument %s: %w", a.Key, err))
			continue
		}
		args[a.Key] = v
	}
	secretArgs := map[string]string{}
	addSecret := func(v config.Value, plain []byte) {
		for _, e := range b.parseArgs(v, plain, &errs, name) {
			secretArgs[e.Key] = e.Value
			if e.Value != "" {
				b.secrets = append(b.secrets, e.Value)
			}
		}
	}
	for _, v := range bc.EncryptedArgsFile {
		if plain, ok := b.decryptFile(v, &errs, name); ok {
			addSecret(v, plain)
		}
	}
	for i, v := range bc.EncryptedArgs {
		what := fmt.Sprintf("encrypted_args entry %d", i+1)
		if plain, ok := b.decrypt(v, []byte(v.Text), what, &errs, name); ok {
			addSecret(config.Value{Text: what, Pos: v.Pos}, plain)
		}
	}
	if len(secretArgs) > 0 && b.exe == nil {
		exe, err := pod.FindExe()
		if err != nil {
			fail(bc.Pos, err)
		}
		b.exe = exe
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &imageBuild{req: dockerfile.Request{
		Service:        name,
		Root:           b.root,
		Context:        context,
		Dockerfile:     dockerfilePath,
		DockerfileName: dockerfilePath,
		Text:           text,
		MaxFile:        b.o.MaxFile,
		Resources:      b.o.Policy.Defaults(),
		Args:           args,
		SecretArgs:     secretArgs,
		Image:          image,
	}}, nil
}

// dockerfileOf finds a built service's context and Dockerfile below the build
// directory root and checks the Dockerfile: that it is a regular file there, parses and
// uses only what the builder builds. Both paths it returns are relative to root; the
// Dockerfile's is how messages name it. text is the Dockerfile as read.
func dockerfileOf(root *hostfs.Dir, name string, cfg *config.Service, max int64) (context, dockerfilePath string, text []byte, errs []error) {
	bc := cfg.Build
	fail := func(err error) {
		errs = append(errs, &config.Error{Pos: bc.Pos, Service: name, Err: err})
	}
	context = root.Rel(bc.Context)
	fi, err := root.Stat(context)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fail(fmt.Errorf("build context %q: no such directory", bc.Context))
	case err != nil:
		fail(fmt.Errorf("build context %q: %w", bc.Context, err))
	case !fi.IsDir():
		fail(fmt.Errorf("build context %q: not a directory", bc.Context))
	}
	if errs != nil {
		return "", "", nil, errs
	}
	dockerfilePath = filepath.Join(context, bc.Dockerfile)
	text, err = dockerfile.Read(dockerfile.Request{Root: root, Dockerfile: dockerfilePath, DockerfileName: dockerfilePath, MaxFile: max})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fail(fmt.Errorf("build: Dockerfile %q: no such file", dockerfilePath))
	case err != nil:
		fail(fmt.Errorf("build: %w", err))
	}
	return context, dockerfilePath, text, errs
}

// parseArgs reads decrypted build arguments, KEY=value lines, recording why it cannot.
func (b *build) parseArgs(v config.Value, plain []byte, errs *[]error, service string) []secrets.EnvVar {
	vars, err := secrets.ParseEnv(plain)
	if err != nil {
		*errs = append(*errs, &config.Error{Pos: v.Pos, Service: service, Err: fmt.Errorf("%s: %w", v.Text, err)})
	}
	return vars
}

// decryptFile reads and decrypts an encrypted file of the build directory, recording
// why it cannot.
func (b *build) decryptFile(v config.Value, errs *[]error, service string) ([]byte, bool) {
	data, err := b.readFile(v.Text)
	if err != nil {
		*errs = append(*errs, &config.Error{Pos: v.Pos, Service: service, Err: err})
		return nil, false
	}
	return b.decrypt(v, data, v.Text, errs, service)
}

// decrypt decrypts data with the build's key, recording why it cannot.
func (b *build) decrypt(v config.Value, data []byte, what string, errs *[]error, service string) ([]byte, bool) {
	if b.o.Key == nil {
		*errs = append(*errs, &config.Error{Pos: v.Pos, Service: service, Err: fmt.Errorf("%s needs the key, which is not there (%s)", what, b.o.KeySource)})
		return nil, false
	}
	plain, err := secrets.Decrypt(*b.o.Key, data)
	if err != nil {
		*errs = append(*errs, &config.Error{Pos: v.Pos, Service: service, Err: fmt.Errorf("decrypt %s: %w", what, err)})
		return nil, false
	}
	return plain, true
}

// ensure builds the images of the named services that are built and not built yet,
// each once however many steps ask at the same time, and looks into them as prepare
// does into pulled images. The build's output goes to the step's output, prefixed
// "<step>/<service> build | ".
func (b *build) ensure(ctx context.Context, step string, names []string) error {
	for _, name := range names {
		svc := b.svc(name)
		if svc == nil {
			continue
		}
		if svc.builtBy != "" && svc.image == nil {
			// Built by another service: that one's build, then its image.
			owner := b.svc(svc.builtBy)
			if owner == nil || owner.build == nil {
				return fmt.Errorf("service %q: its image is built by %q, which cannot be built", name, svc.builtBy)
			}
			if err := b.buildImage(ctx, step, svc.builtBy, owner); err != nil {
				return err
			}
			if err := b.withImage(ctx, svc, b.svc(svc.builtBy).image); err != nil {
				return err
			}
			continue
		}
		if svc.build == nil {
			continue
		}
		if err := b.buildImage(ctx, step, name, svc); err != nil {
			return err
		}
	}
	// service_healthy needs a health check, which a built image only now shows.
	if errs := b.checkHealthy(names, func(s *service) bool { return (s.build != nil || s.builtBy != "") && s.image != nil }); len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// buildImage makes the image of the built service name present, for step: built once
// per build by the build's images.Store, which every later step gets.
func (b *build) buildImage(ctx context.Context, step, name string, svc *service) error {
	_, err := b.imgs.Build(ctx, name, func(ctx context.Context) (*task.Image, error) {
		img, err := b.runBuild(ctx, step, name, svc)
		if err == nil {
			// Once, by the one who built it: the service with its image from now on.
			err = b.withImage(ctx, b.svc(name), img)
		}
		return img, err
	})
	return err
}

// runBuild builds the image of the service name, for step: RUN instructions run in a pod
// of their own, with a network like a step's; the output goes to the step's,
// prefixed "<step>/<service> build | ".
func (b *build) runBuild(ctx context.Context, step, name string, svc *service) (_ *task.Image, retErr error) {
	ib := svc.build
	r := ib.req
	seq := b.seq.Add(1)
	r.ID = builds.ID{Build: b.o.BuildID, Seq: seq, Role: builds.RoleBuild}.String()
	r.Dir = filepath.Join(b.dir, "image-builds", strconv.FormatInt(seq, 10))
	r.Labels = maps.Clone(b.labels)
	r.Labels[builds.LabelService] = name
	r.Labels[builds.LabelStep] = step
	p, err := b.newPod(ctx, seq, r.Dir, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := p.Close(ctx); err != nil {
			b.cleanupFailed(err)
			retErr = errors.Join(retErr, err)
		}
	}()
	r.Pod, r.Images = p, b.imgs
	prefix := step + "/" + name + " build | "
	so, se := b.out.Stream(prefix), b.out.Stream(prefix)
	defer so.Close()
	defer se.Close()
	r.Output, r.Stderr = so, se
	// The service's credentials pull its base images, a dockercfg_service's only when a
	// pull needs them.
	r.Credentials = func(ctx context.Context) (remote.Credentials, error) {
		creds := ib.creds
		for _, d := range b.credServices[name] {
			more, err := b.dockercfgService(ctx, d.Text, "", b.out)
			if err != nil {
				return nil, fmt.Errorf("dockercfg_service %q: %w", d.Text, err)
			}
			creds = creds.With(more)
		}
		return creds, nil
	}
	log.G(ctx).WithField("service", name).Debugf("build image %s from %s", r.Image, r.Dockerfile)
	start := time.Now()
	res, err := b.o.Builder.Build(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("service %q: build image %s: %w", name, r.Image, err)
	}
	note := fmt.Sprintf("%d layers, %d from the cache", res.Layers, res.Cached)
	if res.Shared > 0 {
		note += fmt.Sprintf(" (%d from the cache registry)", res.Shared)
	}
	fmt.Fprintf(so, "built %s: %s\n", res.Image, note)
	b.emit(withDuration(Event{Type: "image-built", Step: step, Service: name, Image: res.Image, Note: note}, time.Since(start)))
	if res.Built != nil {
		return res.Built, nil
	}
	img, err := b.rt.Image(ctx, res.Image) // a builder that does not say (tests' fakes)
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", name, err)
	}
	return img, nil
}
