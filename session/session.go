package session

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/log"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"

	"github.com/crun-ci/crun-ci/builds"
	"github.com/crun-ci/crun-ci/civars"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/daemon"
	"github.com/crun-ci/crun-ci/dockerfile"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/remote"
	"github.com/crun-ci/crun-ci/secrets"
	"github.com/crun-ci/crun-ci/snapshot"
	"github.com/crun-ci/crun-ci/steps"
	"github.com/crun-ci/crun-ci/task"
)

// SetupError is an error of what a session or a build needs before anything runs: a
// containerd that cannot be reached or started, missing iptables, an unreadable
// Docker config. The command line exits with status 2 on it.
type SetupError struct{ Err error }

func (e *SetupError) Error() string { return e.Err.Error() }
func (e *SetupError) Unwrap() error { return e.Err }

// Options configure a session.
type Options struct {
	// Address is containerd's socket; when nothing answers there, an embedded containerd
	// is started below StateDir (absolute). Namespace is containerd's namespace.
	Address, Namespace, StateDir string
	// Network is the mode of the step networks; "" when the session runs no build
	// (import, cleanup). Subnet, Bridge and HostAccess configure them ("" for those
	// stored with the state directory, else the defaults; see network.Config).
	Network        network.Mode
	Subnet, Bridge string
	HostAccess     network.HostAccess
	// KeepLeftovers skips the clean-up of dead builds that Open does otherwise (crun-ci
	// cleanup does it itself, and reports it).
	KeepLeftovers bool
	// Pull says how images are pulled and built.
	Pull Pull
	// Progress receives pull progress and what the clean-up removed (stderr); Terminal
	// says it is a terminal, where pull progress redraws its lines.
	Progress io.Writer
	Terminal bool
}

// Pull says how images are pulled and built.
type Pull struct {
	// IfPresent pulls images that are in containerd's store too.
	IfPresent bool
	// Insecure lists registries (HOST[:PORT]) reached over plain HTTP.
	Insecure []string
	// NoCache builds every layer of built images anew; CacheMaxSize bounds the layer
	// cache in bytes (0: no bound).
	NoCache      bool
	CacheMaxSize int64
	// CacheRegistry is the repository of the layer cache shared between hosts
	// (normalised); "" for none.
	CacheRegistry string
}

// Session is an open containerd with what builds share.
type Session struct {
	o Options
	d *daemon.Daemon
	// tasks is the one task client of the connection.
	tasks   *task.Client
	network *network.Manager
	puller  *remote.Puller
	builder *dockerfile.Builder
}

// Open connects to containerd (starting the embedded one if need be) and, unless
// KeepLeftovers, removes what dead builds left. With a Network mode, it makes the step
// networks' manager first (so that a missing iptables or a bad subnet stops it before
// containerd is touched), the image puller (with the host's Docker config) and the image
// builder.
// Close the session when done.
func Open(ctx context.Context, o Options) (_ *Session, retErr error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	s := &Session{o: o}
	if o.Network != "" {
		nm, err := network.New(o.Network, network.Config{StateDir: o.StateDir, Subnet: o.Subnet, Bridge: o.Bridge, HostAccess: o.HostAccess})
		if err != nil {
			return nil, &SetupError{err}
		}
		s.network = nm
	}
	d, err := daemon.Connect(ctx, o.Address, o.StateDir, o.Namespace)
	if err != nil {
		return nil, &SetupError{err}
	}
	s.d, s.tasks = d, task.New(d.Client)
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, d.Close())
		}
	}()
	if !o.KeepLeftovers {
		if _, err := s.cleanup(ctx, false, false, true, o.Progress); err != nil {
			log.G(ctx).WithError(err).Warn("clean-up of earlier builds failed; `crun-ci cleanup` tries again")
		}
	}
	if o.Network == "" {
		return s, nil
	}
	keychain, err := remote.LoadDockerConfig("")
	if err != nil {
		return nil, &SetupError{err}
	}
	s.puller = &remote.Puller{Client: d.Client, Keychain: keychain, Insecure: o.Pull.Insecure, Progress: o.Progress, Terminal: o.Terminal, Snapshotter: snapshot.Snapshotter}
	secret, err := dockerfile.LoadCacheSecret(o.StateDir)
	if err != nil {
		return nil, &SetupError{err}
	}
	s.builder = &dockerfile.Builder{
		Client:       s.tasks,
		NoCache:      o.Pull.NoCache,
		CacheMaxSize: o.Pull.CacheMaxSize,
		CacheSecret:  secret,
	}
	if o.Pull.CacheRegistry != "" {
		s.builder.Shared = &dockerfile.Shared{Repo: o.Pull.CacheRegistry, Registry: s.puller}
	}
	return s, nil
}

