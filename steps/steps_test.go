package steps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"

	"github.com/crun-ci/crun-ci/civars"
	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/pod"
	"github.com/crun-ci/crun-ci/remote"
	"github.com/crun-ci/crun-ci/task"
)

// fake is a Runtime whose containers "run" their args: `exit N` exits with N, `sleep`
// sleeps 30 ms, `echo WORDS` prints WORDS; everything else exits 0.
type fake struct {
	mu         sync.Mutex
	images     map[string]*task.Image
	root       string // the image filesystem View shows
	started    []string
	live       map[string]bool
	running    int
	maxRunning int
	leases     int
	// callBefore makes Start call its before hook (with pid 1): the readiness of a
	// step's dependencies. Tests with host volumes leave it off (the mount check would
	// look at the host's pid 1).
	callBefore bool
	killed     []string
	// tasksAhead are the containers whose task was created ahead of their start.
	tasksAhead []string
}

func newFake(t *testing.T) *fake {
	return &fake{
		images: map[string]*task.Image{"busybox": {Name: "docker.io/library/busybox:latest"}},
		root:   t.TempDir(),
		live:   map[string]bool{},
	}
}

func (f *fake) Image(_ context.Context, ref string) (*task.Image, error) {
	f.mu.Lock()
	img, ok := f.images[ref]
	f.mu.Unlock()
	if ok {
		return img, nil
	}
	return nil, fmt.Errorf("image %s: %w", ref, errdefs.ErrNotFound)
}

func (f *fake) View(_ context.Context, _ *task.Image, _ string, _ map[string]string, _ string, fn func(string) error) error {
	return fn(f.root)
}

func (f *fake) Lease(ctx context.Context, _ map[string]string, _ time.Duration) (context.Context, func(context.Context) error, error) {
	f.mu.Lock()
	f.leases++
	f.mu.Unlock()
	return ctx, func(context.Context) error {
		f.mu.Lock()
		f.leases--
		f.mu.Unlock()
		return nil
	}, nil
}

func (f *fake) Create(_ context.Context, o task.Options) (pod.Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.live[o.ID] = true
	return &fakeContainer{f: f, id: o.ID, args: o.Spec.Process.Args, env: o.Spec.Process.Env, stop: make(chan struct{})}, nil
}

type fakeContainer struct {
	f      *fake
	id     string
	args   []string
	env    []string
	stdout io.Writer
	// stop ends a container whose command is "serve" (a dependency that runs until it is
	// killed).
	stop     chan struct{}
	stopOnce sync.Once
}

func (c *fakeContainer) ID() string { return c.id }

// CreateTask notes that the task was made ahead of its turn (tasksAhead).
func (c *fakeContainer) CreateTask(_ context.Context, stdout, _ io.Writer) error {
	c.f.mu.Lock()
	c.f.tasksAhead = append(c.f.tasksAhead, c.id)
	c.f.mu.Unlock()
	c.stdout = stdout
	return nil
}

func (c *fakeContainer) Start(_ context.Context, stdout, _ io.Writer, before func(uint32) error) error {
	if c.f.callBefore && before != nil {
		if err := before(1); err != nil {
			return err
		}
	}
	c.f.mu.Lock()
	c.f.started = append(c.f.started, strings.Join(c.args, " "))
	c.f.running++
	c.f.maxRunning = max(c.f.maxRunning, c.f.running)
	c.f.mu.Unlock()
	c.stdout = stdout
	return nil
}

func (c *fakeContainer) Wait(context.Context) (uint32, error) {
	defer func() {
		c.f.mu.Lock()
		c.f.running--
		c.f.mu.Unlock()
	}()
	switch c.args[0] {
	case "oom":
		return 137, nil
	case "exit":
		var code uint32
		fmt.Sscan(c.args[1], &code)
		return code, nil
	case "sleep":
		time.Sleep(30 * time.Millisecond)
	case "echo":
		fmt.Fprintln(c.stdout, strings.Join(c.args[1:], " "))
	case "env":
		for _, e := range c.env {
			fmt.Fprintln(c.stdout, e)
		}
	case "serve":
		<-c.stop
		return 137, nil
	}
	return 0, nil
}

