package dockerfile

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/continuity/fs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/hostfs"
	"github.com/crun-ci/crun-ci/images"
	"github.com/crun-ci/crun-ci/oci"
	"github.com/crun-ci/crun-ci/pod"
	"github.com/crun-ci/crun-ci/remote"
	"github.com/crun-ci/crun-ci/snapshot"
	"github.com/crun-ci/crun-ci/task"
)

// Builder builds images on one containerd. Its zero value is not usable: Client and
// Image are needed.
type Builder struct {
	Client *task.Client
	// NoCache builds every layer anew (the results still go into the cache).
	NoCache bool
	// CacheMaxSize bounds the size of the layer cache in bytes; 0 means no bound.
	CacheMaxSize int64
	// CacheSecret keys the hashes by which secret build arguments enter cache keys
	// (LoadCacheSecret); builds with secret arguments need it.
	CacheSecret []byte
	// Shared, when not nil, is the layer cache shared with other hosts through a
	// registry: missing keys are looked up there, built layers pushed there.
	Shared *Shared
}

// Images makes images present (images.Store).
type Images interface {
	Get(ctx context.Context, ref string, creds func(context.Context) (remote.Credentials, error)) (*task.Image, error)
}

// Request is one image to build.
type Request struct {
	// Service names what is built in messages.
	Service string
	// Root is the build directory, pinned (hostfs.Beneath): Context, the build context's
	// directory, and Dockerfile are paths below it, resolved when the build starts, so
	// that what a step does to the build directory then cannot redirect them out of it.
	// DockerfileName is how messages name the Dockerfile (as the user wrote it).
	Root           *hostfs.Dir
	Context        string
	Dockerfile     string
	DockerfileName string
	// Text, when not nil, is the Dockerfile's content, read (by Read) when the pipeline
	// was: it is not read again.
	Text []byte
	// MaxFile bounds the size of the Dockerfile and the .dockerignore; 0 means
	// hostfs.MaxFile.
	MaxFile int64
	// Resources bound each RUN container (the operator's defaults); RUN is confined as
	// every container is (oci.Security's zero value).
	Resources oci.Resources
	// Args are the build arguments (--build-arg). SecretArgs came from encrypted sources:
	// RUN gets them through the pod's secret hand-off (never in a spec), and the cache
	// keys hold a keyed hash of their values (see run.key).
	Args       map[string]string
	SecretArgs map[string]string
	// Image is the normalised name of the image to create.
	Image string
	// Images makes the base images (FROM, COPY --from) present, by the build's pull
	// policy; Credentials, when not nil, gives the registry credentials to pull them with
	// (the service's encrypted_dockercfg_path or dockercfg_service), called only when a
	// pull needs them.
	Images      Images
	Credentials func(context.Context) (remote.Credentials, error)
	// Output receives the progress lines and RUN's standard output, Stderr (when not nil)
	// RUN's standard error; each is written by one goroutine at a time.
	Output, Stderr io.Writer
	// Pod runs the RUN containers, in its network; ADD <url> connects from that network
	// too (Pod.Dial), so that a build fetches exactly what its RUN could.
	Pod *pod.Pod
	// ID starts the names of the build's temporary containers and snapshots; Labels go
	// on them. Dir is a directory of the build's own for mount points (the pod's).
	ID     string
	Labels map[string]string
	Dir    string
}

// Result says what a build made.
type Result struct {
	// Image is the normalised name of the built image.
	Image string
	// Layers counts the layer-making instructions built; Cached how many of them came
	// from the cache, Shared how many of those from the shared cache.
	Layers, Cached, Shared int
	// Built is the image as built, to run containers of without looking its name up
	// again (another build may have taken the name since).
	Built *task.Image
}

// state is the image a stage has built so far.
type state struct {
	layers  []ocispec.Descriptor
	diffIDs []digest.Digest
	config  dockerspec.DockerOCIImage
	// key is the cache key of the state: a digest of everything that made it.
	key digest.Digest
	// args are the ARG values in scope; dirs the WORKDIRs not yet made in a layer.
	args map[string]string
	dirs []string
	// cmdSet says CMD was set in this stage (an ENTRYPOINT then keeps it).
	cmdSet bool
}

func (s *state) chainID() digest.Digest {
	if len(s.diffIDs) == 0 {
		return ""
	}
	return identity.ChainID(s.diffIDs)
}

// env is what variable expansion and RUN see: the build arguments in scope, overridden
// by the image's environment.
func (s *state) env() []string {
	var env []string
	for _, k := range slices.Sorted(maps.Keys(s.args)) {
		if !hasKey(s.config.Config.Env, k) {
			env = append(env, k+"="+s.args[k])
		}
	}
	return append(env, s.config.Config.Env...)
}

func hasKey(env []string, key string) bool {
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			return true
		}
	}
	return false
}

