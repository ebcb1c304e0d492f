package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/containerd/errdefs"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/task"
)

// runLoad is `crun-ci load [SERVICE…]`: make the images of the services (all when none
// is named) present in containerd's store, pulling what is missing, without running
// anything.
func runLoad(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) (retErr error) {
	var p projectFlags
	var pf pullFlags
	fs := commandFlags("load", &g, stderr, " [SERVICE…]")
	fs.StringVar(&p.dir, "dir", ".", "build directory")
	fs.StringVar(&p.servicesPath, "services-path", "", "services file (default: codeship-services.yml, .json or docker-compose.yml in --dir)")
	pf.add(fs)
	if err := parse(fs, &g, args, stderr); err != nil {
		return quietHelp(err)
	}
	proj, err := config.LoadServices(p.dir, p.servicesPath)
	if err != nil {
		printErrors(stderr, err)
		return &exitError{code: 2, err: fmt.Errorf("%w: invalid services", errReported)}
	}
	names := fs.Args()
	if len(names) == 0 {
		names = proj.Order
	}
	refs := map[string]string{} // image → first service
	for _, n := range names {
		svc, ok := proj.Services[n]
		if !ok {
			return usageError("load: no service %q in %s", n, rel(proj.Dir, proj.ServicesFile))
		}
		if _, ok := refs[svc.Image]; !ok {
			refs[svc.Image] = n
		}
	}
	sess, err := g.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, sess.Close()) }()
	puller, err := pf.puller(sess.d, stderr)
	if err != nil {
		return err
	}
	c := task.New(sess.d.Client)
	var images []string
	for ref := range refs {
		images = append(images, ref)
	}
	sort.Strings(images)
	var errs []error
	for _, ref := range images {
		name, err := task.Normalize(ref)
		if err == nil {
			_, err = c.Image(ctx, ref)
			if pf.ifPresent || errdefs.IsNotFound(err) {
				if err = puller.Pull(ctx, name); err == nil {
					_, err = c.Image(ctx, ref)
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("service %q: image %s: %w", refs[ref], ref, err))
			continue
		}
		fmt.Fprintln(stdout, name)
	}
	if len(errs) > 0 {
		printErrors(stderr, errors.Join(errs...))
		return &exitError{code: 2, err: fmt.Errorf("%w: images missing", errReported)}
	}
	return nil
}