func (c *fakeContainer) Kill(_ context.Context, sig syscall.Signal) error {
	if sig == syscall.SIGKILL {
		c.f.mu.Lock()
		c.f.killed = append(c.f.killed, c.args[0])
		c.f.mu.Unlock()
		c.stopOnce.Do(func() { close(c.stop) })
	}
	return nil
}

// OOMKilled says a container whose command is "oom" ran out of memory.
func (c *fakeContainer) OOMKilled(context.Context) (bool, error) {
	return c.args[0] == "oom", nil
}

func (c *fakeContainer) Resize(context.Context, uint32, uint32) error { return nil }

// Exec runs a health check: "unhealthy" fails with "not ready", anything else passes.
func (c *fakeContainer) Exec(ctx context.Context, _ string, args []string) (uint32, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	if len(args) > 0 && args[0] == "unhealthy" {
		return 1, []byte("not ready"), nil
	}
	return 0, nil, nil
}

// DeleteTask keeps the container (a kept step's) as live.
func (c *fakeContainer) DeleteTask(context.Context) error {
	c.stopOnce.Do(func() { close(c.stop) })
	return nil
}

func (c *fakeContainer) Delete(context.Context) error {
	c.stopOnce.Do(func() { close(c.stop) })
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	delete(c.f.live, c.id)
	return nil
}

