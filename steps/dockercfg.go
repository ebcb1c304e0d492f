package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crun-ci/crun-ci/builds"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/hostfs"
	"github.com/crun-ci/crun-ci/mounts"
	"github.com/crun-ci/crun-ci/oci"
	"github.com/crun-ci/crun-ci/remote"
	"github.com/crun-ci/crun-ci/secrets"
	"github.com/crun-ci/crun-ci/task"
)

// A credential service is the service that a dockercfg_service key names (of a service,
// or of a push step): its container writes a Docker config with registry credentials.
// crun-ci runs one container of it, with the service's own command and entrypoint, user,
// working_dir and environment (encrypted variables included), but without its volumes
// and dependencies, and gives it one more argument: dockercfgPath, a file in a directory
// of the build's that is mounted read-write into that container only. The container
// writes the file (Docker's config.json with "auths", or the older .dockercfg form) and
// exits 0; crun-ci reads it into memory and removes it, the directory and the container
// at once. Only its logins count: "credsStore" and "credHelpers" in it are ignored (see
// remote.ParseCredentials), as in an encrypted_dockercfg_path.
//
// A service's credential service runs while the build is prepared, before its image is
// pulled, and only when that image is pulled: when it is missing, or always with
// PullIfPresent; a push step's runs when the step pushes.
const (
	dockercfgDir  = "/crun-ci-dockercfg"
	dockercfgPath = dockercfgDir + "/config.json"
)

// maxDockercfg bounds the file a credential service writes.
const maxDockercfg = 1 << 20

// pullWithDockercfgServices pulls the images that images left for later: for each, it
// runs the credential services of the services that use it (a credential service's own
// image first, when that waits too; each credential service once for all these images),
// pulls it with what they wrote, merged with the
// encrypted_dockercfg_path credentials in creds, and looks into it as prepare does.
func (b *build) pullWithDockercfgServices(ctx context.Context, names []string, creds map[string]remote.Credentials, images map[string]imageResult) error {
	var errs []error
	var refs []string
	for _, name := range names {
		svc := b.svc(name)
		if ref := svc.cfg.Image; svc.build == nil && images[ref].later && !slices.Contains(refs, ref) {
			refs = append(refs, ref)
		}
	}
	if len(refs) == 0 {
		return nil
	}
	// Output during preparation is not masked yet: the credential services may have
	// encrypted variables of their own.
	out := b.out
	if len(b.secrets) > 0 {
		m := secrets.NewMasker(b.o.Output, b.secrets)
		defer m.Close()
		out = NewOutput(m)
	}
	errWaiting := errors.New("waits for itself")
	pulled := map[string]error{}
	wrote := map[string]remote.Credentials{} // by credential service
	var pull func(ref string) error
	pull = func(ref string) error {
		if err, ok := pulled[ref]; ok {
			return err
		}
		pulled[ref] = errWaiting
		var users, from []string
		more := creds[ref]
		var failed bool
		for _, name := range names {
			svc := b.svc(name)
			if svc.build != nil || svc.cfg.Image != ref {
				continue
			}
			users = append(users, name)
			for _, d := range b.credServices[name] {
				if slices.Contains(from, strconv.Quote(d.Text)) {
					continue // run for another service of this image
				}
				err := b.ensure(ctx, "dockercfg", []string{d.Text})
				if cs := b.svc(d.Text); err == nil && cs.image == nil {
					if err = pull(cs.cfg.Image); errors.Is(err, errWaiting) {
						err = fmt.Errorf("its image %s is the one it is to pull", cs.cfg.Image)
					} else if err != nil {
						failed = true // said for that service
						continue
					}
				}
				got, ran := wrote[d.Text]
				if err == nil && !ran {
					// Once for all the images pulled now: what it wrote is as fresh.
					if got, err = b.dockercfgService(ctx, d.Text, "", out); err == nil {
						wrote[d.Text] = got
					}
				}
				if err != nil {
					errs = append(errs, &config.Error{Pos: d.Pos, Service: name, Err: fmt.Errorf("dockercfg_service %q: %w", d.Text, err)})
					failed = true
					continue
				}
				more = more.With(got)
				from = append(from, strconv.Quote(d.Text))
			}
		}
		if failed {
			pulled[ref] = errors.New("no credentials")
			return pulled[ref]
		}
		// Only missing images wait (or all, with PullIfPresent): this pulls.
		img, err := b.pullLater(ctx, ref, more, from)
		if err != nil {
			for _, name := range users {
				pos := b.svc(name).cfg.Pos
				if ds := b.credServices[name]; len(ds) > 0 {
					pos = ds[0].Pos
				}
				errs = append(errs, &config.Error{Pos: pos, Service: name, Err: err})
			}
			pulled[ref] = err
			return err
		}
		pulled[ref] = nil
		for _, name := range users {
			if err := b.withImage(ctx, b.svc(name), img); err != nil {
				errs = append(errs, err)
				pulled[ref] = err
			}
		}
		return pulled[ref]
	}
	for _, ref := range refs {
		pull(ref)
	}
	// service_healthy needs a health check, which these images only now show.
	errs = append(errs, b.checkHealthy(names, func(s *service) bool {
		return s.build == nil && images[s.cfg.Image].later && s.image != nil
	})...)
	if len(errs) > 0 {
		return &PreconditionError{Errs: errs}
	}
	return nil
}