// Close closes the connection (and stops the embedded containerd when no other crun-ci
// uses it).
func (s *Session) Close() error { return s.d.Close() }

// Import loads an image archive (OCI layout or `docker save`) and returns the names of
// the images it held.
func (s *Session) Import(ctx context.Context, r io.Reader) ([]string, error) {
	return s.tasks.Import(ctx, r)
}

// ImportFile imports the archive at path and returns the names of its images; an
// archive that cannot be read (a *SetupError) or holds no named image is an error.
func (s *Session) ImportFile(ctx context.Context, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &SetupError{fmt.Errorf("import %s: %w", path, err)}
	}
	defer f.Close()
	names, err := s.Import(ctx, f)
	if err == nil && len(names) == 0 {
		err = errors.New("the archive holds no named image")
	}
	if err != nil {
		if why := whyNotAnImage(path); why != "" {
			err = fmt.Errorf("%s (%w)", why, err)
		}
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	return names, nil
}

// ExportFile writes the image name (normalised as Docker does) of containerd's store,
// for this platform, to path as an OCI image layout archive (with Docker's manifest.json
// too, for docker load), which import and ctr images import read; path is replaced
// only when the whole archive is written.
func (s *Session) ExportFile(ctx context.Context, name, path string) error {
	ref, err := reference.ParseDockerRef(name)
	if err != nil {
		return &SetupError{fmt.Errorf("export %q: %w", name, err)}
	}
	is := s.d.Client.ImageService()
	if _, err := is.Get(ctx, ref.String()); err != nil {
		return fmt.Errorf("export %s: %w", ref, err)
	}
	err = WriteFile(path, func(w io.Writer) error {
		return s.d.Client.Export(ctx, w, archive.WithImage(is, ref.String()), archive.WithPlatform(platforms.DefaultStrict()))
	})
	if err != nil {
		return fmt.Errorf("export %s: %w", ref, err)
	}
	return nil
}

// whyNotAnImage says, for an archive that did not import, what is wrong with it when it
// can tell: not a tar (or cut short), or a tar of neither image format.
func whyNotAnImage(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	head := make([]byte, 10)
	n, _ := io.ReadFull(f, head)
	if c := compression.DetectCompression(head[:n]); c != compression.Uncompressed {
		return fmt.Sprintf("a compressed file (%s): import takes the uncompressed tar", c.Extension())
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ""
	}
	tr := tar.NewReader(f)
	n = 0
	var layout, save bool
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if n == 0 {
				return "not a tar archive"
			}
			return fmt.Sprintf("the archive is cut short after %d files", n)
		}
		n++
		switch strings.TrimPrefix(h.Name, "./") {
		case "index.json", "oci-layout":
			layout = true
		case "manifest.json":
			save = true
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return fmt.Sprintf("the archive is cut short in %s", h.Name)
		}
	}
	if !layout && !save {
		return "a tar archive, but of neither an OCI image layout (index.json) nor docker save (manifest.json)"
	}
	return ""
}

// Cleanup removes what builds of the session's state directory whose process is gone
// left behind (or, dry, lists it), writing a line per build to w, and returns how many
// it found. Live builds are never touched, nor kept ones (for crun-ci debug) unless
// their time is up or kept says to remove them too; those it lists, in a line each, when
// it says what it does (not on its own, as Open runs it).
func (s *Session) Cleanup(ctx context.Context, dry, kept bool, w io.Writer) (int, error) {
	return s.cleanup(ctx, dry, kept, false, w)
}