// load writes a project into a temporary build directory and loads it.
func load(t *testing.T, services, steps string) *config.Project {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{"codeship-services.yml": services, "codeship-steps.yml": steps} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := config.Load(dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, f *fake, p *config.Project, o Options) (*Summary, string, error) {
	t.Helper()
	var out bytes.Buffer
	o.Project = p
	o.Namespace = "test"
	o.StateDir = t.TempDir()
	o.Output = &out
	sum, err := Run(context.Background(), f, o)
	if len(f.live) != 0 {
		t.Errorf("containers left: %v", f.live)
	}
	if f.leases != 0 {
		t.Errorf("%d leases left", f.leases)
	}
	if builds, _ := os.ReadDir(filepath.Join(o.StateDir, "builds")); len(builds) != 0 {
		t.Errorf("build directories left: %v", builds)
	}
	return sum, out.String(), err
}

type outcome struct {
	Step   string
	Status Status
	Code   uint32
}

func outcomes(s *Summary) []outcome {
	var out []outcome
	for _, r := range s.Results {
		out = append(out, outcome{r.Step, r.Status, r.ExitCode})
	}
	return out
}

const oneService = "app:\n  image: busybox\n"

func TestRunStopsASerialChainAtTheFirstFailureAndRunsOnFail(t *testing.T) {
	f := newFake(t)
	p := load(t, oneService, `
- {name: a, service: app, command: exit 0}
- name: b
  service: app
  command: exit 3
  on_fail:
  - {name: hook, command: echo hooked}
- {name: c, service: app, command: exit 0}
`)
	sum, out, err := run(t, f, p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []outcome{{"a", Passed, 0}, {"b", Failed, 3}, {"hook", Passed, 0}, {"c", NotRun, 0}}
	if diff := cmp.Diff(want, outcomes(sum)); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if sum.Passed() {
		t.Error("summary passed, want failed")
	}
	if !strings.Contains(out, "hook/app | hooked\n") {
		t.Errorf("on_fail output missing:\n%s", out)
	}
}

func TestRunLetsParallelSiblingsFinishAndFailsTheGroup(t *testing.T) {
	f := newFake(t)
	p := load(t, oneService, `
- type: parallel
  steps:
  - {name: fails, service: app, command: exit 1}
  - {name: slow, service: app, command: sleep}
  - {name: fine, service: app, command: exit 0}
- {name: after, service: app, command: exit 0}
`)
	sum, _, err := run(t, f, p, Options{MaxParallel: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := []outcome{{"fails", Failed, 1}, {"slow", Passed, 0}, {"fine", Passed, 0}, {"after", NotRun, 0}}
	if diff := cmp.Diff(want, outcomes(sum)); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
}

func TestRunHonoursMaxParallel(t *testing.T) {
	f := newFake(t)
	var sb strings.Builder
	sb.WriteString("- type: parallel\n  steps:\n")
	for i := 0; i < 6; i++ {
		sb.WriteString("  - {service: app, command: sleep}\n")
	}
	p := load(t, oneService, sb.String())
	if _, _, err := run(t, f, p, Options{MaxParallel: 2}); err != nil {
		t.Fatal(err)
	}
	if f.maxRunning != 2 {
		t.Errorf("at most %d steps ran at once, want 2", f.maxRunning)
	}
}

func TestRunReportsEveryPreconditionBeforeStartingAnything(t *testing.T) {
	f := newFake(t)
	p := load(t, `
app:
  image: busybox
  volumes: ["./missing:/x"]
other:
  image: nope
`, "- {service: app, command: exit 0}\n- {service: other, command: exit 0}\n")
	_, _, err := run(t, f, p, Options{})
	var pe *PreconditionError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v, want a *PreconditionError", err)
	}
	var got []string
	for _, e := range pe.Errs {
		got = append(got, e.Error())
	}
	want := []string{
		`codeship-services.yml:4: service "app": volume "./missing:/x": host path ` + filepath.Join(p.Dir, "missing") + ` does not exist (create it, e.g. with a .gitkeep in the repository)`,
		`codeship-services.yml:5: service "other": image nope: not found`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if len(f.started) != 0 {
		t.Errorf("started %v before the preconditions held", f.started)
	}
}

func TestRunGivesContainersTheCIVariablesServiceEnvironmentAndFlags(t *testing.T) {
	f := newFake(t)
	p := load(t, "app:\n  image: busybox\n  environment: {A: service, B: service}\n", "- {name: e, service: app, command: env}\n")
	_, out, err := run(t, f, p, Options{Tag: "main", BuildID: "0123456789", Env: []string{"B=flag"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		got = append(got, strings.TrimPrefix(l, "e/app | "))
	}
	sort.Strings(got)
	want := []string{"A=service", "B=flag", "CI=true", "CI_BRANCH=main", "CI_BUILD_ID=0123456789", "CI_NAME=codeship", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("environment (-want +got):\n%s", diff)
	}
}

func TestRunSkipsPushStepsWithANotice(t *testing.T) {
	f := newFake(t)
	p := load(t, oneService, "- {type: push, service: app, image_name: x/app}\n")
	sum, _, err := run(t, f, p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Results) != 1 || sum.Results[0].Status != Skipped || !sum.Passed() {
		t.Errorf("results %+v, want one skipped push step and a passed build", sum.Results)
	}
}

func TestPlanFiltersByTagAndExclude(t *testing.T) {
	p := load(t, oneService, `
- {name: plain, service: app}
- {name: exact, service: app, tag: master}
- {name: regex, service: app, tag: ^release/}
- {name: excluded, service: app, exclude: ^master$}
- type: parallel
  tag: nope
  steps:
  - {name: in-dropped-group, service: app}
- type: serial
  steps:
  - {name: only-child-dropped, service: app, tag: nope}
`)
	names := func(steps []*config.Step) []string {
		var out []string
		var walk func([]*config.Step)
		walk = func(ss []*config.Step) {
			for _, s := range ss {
				if s.Type == config.Run {
					out = append(out, s.Name)
				}
				walk(s.Steps)
			}
		}
		walk(steps)
		return out
	}
	for _, tc := range []struct {
		tag  string
		want []string
	}{
		{"", []string{"plain", "excluded"}},
		{"master", []string{"plain", "exact"}},
		{"release/1.0", []string{"plain", "regex", "excluded"}},
		{"master-2", []string{"plain", "excluded"}},
	} {
		if diff := cmp.Diff(tc.want, names(Plan(p.Steps, tc.tag))); diff != "" {
			t.Errorf("tag %q (-want +got):\n%s", tc.tag, diff)
		}
	}
	// Without a tag, the tagged steps and groups are kept, to be shown as skipped.
	skips := Skips(p.Steps, "")
	var skipped []string
	for s, why := range skips {
		skipped = append(skipped, s.Name+": "+why)
	}
	slices.Sort(skipped)
	want := []string{"exact: tag master; pass --tag to run it", "only-child-dropped: tag nope; pass --tag to run it", "parallel_1: tag nope; pass --tag to run it", "regex: tag ^release/; pass --tag to run it"}
	if diff := cmp.Diff(want, skipped); diff != "" {
		t.Errorf("Skips (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"plain", "exact", "regex", "excluded", "in-dropped-group", "only-child-dropped"}, names(PlanKeeping(p.Steps, "", skips))); diff != "" {
		t.Errorf("PlanKeeping (-want +got):\n%s", diff)
	}
	if Skips(p.Steps, "master") != nil {
		t.Error("Skips with a tag is not nil")
	}
}

func TestOutputPrefixesWholeLinesAndBoundsLongOnes(t *testing.T) {
	var buf bytes.Buffer
	o := NewOutput(&buf)
	s := o.Stream("p | ")
	for _, chunk := range []string{"one\ntw", "o\n", "three", " and more\nlast"} {
		s.Write([]byte(chunk))
	}
	s.Close()
	want := "p | one\np | two\np | three and more\np | last\n"
	if got := buf.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}

	buf.Reset()
	s = o.Stream("p | ")
	s.Write(bytes.Repeat([]byte("x"), maxLine*2+10))
	s.Close()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 || len(lines[0]) != len("p | ")+maxLine || len(lines[2]) != len("p | ")+10 {
		t.Errorf("a line of 2×maxLine+10 bytes came out as %d lines", len(lines))
	}

	// A line of exactly maxLine bytes, its newline in the next write, is one line.
	buf.Reset()
	s = o.Stream("p | ")
	s.Write(bytes.Repeat([]byte("y"), maxLine))
	s.Write([]byte("\nnext\n"))
	s.Close()
	if got, want := buf.String(), "p | "+strings.Repeat("y", maxLine)+"\np | next\n"; got != want {
		t.Errorf("a line of exactly maxLine bytes came out as %d lines", strings.Count(got, "\n"))
	}
}

// Names are checked when the pipeline is read; the output escapes their control
// characters in any case, and leaves what containers write as it is.
func TestCrunCIsOwnLinesNeverPrintAControlCharacterRaw(t *testing.T) {
	var buf bytes.Buffer
	s := NewOutput(&buf).Stream("st\x1b[2Jep/app | ")
	s.Write([]byte("data \x1b[31mred\n"))
	if got, want := buf.String(), "st\\x1b[2Jep/app | data \x1b[31mred\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	buf.Reset()
	(&Summary{BuildID: "b", Results: []Result{{Step: "a\nFAKE PASSED", Service: "s\x1b]0;x\x07", Status: Failed, ExitCode: 1}}}).Print(&buf)
	if strings.ContainsAny(buf.String(), "\x1b\x07") || strings.Contains(buf.String(), "\nFAKE") {
		t.Errorf("the summary prints a control character raw: %q", buf.String())
	}
}

func TestRunReportsAnOOMKill(t *testing.T) {
	f := newFake(t)
	p := load(t, "app:\n  image: busybox\n  mem_limit: 64m\n", "- {name: a, service: app, command: oom}\n")
	sum, _, err := run(t, f, p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sum.Print(&buf)
	if !strings.Contains(buf.String(), "FAILED      a (app)") || !strings.Contains(buf.String(), ": exit code 137 (killed: out of memory (limit 64MiB))") {
		t.Errorf("summary %q does not say the step ran out of memory", buf.String())
	}
}

func TestPushStepsTagTheServiceImageFromTheTemplate(t *testing.T) {
	f := newFake(t)
	f.images["registry.example.com/team/app:dev"] = &task.Image{Name: "registry.example.com/team/app:dev"}
	p := load(t, "app:\n  image: registry.example.com/team/app:dev\nother:\n  image: busybox\n", `
- {name: tagged, type: push, service: app, image_name: registry.example.com/team/app, image_tag: "{{ .Branch }}/{{ .CommitID }}!"}
- {name: default-tag, type: push, service: app, image_name: registry.example.com/team/app}
- {name: wrong-image, type: push, service: other, image_name: registry.example.com/team/app}
`)
	var pushed []string
	push := func(_ context.Context, source, target string, _ remote.Credentials) error {
		pushed = append(pushed, source+" -> "+target)
		return nil
	}
	ci := civars.Values{Branch: "feature-1", CommitID: "abc123"}
	sum, _, err := run(t, f, p, Options{Push: push, CI: ci})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"registry.example.com/team/app:dev -> registry.example.com/team/app:feature-1abc123",
		"registry.example.com/team/app:dev -> registry.example.com/team/app:latest",
	}
	if diff := cmp.Diff(want, pushed); diff != "" {
		t.Errorf("pushes (-want +got):\n%s", diff)
	}
	if r := sum.Results[2]; r.Status != Failed || r.Err == nil || !strings.Contains(r.Err.Error(), `image_name registry.example.com/team/app is not the image of service "other" (docker.io/library/busybox)`) {
		t.Errorf("wrong-image: %+v", r)
	}

	// Without --push they are skipped.
	sum, _, err = run(t, f, p, Options{})
	if err != nil || sum.Results[0].Status != Skipped {
		t.Errorf("without Push: %+v, %v", sum.Results, err)
	}
}

func TestAPushTagThatNoRegistryTakesIsAnError(t *testing.T) {
	f := newFake(t)
	f.images["registry.example.com/team/app:dev"] = &task.Image{Name: "registry.example.com/team/app:dev"}
	p := load(t, "app:\n  image: registry.example.com/team/app:dev\n", `
- type: parallel
  steps:
  - {name: dash, type: push, service: app, image_name: registry.example.com/team/app, image_tag: "-{{ .Branch }}"}
  - {name: nothing-left, type: push, service: app, image_name: registry.example.com/team/app, image_tag: "!!!"}
`)
	push := func(context.Context, string, string, remote.Credentials) error { return nil }
	sum, _, err := run(t, f, p, Options{Push: push, CI: civars.Values{Branch: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{`push: image_tag "-{{ .Branch }}" gives no valid tag`, `push: image_tag "!!!" gives no valid tag`} {
		if r := sum.Results[i]; r.Status != Failed || r.Err == nil || r.Err.Error() != want {
			t.Errorf("%s: %+v, want error %q", r.Step, r, want)
		}
	}
}

func TestAStepWaitsForItsDependencyToBeHealthyAndStopsItAfter(t *testing.T) {
	for _, tt := range []struct {
		name, check, wantErr string
	}{
		{name: "a healthy dependency lets the step run", check: "healthy"},
		// Checked at once and after gaps of 10, 20, 40 … ms, then every second, whatever
		// the check's interval, until --health-timeout: at 0, 0.01, 0.03, 0.07, 0.15,
		// 0.31, 0.63, 1.27 and 2.27 s.
		{name: "an unhealthy one fails the step with the check's output once the bound passes", check: "unhealthy", wantErr: `dependency "db" is not healthy after 2s (9 checks; --health-timeout): exit code 1: not ready`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.callBefore = true
			p := load(t, `
db:
  image: busybox
  command: serve
  healthcheck: {test: ["CMD", "`+tt.check+`"], interval: 10ms}
app:
  image: busybox
  depends_on: [db]
`, "- {name: a, service: app, command: echo ran}\n")
			sum, out, err := run(t, f, p, Options{HealthTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			r := sum.Results[0]
			if tt.wantErr == "" {
				if r.Status != Passed || !strings.Contains(out, "a/app | ran") {
					t.Errorf("result %+v, output %q", r, out)
				}
			} else if r.Status != Failed || r.Err == nil || !strings.Contains(r.Err.Error(), tt.wantErr) {
				t.Errorf("result %+v, want the error %q", r, tt.wantErr)
			}
			// The dependency, which ignores nothing but SIGKILL here, is killed at once:
			// it has no stop_grace_period.
			if !slices.Equal(f.killed, []string{"serve"}) {
				t.Errorf("killed %q, want the dependency", f.killed)
			}
		})
	}
}

func TestAStepTimeoutEndsTheWaitForADependency(t *testing.T) {
	f := newFake(t)
	f.callBefore = true
	p := load(t, `
db:
  image: busybox
  command: serve
  healthcheck: {test: ["CMD", "unhealthy"], interval: 10ms, retries: 1000}
app:
  image: busybox
  depends_on: [db]
`, "- {name: a, service: app, command: echo ran, timeout: 200ms}\n")
	began := time.Now()
	sum, _, err := run(t, f, p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r := sum.Results[0]; r.Status != TimedOut {
		t.Errorf("result %+v, want timed out", r)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("the step took %s", d)
	}
}
