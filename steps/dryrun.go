package steps

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/images"
	"github.com/crun-ci/crun-ci/mounts"
	"github.com/crun-ci/crun-ci/network"
)

// DryRun writes what a build of o would do, and runs nothing: the step tree after the
// tag rule (skipped steps with why), and for each run step its containers, each with its
// image (present, to pull, to build, or built by another service) and its mounts, and
// the step's network. has says whether an image is present (nil error), without
// unpacking it (nil: nobody is asked, for validate --plan); nothing is made in
// containerd, nothing written.
func DryRun(ctx context.Context, has func(ctx context.Context, ref string) error, o Options, w io.Writer) error {
	p := o.Project
	guard := mounts.Guard{BuildDir: p.Dir, Allow: o.Allow}
	ms := map[string]mounts.Service{}
	var errs []error
	for _, name := range p.Order {
		svc, volErrs := serviceMounts(guard, name, p.Services[name])
		errs = append(errs, volErrs...)
		ms[name] = svc
	}
	if len(errs) > 0 {
		return &PreconditionError{Errs: errs}
	}
	builders := images.Builders(p)
	present := map[string]error{} // by image, asked once
	image := func(name string) string {
		cfg := p.Services[name]
		switch {
		case cfg.Build != nil:
			ref, _ := images.BuiltName(p.Dir, cfg)
			return ref + " (to build from " + cfg.Build.Dockerfile + " in " + cfg.Build.Context + ")"
		case builders[name] != "":
			return cfg.Image + " (built by service " + builders[name] + ")"
		case has == nil:
			return cfg.Image
		}
		err, asked := present[cfg.Image]
		if !asked {
			err = has(ctx, cfg.Image)
			present[cfg.Image] = err
		}
		switch {
		case err == nil && o.PullIfPresent && o.Pull != nil:
			return cfg.Image + " (present; pulled again: --pull-if-present)"
		case err == nil:
			return cfg.Image + " (present)"
		case errdefs.IsNotFound(err) && o.Pull != nil:
			return cfg.Image + " (to pull)"
		case errdefs.IsNotFound(err):
			return cfg.Image + " (missing: this command pulls nothing)"
		}
		return cfg.Image + " (" + err.Error() + ")"
	}
	netMode := network.Bridge
	if o.Network != nil {
		netMode = o.Network.Mode()
	}
	skips := Skips(p.Steps, o.Tag)
	var walk func(steps []*config.Step, indent string) error
	walk = func(steps []*config.Step, indent string) error {
		for _, s := range steps {
			line := indent + s.Type.String() + " " + config.Printable(s.Name)
			if s.Service != "" && (s.Type == config.Run || s.Type == config.Push) {
				line += " (" + config.Printable(s.Service) + ")"
			}
			if why, ok := skips[s]; ok {
				fmt.Fprintln(w, line+": skipped: "+why)
				continue
			}
			switch s.Type {
			case config.Run:
				if s.Command != nil {
					line += ": " + strings.Join(s.Command, " ")
				}
				fmt.Fprintln(w, line)
				containers := p.Graph.VolumeOrder(append(p.Graph.Dependencies(s.Service), s.Service)...)
				plan, err := mounts.ForStep(ms, anonDir, containers)
				if err != nil {
					return fmt.Errorf("step %q: %w", s.Name, err)
				}
				deps := p.Graph.Dependencies(s.Service)
				fmt.Fprintf(w, "%s  network: %s\n", indent, describeNetwork(netMode, len(deps)+1))
				for _, c := range plan.Containers {
					role := "dependency"
					switch {
					case c == s.Service:
						role = "the step's"
					case !slices.Contains(deps, c):
						role = "its volumes only, no container"
					}
					fmt.Fprintf(w, "%s  container %s (%s): %s\n", indent, c, role, image(c))
					for _, m := range plan.Mounts[c] {
						src := m.Source
						if strings.HasPrefix(src, anonDir) {
							src = "a new anonymous volume"
						}
						fmt.Fprintf(w, "%s    %s <- %s (%s)\n", indent, m.Destination, src, strings.Join(m.Options, ","))
					}
				}
			case config.Push:
				if o.Push == nil {
					line += ": skipped: push steps run with --push"
				} else {
					line += ": push to " + s.ImageName + ":" + cmp.Or(s.ImageTag, "latest")
				}
				fmt.Fprintln(w, line)
			default:
				fmt.Fprintln(w, line)
				if err := walk(s.Steps, indent+"  "); err != nil {
					return err
				}
			}
			if len(s.OnFail) > 0 {
				fmt.Fprintln(w, indent+"  on_fail:")
				if err := walk(s.OnFail, indent+"    "); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(PlanKeeping(p.Steps, o.Tag, skips), "")
}

func describeNetwork(m network.Mode, containers int) string {
	switch m {
	case network.Host:
		return "the host's"
	case network.None:
		return "none (loopback only, shared by the step's containers)"
	}
	return fmt.Sprintf("its own bridge, an address for each of its %d %s", containers, plural(containers, "container"))
}

// anonDir stands for a step's anonymous volumes in a dry run.
const anonDir = "/<step's anonymous volumes>"