// run is one build.
type run struct {
	b      *Builder
	r      Request
	c      *client.Client
	ctxDir *Context
	lex    *shell.Lex
	stages []instructions.Stage
	// built holds the final state of each stage built so far, by index.
	built map[int]*state
	seq   atomic.Int64
	step  int
	steps int
	res   Result
	used  map[string]bool // build arguments some ARG declared
	// hide replaces the secret build arguments' values with their tags (see key); made
	// once, on first use.
	hide     *strings.Replacer
	hideOnce sync.Once
	bg       background
}

// background is what a build leaves running while it goes on: the deletion of the
// containers of RUNs that passed, and the writing of cache entries. At most
// maxBackground run at once; Build waits for them all before it returns.
type background struct {
	wg       sync.WaitGroup
	writes   sync.WaitGroup // of cache entries
	slots    chan struct{}
	mu       sync.Mutex
	errs     []error
	warnings []string
}

const maxBackground = 4

// later runs fn in the background, waiting for a free slot first. Its error fails the
// build and its warning is printed, when the build waits for it.
func (x *run) later(fn func() (warning string, err error)) {
	if x.bg.slots == nil {
		x.bg.slots = make(chan struct{}, maxBackground)
	}
	x.bg.slots <- struct{}{}
	x.bg.wg.Add(1)
	go func() {
		defer x.bg.wg.Done()
		warning, err := fn()
		x.bg.mu.Lock()
		if err != nil {
			x.bg.errs = append(x.bg.errs, err)
		}
		if warning != "" {
			x.bg.warnings = append(x.bg.warnings, warning)
		}
		x.bg.mu.Unlock()
		<-x.bg.slots
	}()
}

// wait waits for the background work, prints its warnings and returns its errors.
func (x *run) wait() error {
	x.bg.wg.Wait()
	x.bg.mu.Lock()
	defer x.bg.mu.Unlock()
	for _, w := range x.bg.warnings {
		x.release()
		fmt.Fprintln(x.r.Output, w)
	}
	err := errors.Join(x.bg.errs...)
	x.bg.errs, x.bg.warnings = nil, nil
	return err
}

// held is a build's output, held back while every instruction so far came from the
// cache: a build that is all cache prints nothing (its caller prints one line for it),
// one that builds a layer, warns or fails prints everything, from the first step on.
type held struct {
	w    io.Writer
	buf  bytes.Buffer
	open bool
}

func (h *held) Write(p []byte) (int, error) {
	if h.open {
		return h.w.Write(p)
	}
	return h.buf.Write(p)
}

// release prints what was held, and lets what comes through.
func (h *held) release() {
	if !h.open {
		h.open = true
		h.w.Write(h.buf.Bytes())
		h.buf.Reset()
	}
}

