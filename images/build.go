package images

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/task"
)

// notImageChars are what a generated image name may not hold.
var notImageChars = regexp.MustCompile(`[^a-z0-9._-]+`)

// BuiltName is the normalised name of the image crun-ci builds for a service with a
// build key: build.image (or build.name), else "<build directory's name>-<service>" in
// lower case, as jet named it.
func BuiltName(dir string, svc *config.Service) (string, error) {
	ref := svc.Build.Image
	if ref == "" {
		ref = strings.Trim(notImageChars.ReplaceAllString(strings.ToLower(filepath.Base(dir)+"-"+svc.Name), "-"), "-._")
	}
	return task.Normalize(ref)
}

// Builders maps each service whose image: is another service's built image (as written
// or normalised) to that service: its image is built, never pulled. When two services
// build one image, the first in the file builds it.
func Builders(p *config.Project) map[string]string {
	built := map[string]string{} // normalised image -> the service that builds it
	for _, name := range p.Order {
		if svc := p.Services[name]; svc.Build != nil {
			if n, err := BuiltName(p.Dir, svc); err == nil && built[n] == "" {
				built[n] = name
			}
		}
	}
	out := map[string]string{}
	for _, name := range p.Order {
		svc := p.Services[name]
		if svc.Build != nil || svc.Image == "" {
			continue
		}
		if n, err := task.Normalize(svc.Image); err == nil && built[n] != "" {
			out[name] = built[n]
		}
	}
	return out
}

// Build returns the image of service's build: built by build the first time the build
// asks for it (lazily, since a Dockerfile may ADD what an earlier step wrote), once
// however many steps ask at the same time; later callers get the same image. A build
// that failed is run again by the next caller, as itself.
func (s *Store) Build(ctx context.Context, service string, build func(context.Context) (*task.Image, error)) (*task.Image, error) {
	return s.once(ctx, "build:"+service, func() (*task.Image, error) { return build(ctx) })
}
