package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/containerd/log"
	"github.com/spf13/pflag"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/session"
	"github.com/crun-ci/crun-ci/steps"
)

// load reads the pipeline (without its steps file unless withSteps) and, with check,
// runs the checks that need no containerd (all files too with checkFiles), printing
// every problem, one per line, and the warnings of what it ignores.
func (c *cli) load(withSteps, check, checkFiles bool) (*config.Project, steps.Policy, error) {
	policy, err := c.f.Policy()
	if err != nil {
		return nil, policy, err
	}
	proj, warnings, err := c.f.Pipeline(withSteps, checkFiles).Load(policy, check)
	for _, w := range warnings {
		c.warn(w)
	}
	if err != nil {
		printErrors(c.stderr, err)
		return nil, policy, &exitError{code: 2, err: fmt.Errorf("%w: invalid pipeline", errReported)}
	}
	return proj, policy, nil
}

// start makes the build of proj and opens its session.
func (c *cli) start(ctx context.Context, proj *config.Project, policy steps.Policy) (*session.Session, session.Build, error) {
	o, err := c.options()
	if err != nil {
		return nil, session.Build{}, err
	}
	o.KeepLeftovers = c.f.DryRun // a dry run changes nothing, not even old builds' leftovers
	build, err := session.NewBuild(ctx, proj, policy, c.f.Identity())
	if err != nil {
		return nil, build, err // a *session.SetupError: exit status 2
	}
	if err := c.f.Apply(&build); err != nil {
		return nil, build, err
	}
	s, err := session.Open(ctx, o)
	if err != nil {
		return nil, build, err
	}
	build.Output, build.Hurry, build.Terminal = c.stdout, hurry, session.IsTerminal(c.stdout)
	return s, build, nil
}

// open loads the pipeline (see load; with the steps file when withSteps), checks that
// the services named are in it, and opens the session of its build.
func (c *cli) open(ctx context.Context, cmd string, withSteps, check bool, services ...string) (*config.Project, *session.Session, session.Build, error) {
	proj, policy, err := c.load(withSteps, check, false)
	if err != nil {
		return nil, nil, session.Build{}, err
	}
	if err := proj.Need(services...); err != nil {
		return nil, nil, session.Build{}, usageError("%s: %w", cmd, err)
	}
	s, build, err := c.start(ctx, proj, policy)
	return proj, s, build, err
}

func runSteps(c *cli, fs *pflag.FlagSet) runner {
	c.f.AddSteps(fs)
	c.f.AddProject(fs, true)
	c.f.AddBuild(fs)
	c.f.AddContainers(fs, "every container")
	return func(ctx context.Context, _ []string) (retErr error) {
		_, s, build, err := c.open(ctx, "steps", true, true)
		if err != nil {
			return err
		}
		defer func() { retErr = errors.Join(retErr, s.Close()) }()
		if c.f.DryRun {
			return s.DryRun(ctx, build, c.stdout)
		}
		closeEvents, err := c.f.OpenEvents(&build, c.stdout)
		if err != nil {
			return err
		}
		defer func() { retErr = errors.Join(retErr, closeEvents()) }()
		sum, err := s.Steps(ctx, build)
		if sum != nil && !errors.As(err, new(*steps.PreconditionError)) {
			if c.logFormat == "json" {
				err = errors.Join(err, sum.WriteJSON(c.stdout))
			} else {
				sum.Print(c.stdout)
			}
			if path := c.f.JUnit(); path != "" {
				err = errors.Join(err, session.WriteFile(path, sum.WriteJUnit))
			}
		}
		if err != nil {
			return err
		}
		if !sum.Passed() {
			return &exitError{code: 1, err: fmt.Errorf("%w: build %s failed", errReported, build.ID)}
		}
		return nil
	}
}

// runRun is `crun-ci run SERVICE [COMMAND [ARGS…]]`: one container of the service with
// its dependencies, like one step, attached to crun-ci's standard input and output.
func runRun(c *cli, fs *pflag.FlagSet) runner {
	c.f.AddBuild(fs)
	fs.SetInterspersed(false) // flags after SERVICE belong to the command
	c.f.AddProject(fs, false)
	c.f.AddContainers(fs, "the container")
	c.f.AddRun(fs)
	return func(ctx context.Context, args []string) (retErr error) {
		service, command := args[0], args[1:]
		if len(command) == 0 {
			command = nil
		}
		ep, err := c.f.Entrypoint(fs)
		if err != nil {
			return err
		}
		_, s, build, err := c.open(ctx, "run", false, true, service)
		if err != nil {
			return err
		}
		defer func() { retErr = errors.Join(retErr, s.Close()) }()
		attach, reset, err := session.Attach(os.Stdin, c.stdout, c.stderr, !c.f.NoTTY)
		if err != nil {
			return fmt.Errorf("run: terminal: %w", err)
		}
		defer reset()
		r, err := s.Run(ctx, build, service, command, ep, attach)
		if err != nil {
			return err
		}
		switch {
		case r.Err != nil:
			return fmt.Errorf("run %s: %w", service, r.Err)
		case r.Note != "":
			log.G(ctx).Warn(r.Note)
		}
		if r.ExitCode != 0 {
			// The command's own status, as `docker run` gives it.
			return &exitError{code: int(r.ExitCode), err: fmt.Errorf("%w: exit %d", errReported, r.ExitCode)}
		}
		return nil
	}
}

// runSpec is `crun-ci spec SERVICE`: the runtime spec a step's container of the service
// gets, as JSON.
func runSpec(c *cli, fs *pflag.FlagSet) runner {
	c.f.AddProject(fs, false)
	c.f.AddBuild(fs)
	return func(ctx context.Context, args []string) (retErr error) {
		_, s, build, err := c.open(ctx, "spec", false, true, args[0])
		if err != nil {
			return err
		}
		defer func() { retErr = errors.Join(retErr, s.Close()) }()
		return s.Spec(ctx, build, args[0], c.stdout)
	}
}

// runLoad is `crun-ci load [SERVICE…]`: make the images of the services (all when none
// is named) present in containerd's store, pulling what is missing and building what has
// a build key, without running any step. It prints the name of each image.
func runLoad(c *cli, fs *pflag.FlagSet) runner {
	c.f.AddProject(fs, false)
	c.f.AddBuild(fs)
	fs.Bool("no-remove", false, "accepted for jet's scripts: load runs no step container to keep")
	return func(ctx context.Context, names []string) (retErr error) {
		proj, s, build, err := c.open(ctx, "load", false, false, names...)
		if err != nil {
			return err
		}
		if len(names) == 0 {
			names = proj.Order
		}
		defer func() { retErr = errors.Join(retErr, s.Close()) }()
		sum, err := s.Load(ctx, build, names)
		if err != nil {
			return err
		}
		var errs []error
		for _, r := range sum.Results {
			if r.Err != nil {
				errs = append(errs, r.Err)
				continue
			}
			fmt.Fprintln(c.stdout, r.Note)
		}
		if len(errs) > 0 {
			printErrors(c.stderr, errors.Join(errs...))
			return &exitError{code: 1, err: fmt.Errorf("%w: images not built", errReported)}
		}
		return nil
	}
}