// Build builds the image of r and names it r.Image. Its output goes to r.Output, but
// for a build that is all cache (see held).
func (b *Builder) Build(ctx context.Context, r Request) (_ *Result, retErr error) {
	if r.Output == nil {
		r.Output = io.Discard
	}
	out := &held{w: r.Output}
	r.Output = out
	defer func() {
		if retErr != nil {
			out.release()
		}
	}()
	if len(r.SecretArgs) > 0 && len(b.CacheSecret) < minCacheSecret {
		return nil, errors.New("build with secret arguments: the builder has no cache secret")
	}
	x, needed, meta, err := parse(r)
	if err != nil {
		return nil, err
	}
	x.b, x.c = b, b.Client.Containerd()
	defer func() { retErr = errors.Join(retErr, x.wait()) }()
	stages := x.stages
	// The context is pinned now: the whole build reads this directory, whatever becomes
	// of its name.
	root, err := r.Root.Sub(r.Context, hostfs.InRoot, "the build context")
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	defer root.Close()
	if x.ctxDir, err = NewContext(root, r.maxFile()); err != nil {
		return nil, fmt.Errorf("build context %s: %w", r.Context, err)
	}
	for _, i := range needed {
		if err := x.stage(ctx, i, meta); err != nil {
			return nil, err
		}
	}
	var unused []string
	for k := range r.Args {
		if !x.used[k] {
			unused = append(unused, k)
		}
	}
	for k := range r.SecretArgs {
		if _, ok := r.Args[k]; !ok && !x.used[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		slices.Sort(unused)
		out.release()
		fmt.Fprintf(r.Output, "warning: build arguments not declared by any ARG: %s\n", strings.Join(unused, ", "))
	}
	if err := x.wait(); err != nil {
		return nil, err
	}
	final := x.built[len(stages)-1]
	if err := x.writeImage(ctx, r.Image, final); err != nil {
		return nil, err
	}
	if err := b.evict(ctx); err != nil {
		out.release()
		fmt.Fprintf(r.Output, "warning: layer cache: %v\n", err)
	}
	x.res.Built = &task.Image{Name: r.Image, Config: final.config.Config.ImageConfig, ChainID: final.chainID()}
	if hc := final.config.Config.Healthcheck; hc != nil {
		x.res.Built.Healthcheck = &task.Healthcheck{Test: hc.Test, Interval: hc.Interval, Timeout: hc.Timeout, StartPeriod: hc.StartPeriod, Retries: hc.Retries}
	}
	return &x.res, nil
}

// Read reads r's Dockerfile and checks, without building anything, that it parses and
// uses only what the builder builds; the error names the Dockerfile and line. It returns
// what it read, which a Request's Text can then hold, so that the Dockerfile checked is
// the one built.
func Read(r Request) ([]byte, error) {
	r.Text = nil
	x, _, _, err := parse(r)
	if err != nil {
		return nil, err
	}
	return x.r.Text, nil
}

// parse reads r's Dockerfile (unless r.Text holds it), parses it and checks it before
// anything is built. It returns the build (without a Builder or client), the stages to
// build, in order, and the values of the ARGs before the first FROM.
func parse(r Request) (*run, []int, map[string]string, error) {
	if r.Text == nil {
		var err error
		if r.Text, err = r.Root.ReadFile(r.Dockerfile, r.maxFile()); err != nil {
			return nil, nil, nil, err // it names the file and says why
		}
	}
	data := r.Text
	ast, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, nil, nil, r.errorf(lineOf(err), "%v", stripLine(err))
	}
	stages, metaArgs, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		msg := stripLine(err)
		if strings.Contains(msg, "no build stage in current context") {
			msg = "an instruction before the first FROM" // BuildKit's words say less
		}
		return nil, nil, nil, r.errorf(lineOf(err), "%s", msg)
	}
	if len(stages) == 0 {
		return nil, nil, nil, r.errorf(0, "no FROM instruction")
	}
	x := &run{r: r, lex: shell.NewLex(ast.EscapeToken), stages: stages, built: map[int]*state{}, used: map[string]bool{}}
	x.res.Image = r.Image

	// ARGs before the first FROM are the values of FROM lines; a stage sees them only
	// when it declares them again.
	meta := map[string]string{}
	for _, a := range metaArgs {
		if err := x.arg(meta, &a, meta, nil); err != nil {
			return nil, nil, nil, err
		}
	}
	needed, err := x.needed(meta)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, i := range needed {
		x.steps += 1 + len(stages[i].Commands)
	}
	if err := x.checkCommands(needed); err != nil {
		return nil, nil, nil, err
	}
	return x, needed, meta, nil
}

func (r *Request) maxFile() int64 {
	if r.MaxFile > 0 {
		return r.MaxFile
	}
	return hostfs.MaxFile
}

// errorf makes an error naming the Dockerfile and, when line > 0, the line.
func (r *Request) errorf(line int, format string, args ...any) error {
	where := r.DockerfileName
	if line > 0 {
		where += ":" + strconv.Itoa(line)
	}
	return fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...))
}

// lineOf is the first line an error of BuildKit's parser points at, 0 when none.
func lineOf(err error) int {
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		return le.Locations[0][0].Start.Line
	}
	return 0
}

// stripLine drops the "dockerfile parse error on line N: " that some parser errors
// carry, since errorf says where.
func stripLine(err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, "dockerfile parse error on line ") {
		if _, rest, ok := strings.Cut(msg, ": "); ok {
			return rest
		}
	}
	return msg
}

// source is an instruction as written.
func source(c instructions.Command) string {
	if s, ok := c.(fmt.Stringer); ok {
		return s.String()
	}
	return strings.ToUpper(c.Name())
}

// expanded is an instruction after variable expansion, for cache keys: its fields.
func expanded(c instructions.Command) string {
	fields, err := json.Marshal(c)
	if err != nil {
		return source(c)
	}
	return source(c) + "\x00" + string(fields)
}

func line(c instructions.Command) int {
	if loc := c.Location(); len(loc) > 0 {
		return loc[0].Start.Line
	}
	return 0
}

// stageIndex finds a stage by name (case-insensitive, as Docker) or index, among the
// stages before before.
func (x *run) stageIndex(name string, before int) (int, bool) {
	for i := 0; i < before; i++ {
		if strings.EqualFold(x.stages[i].Name, name) {
			return i, true
		}
	}
	if n, err := strconv.Atoi(name); err == nil && n >= 0 && n < before {
		return n, true
	}
	return 0, false
}