// cleanup is Cleanup; auto is the one Open runs first: it looks quickly (builds.Find)
// and does not list the kept builds.
func (s *Session) cleanup(ctx context.Context, dry, kept, auto bool, w io.Writer) (int, error) {
	orphans, err := builds.Find(ctx, s.d.Client, s.o.StateDir, s.d.Address, s.d.Namespace, auto)
	if err != nil {
		return 0, fmt.Errorf("find leftovers of earlier builds: %w", err)
	}
	var removeNetworks func(ctx context.Context, dir string) error
	if nm, err := network.New(network.None, network.Config{StateDir: s.o.StateDir}); err == nil {
		removeNetworks = nm.RemoveOrphans
	}
	var errs []error
	n := 0
	for _, o := range orphans {
		if o.Kept != nil && !kept && !o.Kept.Expired(time.Now()) {
			if !auto {
				fmt.Fprintf(w, "kept build %s (%s; crun-ci cleanup --kept removes it)\n", o.ID, keptSteps(o.Kept))
			}
			continue
		}
		n++
		if dry {
			fmt.Fprintln(w, "would remove "+o.String())
			continue
		}
		cctx, cancel := snapshot.CleanupContext(ctx)
		err := builds.Remove(cctx, s.d.Client, s.o.StateDir, o, removeNetworks)
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintln(w, "removed "+o.String())
	}
	return n, errors.Join(errs...)
}

// keptSteps says which steps of a kept build can be entered, and until when.
func keptSteps(k *builds.Kept) string {
	var names []string
	for _, st := range k.Steps {
		names = append(names, fmt.Sprintf("%q", st.Name))
	}
	until := "until removed"
	if !k.Until.IsZero() {
		until = "until " + k.Until.Local().Format(time.DateTime)
	}
	return fmt.Sprintf("steps %s, %s", strings.Join(names, ", "), until)
}

// PruneCache removes the least recently used layers of the layer cache until it holds
// at most max bytes (all, when max < 0), or with dry says what it would remove.
func (s *Session) PruneCache(ctx context.Context, max int64, dry bool) ([]dockerfile.CacheEntry, error) {
	return dockerfile.Prune(ctx, s.d.Client, max, dry)
}

// Build is one run of a pipeline's containers: what a pipeline, a single service and a
// load of images share.
type Build struct {
	Project *config.Project
	Policy  steps.Policy
	// Key decrypts the pipeline's encrypted files; nil when there is none, and KeySource
	// says where it was looked for.
	Key       *secrets.Key
	KeySource string
	// ID is crun-ci's id of the build: its objects' names and labels, its lock, its
	// summary. CI holds the build's CI values: the CI_* variables of its containers and
	// the values of its templates (CI_BUILD_ID is --ci-build-id when given, else ID).
	ID string
	CI civars.Values
	// Tag is matched by the steps' tag and exclude.
	Tag string
	// Env entries (KEY=VAL) are added to every container, after the service's.
	Env         []string
	MaxParallel int
	NoRemove    bool
	QuietDeps   bool
	// KeepOnFailure keeps failed steps for crun-ci debug, for KeepFor when positive.
	KeepOnFailure bool
	KeepFor       time.Duration
	// StopTimeout is the grace of an interrupted step; StepTimeout bounds every run step
	// without a timeout of its own.
	StopTimeout, StepTimeout time.Duration
	// HealthTimeout bounds the wait for a dependency to be healthy.
	HealthTimeout time.Duration
	// EncryptedDockercfgPath is --encrypted-dockercfg-path, DockercfgService
	// --dockercfg-service (see steps.Options).
	EncryptedDockercfgPath, DockercfgService string
	// DockerHost is --docker-host (see steps.Options).
	DockerHost string
	// Push runs push steps.
	Push bool
	// Output receives the containers' output, a prefixed line at a time, and the
	// summary's caller prints it there.
	Output io.Writer
	// Hurry, once closed, cuts the stop grace short (a second interrupt).
	Hurry <-chan struct{}
	// Events, when not nil, is told what happens in the build (steps.Event).
	Events func(steps.Event)
	// Terminal says Output is a terminal: the prefixes of the containers' lines are
	// aligned and, unless $NO_COLOR is set, coloured by service.
	Terminal bool
}

// DryRun writes what Steps would do with b, and runs nothing (steps.DryRun).
func (s *Session) DryRun(ctx context.Context, b Build, w io.Writer) error {
	return steps.DryRun(ctx, s.tasks.HasImage, s.options(b), w)
}

