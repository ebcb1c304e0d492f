package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/steps"
	"github.com/crun-ci/crun-ci/task"
)

// runLoad is `crun-ci load [SERVICE…]`: make the images of the services (all when none
// is named) present in containerd's store, pulling what is missing and building what has
// a build key, without running any step. It prints the name of each image.
func runLoad(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) (retErr error) {
	var (
		p       projectFlags
		pf      pullFlags
		kf      keyFlags
		ci      = ciFlags{}
		netMode string
	)
	fs := commandFlags("load", &g, stderr, " [SERVICE…]")
	fs.StringVar(&p.dir, "dir", ".", "build directory")
	fs.StringVar(&p.servicesPath, "services-path", "", "services file (default: codeship-services.yml, .json or docker-compose.yml in --dir)")
	p.policyFlags.add(fs)
	addNetworkFlag(fs, &netMode)
	pf.add(fs)
	kf.add(fs)
	ci.add(fs)
	if err := parse(fs, &g, args, stderr); err != nil {
		return quietHelp(err)
	}
	policy, err := p.policy()
	if err != nil {
		return err
	}
	proj, err := config.LoadServices(p.dir, p.servicesPath)
	if err != nil {
		printErrors(stderr, err)
		return &exitError{code: 2, err: fmt.Errorf("%w: invalid services", errReported)}
	}
	warn(stderr, proj)
	names := fs.Args()
	if len(names) == 0 {
		names = proj.Order
	}
	for _, n := range names {
		if _, ok := proj.Services[n]; !ok {
			return usageError("load: no service %q in %s", n, rel(proj.Dir, proj.ServicesFile))
		}
	}
	key, keySource, err := kf.load(proj.Dir)
	if err != nil {
		return err
	}
	buildID := steps.NewBuildID()
	civ, err := ci.values(ctx, proj.Dir, buildID, "")
	if err != nil {
		return err
	}
	sess, err := g.startBuild(ctx, netMode, pf, stderr)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, sess.Close()) }()
	sum, err := steps.Run(ctx, steps.Containerd(task.New(sess.d.Client)), steps.Options{
		Project:       proj,
		Load:          names,
		Policy:        policy,
		BuildID:       buildID,
		Namespace:     g.namespace,
		StateDir:      sess.stateDir,
		Output:        stdout,
		Hurry:         hurry,
		Network:       sess.network,
		Pull:          sess.puller.PullWith,
		PullIfPresent: pf.ifPresent,
		CIEnv:         civ.Env(),
		CI:            civ,
		Key:           key,
		KeySource:     keySource,
		Builder:       sess.builder,
	})
	if err := preconditions(err, stderr); err != nil {
		return err
	}
	var errs []error
	for _, r := range sum.Results {
		if r.Err != nil {
			errs = append(errs, r.Err)
			continue
		}
		fmt.Fprintln(stdout, r.Note)
	}
	if ctx.Err() != nil {
		return &exitError{code: 130, err: errors.New("interrupted")}
	}
	if len(errs) > 0 {
		printErrors(stderr, errors.Join(errs...))
		return &exitError{code: 1, err: fmt.Errorf("%w: images not built", errReported)}
	}
	return nil
}