// needed lists, in order, the stages the last stage needs: through FROM and COPY --from.
func (x *run) needed(meta map[string]string) ([]int, error) {
	need := map[int]bool{len(x.stages) - 1: true}
	for i := len(x.stages) - 1; i >= 0; i-- {
		if !need[i] {
			continue
		}
		st := &x.stages[i]
		base, err := x.expand(st.BaseName, mapEnv(meta))
		if err != nil {
			return nil, x.r.errorf(st.Location[0].Start.Line, "FROM %s: %v", st.BaseName, err)
		}
		st.BaseName = base
		if j, ok := x.stageIndex(base, i); ok {
			need[j] = true
		}
		for _, c := range st.Commands {
			if cp, ok := c.(*instructions.CopyCommand); ok && cp.From != "" {
				if j, ok := x.stageIndex(cp.From, i); ok {
					need[j] = true
				}
			}
		}
	}
	var out []int
	for i := range x.stages {
		if need[i] {
			out = append(out, i)
		}
	}
	return out, nil
}

// checkCommands refuses what crun-ci does not build, before anything runs.
func (x *run) checkCommands(stages []int) error {
	for _, i := range stages {
		for _, c := range x.stages[i].Commands {
			var why string
			switch c := c.(type) {
			case *instructions.MaintainerCommand, *instructions.OnbuildCommand:
				why = "is not supported"
			case *instructions.RunCommand:
				if len(c.FlagsUsed) > 0 {
					why = fmt.Sprintf("with --%s is not supported", c.FlagsUsed[0])
				}
				if len(c.Files) > 0 {
					why = "with a here-document is not supported"
				}
			case *instructions.CopyCommand:
				why = copyFlags(c.SourceContents, c.Chmod, c.ExcludePatterns)
				if why == "" && c.Parents {
					why = "with --parents is not supported"
				}
			case *instructions.AddCommand:
				why = copyFlags(c.SourceContents, c.Chmod, c.ExcludePatterns)
				switch {
				case why != "":
				case c.Checksum != "":
					why = "with --checksum is not supported"
				case c.KeepGitDir != nil:
					why = "with --keep-git-dir is not supported"
				}
			case *instructions.CmdCommand, *instructions.EntrypointCommand, *instructions.EnvCommand,
				*instructions.ArgCommand, *instructions.WorkdirCommand, *instructions.UserCommand,
				*instructions.LabelCommand, *instructions.ExposeCommand, *instructions.VolumeCommand,
				*instructions.HealthCheckCommand, *instructions.ShellCommand, *instructions.StopSignalCommand:
			default:
				why = "is not supported"
			}
			if why != "" {
				return x.r.errorf(line(c), "%s %s", strings.ToUpper(c.Name()), why)
			}
		}
	}
	return nil
}

// copyFlags says why a COPY or ADD with these is not built, "" when it is.
func copyFlags(contents []instructions.SourceContent, chmod string, exclude []string) string {
	switch {
	case len(contents) > 0:
		return "with a here-document is not supported"
	case chmod != "":
		return "with --chmod is not supported"
	case len(exclude) > 0:
		return "with --exclude is not supported"
	}
	return ""
}

// mapEnv turns a map into what the lexer reads.
func mapEnv(m map[string]string) shell.EnvGetter {
	var env []string
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	return shell.EnvsFromSlice(env)
}

func (x *run) expand(word string, env shell.EnvGetter) (string, error) {
	out, _, err := x.lex.ProcessWord(word, env)
	return out, err
}

// release lets the build's held output through (see held).
func (x *run) release() {
	if h, ok := x.r.Output.(*held); ok {
		h.release()
	}
}

// progress prints the line that starts an instruction.
func (x *run) progress(text string) {
	x.step++
	fmt.Fprintf(x.r.Output, "step %d/%d: %s\n", x.step, x.steps, text)
}

// stage builds stage i.
func (x *run) stage(ctx context.Context, i int, meta map[string]string) error {
	st := &x.stages[i]
	x.progress(st.SourceCode)
	s, err := x.base(ctx, st, i)
	if err != nil {
		return err
	}
	for _, c := range st.Commands {
		x.progress(source(c))
		if err := x.command(ctx, s, c, meta, i); err != nil {
			var ce *commandError
			if errors.As(err, &ce) {
				return err
			}
			return &commandError{x.r.errorf(line(c), "%s: %v", source(c), err)}
		}
	}
	if len(s.dirs) > 0 {
		// WORKDIRs that no later layer made are made in a layer of their own.
		key := x.key(s.key.String(), "mkdir", strings.Join(s.dirs, "\x00"))
		if err := x.layer(ctx, s, key, "WORKDIR", func(root string) error { return nil }); err != nil {
			return x.r.errorf(0, "WORKDIR: %v", err)
		}
	}
	x.built[i] = s
	return nil
}

// commandError is an error that already says where it happened.
type commandError struct{ error }

func (e *commandError) Unwrap() error { return e.error }