// Steps runs the pipeline of b.
func (s *Session) Steps(ctx context.Context, b Build) (*steps.Summary, error) {
	return s.run(ctx, s.options(b))
}

// Run runs one container of service, like a step: with command (nil for the
// service's), entrypoint (nil for the service's) and attach, and returns its result.
func (s *Session) Run(ctx context.Context, b Build, service string, command, entrypoint []string, attach *steps.Attach) (steps.Result, error) {
	step := &config.Step{Name: "run", Type: config.Run, Service: service, Command: command}
	p := *b.Project
	p.Steps = []*config.Step{step}
	b.Project = &p
	o := s.options(b)
	o.MaxParallel, o.Attach, o.Entrypoint = 1, attach, entrypoint
	sum, err := s.run(ctx, o)
	switch {
	case err != nil:
		return steps.Result{}, err
	case len(sum.Results) != 1:
		return steps.Result{}, fmt.Errorf("run: %d results", len(sum.Results))
	}
	return sum.Results[0], nil
}

// Spec writes the runtime spec a container of service would get, as JSON, to w (see
// steps.Options.Spec); the error is what kept it from doing so.
func (s *Session) Spec(ctx context.Context, b Build, service string, w io.Writer) error {
	o := s.options(b)
	o.Spec = &steps.SpecRequest{Service: service, Output: w}
	sum, err := s.run(ctx, o)
	if err != nil {
		return err
	}
	if len(sum.Results) == 1 && sum.Results[0].Err != nil {
		return sum.Results[0].Err
	}
	return nil
}

// Load makes the images of services present (pulled or built) without running a step.
func (s *Session) Load(ctx context.Context, b Build, services []string) (*steps.Summary, error) {
	o := s.options(b)
	o.Load = services
	return s.run(ctx, o)
}

// run runs a build of o on the session's containerd.
// The layer cache's pushes to the cache registry finish (or fail, as a warning) before
// it returns.
func (s *Session) run(ctx context.Context, o steps.Options) (*steps.Summary, error) {
	sum, err := steps.Run(ctx, steps.Containerd(s.tasks), o)
	if s.builder != nil && s.builder.Shared != nil {
		sh := s.builder.Shared
		began := time.Now()
		n, perr := sh.Wait(ctx)
		if n > 0 {
			fmt.Fprintf(s.o.Progress, "cache registry: pushed %d layers to %s (%.1fs after the build)\n", n, sh.Repo, time.Since(began).Seconds())
		}
		if perr != nil {
			log.G(ctx).WithError(perr).Warnf("cache registry %s: some layers were not pushed; the next build pushes them", sh.Repo)
		}
	}
	return sum, err
}

// options is the one translation of a Build into steps.Options.
func (s *Session) options(b Build) steps.Options {
	o := steps.Options{
		Project:                b.Project,
		Policy:                 b.Policy,
		Tag:                    b.Tag,
		Env:                    b.Env,
		MaxParallel:            b.MaxParallel,
		NoRemove:               b.NoRemove,
		KeepOnFailure:          b.KeepOnFailure,
		KeepFor:                b.KeepFor,
		BuildID:                b.ID,
		Namespace:              s.o.Namespace,
		StateDir:               s.o.StateDir,
		Output:                 b.Output,
		StopTimeout:            b.StopTimeout,
		StepTimeout:            b.StepTimeout,
		HealthTimeout:          b.HealthTimeout,
		EncryptedDockercfgPath: b.EncryptedDockercfgPath,
		DockercfgService:       b.DockercfgService,
		DockerHost:             b.DockerHost,
		QuietDeps:              b.QuietDeps,
		Network:                s.network,
		CIEnv:                  b.CI.Env(),
		CI:                     b.CI,
		Key:                    b.Key,
		KeySource:              b.KeySource,
		Pull:                   s.puller.PullWith,
		PullIfPresent:          s.o.Pull.IfPresent,
		Builder:                s.builder,
		Hurry:                  b.Hurry,
		Events:                 b.Events,
		Align:                  b.Terminal,
		Color:                  b.Terminal && os.Getenv("NO_COLOR") == "",
	}
	if b.Push {
		o.Push = s.puller.PushWith
	}
	return o
}
