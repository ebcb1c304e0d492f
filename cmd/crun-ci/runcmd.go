package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/log"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/steps"
	"github.com/crun-ci/crun-ci/task"
)

// runRun is `crun-ci run SERVICE [COMMAND [ARGS…]]`: one container of the service with
// its dependencies, like one step, attached to crun-ci's standard input and output.
func runRun(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) (retErr error) {
	var (
		p           projectFlags
		env         []string
		entrypoint  string
		noRemove    bool
		noTTY       bool
		quietDeps   bool
		stopTimeout time.Duration
		netMode     string
		pf          pullFlags
		kf          keyFlags
		ci          = ciFlags{}
	)
	fs := commandFlags("run", &g, stderr, " SERVICE [COMMAND [ARGS…]]")
	addNetworkFlag(fs, &netMode)
	pf.add(fs)
	kf.add(fs)
	ci.add(fs)
	fs.SetInterspersed(false) // flags after SERVICE belong to the command
	fs.StringVar(&p.dir, "dir", ".", "build directory")
	fs.StringVar(&p.servicesPath, "services-path", "", "services file (default: codeship-services.yml, .json or docker-compose.yml in --dir)")
	p.policyFlags.add(fs)
	fs.StringArrayVarP(&env, "env", "e", nil, "KEY=VAL added to the container's environment (repeatable)")
	fs.StringVar(&entrypoint, "entrypoint", "", "replace the service's entrypoint (split like a command)")
	fs.BoolVar(&noRemove, "no-remove", false, "keep the containers, snapshots and anonymous volumes")
	fs.BoolVarP(&noTTY, "no-tty", "T", false, "no terminal, even when standard input is one")
	fs.BoolVar(&quietDeps, "quiet-deps", false, "hide the output of the services it depends on")
	fs.DurationVar(&stopTimeout, "stop-timeout", 10*time.Second, "when interrupted, how long containers get after SIGTERM before SIGKILL")
	if err := parse(fs, &g, args, stderr); err != nil {
		return quietHelp(err)
	}
	if fs.NArg() == 0 {
		return usageError("run: no service given")
	}
	if err := checkEnv(env); err != nil {
		return err
	}
	service, command := fs.Arg(0), fs.Args()[1:]
	var ep []string
	if fs.Changed("entrypoint") {
		var err error
		if ep, err = config.SplitCommand(entrypoint); err != nil {
			return usageError("--entrypoint %q: %w", entrypoint, err)
		}
	}
	policy, err := p.policy()
	if err != nil {
		return err
	}
	proj, err := config.LoadServices(p.dir, p.servicesPath)
	if err == nil {
		warn(stderr, proj)
		err = steps.Check(proj, policy)
	}
	if err != nil {
		printErrors(stderr, err)
		return &exitError{code: 2, err: fmt.Errorf("%w: invalid services", errReported)}
	}
	if _, ok := proj.Services[service]; !ok {
		return usageError("run: no service %q in %s", service, rel(proj.Dir, proj.ServicesFile))
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
	step := &config.Step{Name: "run", Type: config.Run, Service: service}
	if len(command) > 0 {
		step.Command = command
	}
	proj.Steps = []*config.Step{step}

	attach := &steps.Attach{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr}
	if con, err := console.ConsoleFromFile(os.Stdin); err == nil && !noTTY {
		attach.TTY = true
		if err := con.SetRaw(); err != nil {
			return fmt.Errorf("run: terminal: %w", err)
		}
		defer con.Reset()
		attach.Resize = func(resize func(w, h uint32) error) {
			set := func() {
				if size, err := con.Size(); err == nil {
					resize(uint32(size.Width), uint32(size.Height))
				}
			}
			set()
			winch := make(chan os.Signal, 1)
			signal.Notify(winch, syscall.SIGWINCH)
			go func() {
				for range winch {
					set()
				}
			}()
		}
	}

	sess, err := g.startBuild(ctx, netMode, pf, stderr)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, sess.Close()) }()
	sum, err := steps.Run(ctx, steps.Containerd(task.New(sess.d.Client)), steps.Options{
		Project:       proj,
		MaxParallel:   1,
		NoRemove:      noRemove,
		Policy:        policy,
		Env:           env,
		Namespace:     g.namespace,
		StateDir:      sess.stateDir,
		Output:        stdout,
		StopTimeout:   stopTimeout,
		QuietDeps:     quietDeps,
		Hurry:         hurry,
		Attach:        attach,
		Entrypoint:    ep,
		Network:       sess.network,
		Pull:          sess.puller.PullWith,
		PullIfPresent: pf.ifPresent,
		BuildID:       buildID,
		Tag:           civ.Branch,
		CIEnv:         civ.Env(),
		Key:           key,
		KeySource:     keySource,
		Builder:       sess.builder,
	})
	if err := preconditions(err, stderr); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return &exitError{code: 130, err: errors.New("interrupted")}
	}
	if len(sum.Results) != 1 {
		return fmt.Errorf("run: %d results", len(sum.Results))
	}
	r := sum.Results[0]
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