// base is the state a stage starts from: scratch, an earlier stage, or an image.
func (x *run) base(ctx context.Context, st *instructions.Stage, i int) (*state, error) {
	s := &state{args: map[string]string{}}
	if j, ok := x.stageIndex(st.BaseName, i); ok {
		from := x.built[j]
		s.layers = slices.Clone(from.layers)
		s.diffIDs = slices.Clone(from.diffIDs)
		s.config = cloneConfig(from.config)
		s.key = digest.FromString("stage\x00" + from.key.String())
		return s, nil
	}
	if st.BaseName == "scratch" {
		s.config = dockerspec.DockerOCIImage{Image: ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: goarch()}}}
		s.key = digest.FromString("scratch")
		return s, nil
	}
	img, err := x.image(ctx, st.BaseName)
	if err != nil {
		return nil, x.r.errorf(st.Location[0].Start.Line, "FROM %s: %v", st.BaseName, err)
	}
	return img, nil
}

// image reads an image as the state it would start a stage with.
func (x *run) image(ctx context.Context, ref string) (*state, error) {
	found, err := x.r.Images.Get(ctx, ref, x.r.Credentials)
	if pe := (*images.PullError)(nil); errors.As(err, &pe) {
		return nil, fmt.Errorf("pull %s: %w", pe.Name, pe.Err)
	}
	if err != nil {
		return nil, err
	}
	// Found unpacked (Store.Find); only its manifest and config are read here.
	name := found.Name
	img, err := x.c.GetImage(ctx, name)
	if err != nil {
		return nil, err
	}
	m, cfg, cfgDesc, err := readImage(ctx, x.c, img.Target())
	if err != nil {
		return nil, fmt.Errorf("read image %s: %w", name, err)
	}
	return &state{
		layers:  m.Layers,
		diffIDs: cfg.RootFS.DiffIDs,
		config:  cfg,
		key:     digest.FromString("image\x00" + cfgDesc.Digest.String()),
		args:    map[string]string{},
	}, nil
}

func cloneConfig(c dockerspec.DockerOCIImage) dockerspec.DockerOCIImage {
	out := c
	out.Config.Env = slices.Clone(c.Config.Env)
	out.Config.Cmd = slices.Clone(c.Config.Cmd)
	out.Config.Entrypoint = slices.Clone(c.Config.Entrypoint)
	out.Config.Shell = slices.Clone(c.Config.Shell)
	out.Config.Labels = maps.Clone(c.Config.Labels)
	out.Config.ExposedPorts = maps.Clone(c.Config.ExposedPorts)
	out.Config.Volumes = maps.Clone(c.Config.Volumes)
	out.RootFS.DiffIDs = slices.Clone(c.RootFS.DiffIDs)
	out.History = slices.Clone(c.History)
	return out
}

// keyOf is how a build argument enters a cache key: KEY=value, the value of a secret
// one as its keyed hash (see key).
func (x *run) keyOf(k, v string) string {
	if _, ok := x.r.SecretArgs[k]; ok {
		return k + "=" + x.secretTag(v)
	}
	return k + "=" + v
}

// key is the cache key of what parts describe. Every secret build argument's value in
// them is replaced with its keyed hash first (an ENV or a path may have taken it in by
// expansion): layers built with different secrets never share a key, the same secret
// finds its layer again, and neither the value nor a plain digest of it, which a short
// secret could be guessed from, is in the key.
func (x *run) key(parts ...string) digest.Digest {
	x.hideOnce.Do(func() {
		// Longest first, then in byte order: a secret that holds another is replaced
		// whole, and the same secrets always give the same text. One pass, so a tag put
		// in is never searched for another secret.
		values := slices.Compact(slices.SortedFunc(maps.Values(x.r.SecretArgs), func(a, b string) int {
			return cmp.Or(len(b)-len(a), strings.Compare(a, b))
		}))
		var pairs []string
		for _, v := range values {
			if v != "" {
				pairs = append(pairs, v, x.secretTag(v))
			}
		}
		x.hide = strings.NewReplacer(pairs...)
	})
	return digest.FromString(x.hide.Replace(strings.Join(parts, "\x00")))
}

// secretTag is a secret value as cache keys hold it: its HMAC-SHA256 under the host's
// cache secret (Builder.CacheSecret).
func (x *run) secretTag(v string) string {
	m := hmac.New(sha256.New, x.b.CacheSecret)
	m.Write([]byte(v))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// arg carries out an ARG: each name gets the build argument's value, else the default
// (expanded with the arguments and env, the image's environment, which wins), else the
// value of an ARG before FROM (meta).
func (x *run) arg(args map[string]string, c *instructions.ArgCommand, meta map[string]string, env []string) error {
	for _, a := range c.Args {
		x.used[a.Key] = true
		if v, ok := x.r.SecretArgs[a.Key]; ok {
			args[a.Key] = v
			continue
		}
		if v, ok := x.r.Args[a.Key]; ok {
			args[a.Key] = v
			continue
		}
		if a.Value != nil {
			vars := (&state{args: args, config: dockerspec.DockerOCIImage{Config: dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{Env: env}}}}).env()
			v, err := x.expand(*a.Value, shell.EnvsFromSlice(vars))
			if err != nil {
				return fmt.Errorf("ARG %s: %w", a.Key, err)
			}
			args[a.Key] = v
			continue
		}
		if v, ok := meta[a.Key]; ok {
			args[a.Key] = v
		}
	}
	return nil
}