// pullLater pulls ref with creds, which come from the credential services named in from,
// and finds it in the store.
func (b *build) pullLater(ctx context.Context, ref string, creds remote.Credentials, from []string) (*task.Image, error) {
	img, err := b.imgs.PullWith(ctx, ref, creds)
	if err != nil {
		name, _ := task.Normalize(ref)
		return nil, fmt.Errorf("pull image %s with the credentials of dockercfg_service %s: %w", name, strings.Join(from, ", "), err)
	}
	return img, nil
}

// dockercfgService runs one container of the credential service name and returns the
// credentials it wrote. step names the push step that asked ("" for a service's pull);
// out takes the container's output, prefixed "dockercfg/<name> | ". The container, its
// network, the directory and the file are removed whatever happens; what the file held
// stays in memory only.
func (b *build) dockercfgService(ctx context.Context, name, step string, out *Output) (_ remote.Credentials, retErr error) {
	svc := b.svc(name)
	if svc == nil || svc.image == nil {
		return nil, fmt.Errorf("service %q is not ready", name) // prepare and ensure see to it
	}
	args, err := oci.Args(svc.image.Config, svc.cfg.Entrypoint, svc.cfg.Command)
	if err != nil {
		return nil, err
	}
	args = append(args, dockercfgPath)

	seq := b.seq.Add(1)
	dir := filepath.Join(b.dir, "dockercfg", strconv.FormatInt(seq, 10))
	outDir := filepath.Join(dir, "out")
	file := filepath.Join(outDir, filepath.Base(dockercfgPath))
	p, err := b.newPod(ctx, seq, dir, []string{name})
	if err != nil {
		return nil, err
	}
	defer func() {
		// The file goes first, whatever happens to the container.
		if err := os.Remove(file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			retErr = errors.Join(retErr, err)
		}
		if err := p.Close(ctx); err != nil {
			b.cleanupFailed(err)
			retErr = errors.Join(retErr, err)
		}
	}()
	// Only the container's user may write to the directory, and only through its mount.
	if err := os.Mkdir(outDir, 0o700); err != nil {
		return nil, fmt.Errorf("make %s: %w", outDir, err)
	}
	if u := svc.user; u.UID != 0 || u.GID != 0 { // crun-ci, as root, made it root's
		if err := os.Chown(outDir, int(u.UID), int(u.GID)); err != nil {
			return nil, fmt.Errorf("make %s: %w", outDir, err)
		}
	}
	m := b.member(svc, builds.ID{Build: b.o.BuildID, Seq: seq, Role: builds.RoleDockercfg, Service: name}, args, []specs.Mount{mounts.Bind(outDir, dockercfgDir, false)})
	m.Labels = map[string]string{builds.LabelService: name}
	if step != "" {
		m.Labels[builds.LabelStep] = step
	}
	log.G(ctx).Debugf("run credential service %q in container %s", name, m.ID)
	ctr, err := p.Create(ctx, m)
	if err != nil {
		return nil, err
	}
	prefix := "dockercfg/" + name + " | "
	so, se := out.Stream(prefix), out.Stream(prefix)
	defer func() {
		retErr = errors.Join(retErr, so.Close(), se.Close())
	}()
	if err := ctr.Start(ctx, so, se, nil); err != nil {
		return nil, err
	}
	code, err := ctr.Wait(ctx)
	if err != nil && ctx.Err() != nil {
		return nil, errors.Join(ctx.Err(), b.stop(ctx, ctr))
	}
	if err != nil {
		return nil, err
	}
	if code != 0 {
		if oom := ctr.OOMNote(ctx); oom != "" {
			return nil, fmt.Errorf("exited with code %d (%s)", code, oom)
		}
		return nil, fmt.Errorf("exited with code %d", code)
	}
	data, err := readDockercfg(outDir)
	if err != nil {
		return nil, err
	}
	return remote.ParseCredentials(dockercfgPath, data)
}

// readDockercfg reads the file a credential service wrote into the directory dir
// (dockercfgDir in its container), refusing anything but a regular file of at most
// maxDockercfg bytes: the container made it, and could have made it a link to a file of
// the host, a FIFO or a device.
func readDockercfg(dir string) ([]byte, error) {
	d, err := hostfs.Open(dir, hostfs.Beneath, dockercfgDir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	data, err := d.ReadFile(filepath.Base(dockercfgPath), maxDockercfg)
	var he *hostfs.Error
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("wrote no %s", dockercfgPath)
	case errors.As(err, &he):
		// Named as the container sees it, not by the host's path.
		return nil, fmt.Errorf("%s %s", dockercfgPath, he.Why)
	case err != nil:
		return nil, err
	}
	return data, nil
}
