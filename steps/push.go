package steps

import (
	"context"
	"fmt"
	"regexp"
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
	start := time.Now()
	r := Result{Step: s.Name, Service: s.Service}
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
	svc := b.svc(s.Service)
	repo, err := reference.ParseNormalizedNamed(s.ImageName)
	if err != nil {
		return "", fmt.Errorf("image_name %q: %w", s.ImageName, err)
	}
	own, err := reference.ParseNormalizedNamed(svc.image.Name)
	if err != nil {
		return "", err
	}
	if repo.Name() != own.Name() {
		return "", fmt.Errorf("image_name %s is not the image of service %q (%s)", repo.Name(), s.Service, own.Name())
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