// command carries out one instruction on s.
func (x *run) command(ctx context.Context, s *state, c instructions.Command, meta map[string]string, stage int) error {
	if e, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		if _, isArg := c.(*instructions.ArgCommand); !isArg {
			env := shell.EnvsFromSlice(s.env())
			if err := e.Expand(func(w string) (string, error) { return x.expand(w, env) }); err != nil {
				return err
			}
		}
	}
	cfg := &s.config.Config
	metaKey := func() {
		s.key = x.key(s.key.String(), expanded(c))
		s.config.History = append(s.config.History, ocispec.History{CreatedBy: source(c), EmptyLayer: true, Comment: "crun-ci"})
	}
	switch c := c.(type) {
	case *instructions.ArgCommand:
		if err := x.arg(s.args, c, meta, s.config.Config.Env); err != nil {
			return err
		}
		var parts []string
		for _, a := range c.Args {
			if v, ok := s.args[a.Key]; ok {
				parts = append(parts, x.keyOf(a.Key, v))
			}
		}
		s.key = x.key(s.key.String(), "ARG", strings.Join(parts, "\x00"))
		return nil
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			cfg.Env = setEnv(cfg.Env, kv.Key, kv.Value)
		}
	case *instructions.WorkdirCommand:
		dir := c.Path
		if !path.IsAbs(dir) {
			dir = path.Join("/", cfg.WorkingDir, dir)
		}
		cfg.WorkingDir = path.Clean(dir)
		s.dirs = append(s.dirs, cfg.WorkingDir)
	case *instructions.UserCommand:
		cfg.User = c.User
	case *instructions.CmdCommand:
		cfg.Cmd = x.commandLine(s, c.ShellDependantCmdLine)
		s.cmdSet = true
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = x.commandLine(s, c.ShellDependantCmdLine)
		if !s.cmdSet {
			cfg.Cmd = nil
		}
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
		}
	case *instructions.ExposeCommand:
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for _, word := range c.Ports {
			expanded, err := x.expand(word, shell.EnvsFromSlice(s.env()))
			if err != nil {
				return err
			}
			for _, p := range strings.Fields(expanded) {
				ports, err := exposed(p)
				if err != nil {
					return err
				}
				for _, port := range ports {
					cfg.ExposedPorts[port] = struct{}{}
				}
			}
		}
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if v == "" {
				return errors.New("VOLUME with an empty path")
			}
			cfg.Volumes[v] = struct{}{}
		}
	case *instructions.HealthCheckCommand:
		cfg.Healthcheck = c.Health
	case *instructions.ShellCommand:
		cfg.Shell = slices.Clone(c.Shell)
	case *instructions.StopSignalCommand:
		if _, err := config.ParseSignal(c.Signal); err != nil {
			return err
		}
		cfg.StopSignal = c.Signal
	case *instructions.RunCommand:
		return x.runCommand(ctx, s, c)
	case *instructions.CopyCommand:
		return x.copy(ctx, s, source(c), c.SourcesAndDest, c.From, c.Chown, false, stage)
	case *instructions.AddCommand:
		return x.copy(ctx, s, source(c), c.SourcesAndDest, "", c.Chown, true, stage)
	default:
		return fmt.Errorf("%s is not supported", strings.ToUpper(c.Name()))
	}
	metaKey()
	return nil
}

// exposed reads one EXPOSE port as Docker does: PORT or FIRST-LAST, optionally /tcp,
// /udp or /sctp (tcp when absent, in any case), and returns each port it names.
func exposed(p string) ([]string, error) {
	ports, proto, ok := strings.Cut(p, "/")
	proto = strings.ToLower(proto)
	if !ok {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, fmt.Errorf("EXPOSE %s: protocol %q: want tcp, udp or sctp", p, proto)
	}
	first, last, isRange := strings.Cut(ports, "-")
	lo, err1 := strconv.Atoi(first)
	hi := lo
	var err2 error
	if isRange {
		hi, err2 = strconv.Atoi(last)
	}
	if err1 != nil || err2 != nil || lo < 1 || hi > 65535 || hi < lo {
		return nil, fmt.Errorf("EXPOSE %s: not a port or port range", p)
	}
	var out []string
	for n := lo; n <= hi; n++ {
		out = append(out, strconv.Itoa(n)+"/"+proto)
	}
	return out, nil
}

