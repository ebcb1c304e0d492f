package steps

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/distribution/reference"

	"github.com/crun-ci/crun-ci/civars"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/remote"
)

// invalidTagChars are what a Docker tag may not hold; Codeship stripped them from an
// image_tag after its template was applied.
var invalidTagChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// push runs a push step: without --push it is skipped with a notice; with it, the
// service's image is tagged image_name:image_tag (the tag a Go template of the build's
// values, "latest" by default) and pushed, with the step's own credentials when it has
// encrypted_dockercfg_path or dockercfg_service.
func (b *build) push(ctx context.Context, s *config.Step) bool {
	if b.o.Push == nil {
		b.record(s, Result{Step: s.Name, Service: s.Service, Status: Skipped, Note: "push steps run with --push"})
		log.G(ctx).Infof("step %q: push step skipped (run with --push)", s.Name)
		return true
	}
	b.started(s)
	start := time.Now()
	r := Result{Step: s.Name, Service: s.Service, Start: start}
	need := []string{s.Service}
	if d := s.DockercfgService.Text; d != "" {
		need = append(need, d)
	}
	err := b.ensure(ctx, s.Name, need)
	var target string
	if err == nil {
		target, err = b.pushTarget(s)
	}
	var creds remote.Credentials
	if err == nil {
		creds, err = b.pushCredentials(ctx, s)
	}
	if err == nil {
		err = b.o.Push(ctx, b.svc(s.Service).image.Name, target, creds)
	}
	r.Duration = time.Since(start)
	if err != nil {
		r.Status, r.Err = Failed, fmt.Errorf("push: %w", err)
	} else {
		r.Status, r.Note = Passed, "pushed "+target
	}
	b.record(s, r)
	return err == nil
}

// pushTarget is the reference a push step pushes to. image_name must name the service's
// image (its repository); the tag is the expanded image_tag with invalid characters
// stripped.
func (b *build) pushTarget(s *config.Step) (string, error) {
	repo, err := pushRepository(s, b.svc(s.Service).image.Name)
	if err != nil {
		return "", err
	}
	tmpl := s.ImageTag
	if tmpl == "" {
		tmpl = "latest"
	}
	tag, err := civars.TemplateData{Values: b.o.CI, StepName: s.Name, ServiceName: s.Service, ImageName: s.ImageName}.Expand(tmpl)
	if err != nil {
		return "", fmt.Errorf("image_tag %q: %w", s.ImageTag, err)
	}
	tagged, err := reference.WithTag(repo, invalidTagChars.ReplaceAllString(tag, ""))
	if err != nil {
		return "", fmt.Errorf("image_tag %q gives no valid tag", s.ImageTag)
	}
	return tagged.String(), nil
}

// pushRepository is the repository a push step pushes to: its image_name, which must
// name image, its service's image, and be on its registry when it names one, as under
// jet (registry: quay.io with image_name quay.io/team/app; a scheme and a path are
// allowed, as Codeship's examples write https://gcr.io and registry.ng.bluemix.net/).
func pushRepository(s *config.Step, image string) (reference.Named, error) {
	repo, err := reference.ParseNormalizedNamed(s.ImageName)
	if err != nil {
		return nil, fmt.Errorf("image_name %q: %w", s.ImageName, err)
	}
	own, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return nil, fmt.Errorf("the image of service %q: %w", s.Service, err)
	}
	if repo.Name() != own.Name() {
		return nil, fmt.Errorf("image_name %s is not the image of service %q (%s)", repo.Name(), s.Service, own.Name())
	}
	if s.Registry != "" && registryHost(s.Registry) != reference.Domain(repo) {
		return nil, fmt.Errorf("registry %q is not the registry of image_name %s (%s)", s.Registry, repo.Name(), reference.Domain(repo))
	}
	return repo, nil
}

// registryHost is the registry a push step's registry key names, as reference.Domain
// names it: without scheme and path, Docker Hub's names as docker.io.
func registryHost(r string) string {
	r = strings.ToLower(r)
	if _, rest, ok := strings.Cut(r, "://"); ok {
		r = rest
	}
	r, _, _ = strings.Cut(r, "/")
	switch r {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return r
}

// pushCredentials are a push step's own credentials: its encrypted_dockercfg_path
// decrypted, or what its dockercfg_service writes (run now, so that short-lived tokens are
// fresh); nil when it has neither.
func (b *build) pushCredentials(ctx context.Context, s *config.Step) (remote.Credentials, error) {
	if v := s.EncryptedDockercfgPath; v.Text != "" {
		return b.decryptDockercfg(v)
	}
	if d := s.DockercfgService.Text; d != "" {
		creds, err := b.dockercfgService(ctx, d, s.Name, b.out)
		if err != nil {
			return nil, fmt.Errorf("dockercfg_service %q: %w", d, err)
		}
		return creds, nil
	}
	return nil, nil
}
