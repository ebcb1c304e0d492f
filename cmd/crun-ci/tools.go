package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/session"
	"github.com/crun-ci/crun-ci/steps"
)

func runValidate(c *cli, fs *pflag.FlagSet) runner {
	c.f.AddProject(fs, true)
	c.f.AddKeyPath(fs)
	plan := fs.Bool("plan", false, "also print the steps, their containers, images and mounts, as steps --dry-run does (without asking containerd which images are present)")
	tag := fs.String("tag", "", "with --plan: the build's branch or tag, as for steps")
	return func(ctx context.Context, _ []string) error {
		proj, policy, err := c.load(true, true, true)
		if err != nil {
			return err
		}
		if *plan {
			if err := steps.DryRun(ctx, nil, steps.Options{Project: proj, Policy: policy, Tag: *tag}, c.stdout); err != nil {
				return err
			}
		}
		fmt.Fprintf(c.stdout, "%s and %s are valid: %d services, %d steps\n", proj.Rel(proj.ServicesFile), proj.Rel(proj.StepsFile), len(proj.Services), proj.StepCount())
		return nil
	}
}

func runImport(c *cli, fs *pflag.FlagSet) runner {
	return func(ctx context.Context, args []string) error {
		return c.withSession(ctx, false, func(s *session.Session) error {
			for _, path := range args {
				names, err := s.ImportFile(ctx, path)
				if err != nil {
					return err
				}
				fmt.Fprintln(c.stdout, strings.Join(names, "\n"))
			}
			return nil
		})
	}
}

// withSession runs fn with a session of the global flags, closed after; keepLeftovers
// leaves the clean-up of dead builds to fn.
func (c *cli) withSession(ctx context.Context, keepLeftovers bool, fn func(*session.Session) error) (retErr error) {
	o, err := c.options()
	if err != nil {
		return err
	}
	o.KeepLeftovers = keepLeftovers
	s, err := session.Open(ctx, o)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, s.Close()) }()
	return fn(s)
}

// runExport is `crun-ci export IMAGE FILE`: the image as an OCI archive.
func runExport(c *cli, fs *pflag.FlagSet) runner {
	return func(ctx context.Context, args []string) error {
		return c.withSession(ctx, false, func(s *session.Session) error {
			return s.ExportFile(ctx, args[0], args[1])
		})
	}
}

func runCleanup(c *cli, fs *pflag.FlagSet) runner {
	dryRun := fs.Bool("dry-run", false, "list what would be removed, remove nothing")
	layerCache := fs.Bool("layer-cache", false, "also empty the layer cache of built images")
	rules := fs.Bool("network", false, "also remove the iptables rules of the step networks (which builds keep for the next), when no build runs")
	kept := fs.Bool("kept", false, "also remove the builds kept for crun-ci debug (--keep-on-failure, --no-remove)")
	return func(ctx context.Context, _ []string) error {
		// Dead builds are cleaned up by Tidy, and said on stdout.
		return c.withSession(ctx, true, func(s *session.Session) error {
			return s.Tidy(ctx, session.Tidy{Dry: *dryRun, Kept: *kept, LayerCache: *layerCache, Rules: *rules}, c.stdout)
		})
	}
}

// keyFlags are where the commands of the key look for it.
func (c *cli) keyFlags(fs *pflag.FlagSet, what string) (dir *string) {
	dir = fs.String("dir", ".", "build directory (where codeship.aes is "+what+")")
	c.f.AddKeyPath(fs)
	return dir
}

// runCrypt is `crun-ci encrypt IN OUT` or `crun-ci decrypt IN OUT`.
func runCrypt(encrypt bool) func(*cli, *pflag.FlagSet) runner {
	return func(c *cli, fs *pflag.FlagSet) runner {
		dir := c.keyFlags(fs, "looked for")
		return func(_ context.Context, args []string) error {
			return (session.Key{Dir: *dir, KeyPath: c.f.KeyPath()}.CryptFile(args[0], args[1], encrypt))
		}
	}
}

// runGenerate is `crun-ci generate`: a new key file, never over an existing one.
func runGenerate(c *cli, fs *pflag.FlagSet) runner {
	dir := c.keyFlags(fs, "written")
	return func(context.Context, []string) error {
		file, err := session.Key{Dir: *dir, KeyPath: c.f.KeyPath()}.Generate()
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "wrote a new key to %s\n", file)
		return nil
	}
}

// runDebug is `crun-ci debug [BUILD] STEP [-- COMMAND [ARGS…]]`: a shell, or the
// command, in a new container of a kept step's service, on its kept filesystem with its
// volumes and environment, attached to crun-ci's standard input and output.
func runDebug(c *cli, fs *pflag.FlagSet) runner {
	c.f.AddEnv(fs, "the container (its secret variables were not kept)")
	noTTY := fs.BoolP("no-tty", "T", false, "no terminal, even when standard input is one")
	return func(ctx context.Context, args []string) (retErr error) {
		names, command := args, []string(nil)
		if dash := fs.ArgsLenAtDash(); dash >= 0 {
			names, command = args[:dash], args[dash:]
		}
		var build, step string
		switch len(names) {
		case 1:
			step = names[0]
		case 2:
			build, step = names[0], names[1]
		default:
			return usageError("debug: want [BUILD] STEP [-- COMMAND [ARGS…]], got %q (a command goes after --)", names)
		}
		env, err := c.f.Env()
		if err != nil {
			return err
		}
		o, err := c.options()
		if err != nil {
			return err
		}
		k, s, err := session.FindKept(o.StateDir, build, step)
		if err != nil {
			return usageError("%w", err)
		}
		if o.Network, err = network.ParseMode(k.Network); err != nil {
			return fmt.Errorf("debug: build %s: %w", k.Build, err)
		}
		ses, err := session.Open(ctx, o)
		if err != nil {
			return err
		}
		defer func() { retErr = errors.Join(retErr, ses.Close()) }()
		attach, reset, err := session.Attach(os.Stdin, c.stdout, c.stderr, !*noTTY)
		if err != nil {
			return fmt.Errorf("debug: terminal: %w", err)
		}
		defer reset()
		code, err := ses.Debug(ctx, k, s, command, env, attach)
		if err != nil {
			return fmt.Errorf("debug %s %s: %w", k.Build, step, err)
		}
		if code != 0 {
			return &exitError{code: int(code), err: fmt.Errorf("%w: exit %d", errReported, code)}
		}
		return nil
	}
}