// setEnv sets key in env, in place of an earlier value.
func setEnv(env []string, key, value string) []string {
	for i, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			env[i] = key + "=" + value
			return env
		}
	}
	return append(env, key+"="+value)
}

// shellOf is the shell of the shell form: SHELL's, else /bin/sh -c.
func shellOf(s *state) []string {
	if len(s.config.Config.Shell) > 0 {
		return slices.Clone(s.config.Config.Shell)
	}
	return []string{"/bin/sh", "-c"}
}

// commandLine is the argument list of an exec-form or shell-form command line.
func (x *run) commandLine(s *state, c instructions.ShellDependantCmdLine) []string {
	if c.PrependShell {
		return append(shellOf(s), strings.Join(c.CmdLine, " "))
	}
	return slices.Clone(c.CmdLine)
}

// runCommand carries out a RUN: a container on a new snapshot of s, whose changes become
// the layer.
func (x *run) runCommand(ctx context.Context, s *state, c *instructions.RunCommand) error {
	args := x.commandLine(s, c.ShellDependantCmdLine)
	if len(args) == 0 {
		return errors.New("no command")
	}
	var argEnv []string
	for _, k := range slices.Sorted(maps.Keys(s.args)) {
		argEnv = append(argEnv, x.keyOf(k, s.args[k]))
	}
	key := x.key(append([]string{s.key.String(), "RUN", strings.Join(args, "\x00"), s.config.Config.User, s.config.Config.WorkingDir, strings.Join(s.dirs, "\x00")}, argEnv...)...)
	return x.layer(ctx, s, key, source(c), func(id string) error {
		return x.runIn(ctx, s, id, args)
	})
}

// runIn runs args in a container of the build's pod on the active snapshot id, and fails
// unless it exits 0. The builder mounts the snapshot and gives the container the mount as
// its root filesystem, so that once the command passed, the snapshot is unmounted and
// diffed while the container's task is deleted in the background (see later). What the
// runtime made in the snapshot for its mounts (/etc/hosts on an image without one, the
// hand-off's directory) is removed again first, so it is not in the layer.
func (x *run) runIn(ctx context.Context, s *state, id string, args []string) error {
	cfg := s.config.Config
	var env, secret []string
	for _, k := range slices.Sorted(maps.Keys(s.args)) {
		if hasKey(cfg.Env, k) {
			continue
		}
		if _, ok := x.r.SecretArgs[k]; ok {
			secret = append(secret, k+"="+s.args[k])
		} else {
			env = append(env, k+"="+s.args[k])
		}
	}
	m := pod.Member{
		ID: id, Name: "RUN", Labels: x.r.Labels, Secrets: secret,
		Container: oci.Container{
			Hostname:   "crun-ci-build",
			Image:      cfg.ImageConfig,
			Args:       args,
			Env:        env,
			WorkingDir: cfg.WorkingDir,
			Resources:  x.r.Resources,
		},
	}
	return x.mounted(ctx, id, func(root string) (retErr error) {
		// Before: the user, and which mount points the image lacks.
		passwd, group := oci.Accounts(root)
		u, err := oci.User(cfg.User, passwd, group)
		if err != nil {
			return err
		}
		m.Container.User = u
		m.RootPath = root
		spec, err := x.r.Pod.Spec(ctx, m)
		if err != nil {
			return err
		}
		var stubs []string
		for _, mnt := range spec.Mounts {
			missing, err := missingPaths(root, mnt.Destination)
			if err != nil {
				return err
			}
			stubs = append(stubs, missing...)
		}
		ctr, err := x.r.Pod.Create(ctx, m)
		if err != nil {
			return err
		}
		passed := false
		defer func() {
			if passed {
				// The process is gone; its task's shim and runc's state go meanwhile.
				x.later(func() (string, error) {
					cctx, cancel := snapshot.CleanupContext(ctx)
					defer cancel()
					return "", ctr.Delete(cctx)
				})
			} else {
				cctx, cancel := snapshot.CleanupContext(ctx)
				defer cancel()
				retErr = errors.Join(retErr, ctr.Delete(cctx))
			}
			retErr = errors.Join(retErr, removeStubs(root, stubs))
		}()
		stderr := x.r.Stderr
		if stderr == nil {
			stderr = x.r.Output
		}
		if err := ctr.Start(ctx, x.r.Output, stderr, nil); err != nil {
			return err
		}
		code, err := ctr.Wait(ctx)
		if err != nil {
			if ctx.Err() != nil {
				// An interrupted RUN is killed at once: its layer is thrown away.
				cctx, cancel := snapshot.CleanupContext(ctx)
				defer cancel()
				ctr.Stop(cctx, 0, nil)
			}
			return err
		}
		if code != 0 {
			if oom := ctr.OOMNote(ctx); oom != "" {
				return fmt.Errorf("exit code %d (%s)", code, oom)
			}
			return fmt.Errorf("exit code %d", code)
		}
		passed = true
		return nil
	})
}

// missingPaths returns the elements of the path p (absolute, inside the root filesystem
// at root) that do not exist: the runtime makes them to mount something at p.
func missingPaths(root, p string) ([]string, error) {
	var out []string
	for d := path.Clean(p); d != "/" && d != "."; d = path.Dir(d) {
		real, err := fs.RootPath(root, d)
		if err != nil {
			return nil, err
		}
		if _, err := os.Lstat(real); !errors.Is(err, os.ErrNotExist) {
			break
		}
		out = append(out, d)
	}
	return out, nil
}

// removeStubs removes what the runtime made for its mounts: of paths (missing before the
// RUN, see missingPaths), those that are an empty file or an empty directory now, deepest
// first. What the command filled stays.
func removeStubs(root string, paths []string) error {
	paths = slices.Clone(paths)
	slices.SortFunc(paths, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	var errs []error
	for _, p := range slices.Compact(paths) {
		real, err := fs.RootPath(root, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fi, err := os.Lstat(real)
		if err != nil {
			continue
		}
		if fi.Mode().IsRegular() && fi.Size() == 0 || fi.IsDir() {
			os.Remove(real) // fails, as it should, for a directory that is not empty
		}
	}
	return errors.Join(errs...)
}

// mounted mounts the active snapshot id read-write in the build's directory and calls fn
// with its root.
func (x *run) mounted(ctx context.Context, id string, fn func(root string) error) error {
	return snapshot.Mount(ctx, x.c, id, filepath.Join(x.r.Dir, "mnt", id), fn)
}

// layer makes the layer of key on top of s: from the cache when it has key, else by
// calling fn with a new active snapshot of s (after the pending WORKDIRs are made in it),
// diffing and committing it. s then has the layer.
func (x *run) layer(ctx context.Context, s *state, key digest.Digest, what string, fn func(id string) error) (retErr error) {
	x.res.Layers++
	if !x.b.NoCache {
		hit, err := x.fromCache(ctx, s, key)
		if err != nil {
			x.release()
			fmt.Fprintf(x.r.Output, "warning: layer cache: %v\n", err)
		}
		from := ""
		if !hit && err == nil && x.b.Shared != nil {
			if hit = x.fromShared(ctx, s, key); hit {
				from = " (from " + x.b.Shared.Repo + ")"
				x.res.Shared++
			}
		}
		if hit {
			x.res.Cached++
			fmt.Fprintf(x.r.Output, "  cached%s\n", from)
			return nil
		}
	}
	x.release() // a layer is built: its output, and what led to it, is worth seeing
	start := time.Now()
	id := fmt.Sprintf("%s-%d", x.r.ID, x.seq.Add(1))
	parent := s.chainID()
	if err := snapshot.Prepare(ctx, x.c, id, parent, x.r.Labels); err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			cctx, cancel := snapshot.CleanupContext(ctx)
			defer cancel()
			if err := snapshot.Remove(cctx, x.c, id); err != nil {
				retErr = errors.Join(retErr, err)
			}
		}
	}()
	if len(s.dirs) > 0 {
		err := x.mounted(ctx, id, func(root string) error {
			for _, d := range s.dirs {
				p, err := fs.RootPath(root, d)
				if err != nil {
					return err
				}
				if err := os.MkdirAll(p, 0o755); err != nil {
					return fmt.Errorf("WORKDIR %s: %w", d, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := fn(id); err != nil {
		return err
	}
	desc, diffID, err := snapshot.Diff(ctx, x.c, id, parent, x.r.Labels)
	if err != nil {
		return err
	}
	chain := identity.ChainID(append(slices.Clone(s.diffIDs), diffID))
	// When the same layer on the same parents is there already, it is used.
	if committed, err = snapshot.Commit(ctx, x.c, chain.String(), id); err != nil {
		return err
	}
	s.layers = append(s.layers, desc)
	s.diffIDs = append(s.diffIDs, diffID)
	s.dirs = nil
	s.key = key
	s.config.History = append(s.config.History, ocispec.History{CreatedBy: what, Comment: "crun-ci"})
	fmt.Fprintf(x.r.Output, "  done in %.2fs (layer %s, %s)\n", time.Since(start).Seconds(), desc.Digest.Encoded()[:12], remote.Size(desc.Size))
	entry := &state{layers: slices.Clone(s.layers), diffIDs: slices.Clone(s.diffIDs), config: cloneConfig(s.config), key: s.key}
	x.bg.writes.Add(1)
	x.later(func() (string, error) {
		defer x.bg.writes.Done()
		if err := x.toCache(ctx, entry); err != nil {
			return fmt.Sprintf("warning: layer cache: %v", err), nil
		}
		return "", nil
	})
	return nil
}
