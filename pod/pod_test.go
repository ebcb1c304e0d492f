package pod

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/crun-ci/crun-ci/oci"
	"github.com/crun-ci/crun-ci/secrets"
	"github.com/crun-ci/crun-ci/task"
)

// fake is a Creator whose tasks run until killed by a signal they do not ignore; a task
// whose command is "exit" ends at once.
type fake struct {
	mu      sync.Mutex
	created map[string]task.Options
	deleted []string
	signals []string
	// tasksDeleted are the members whose task alone was deleted (Keep).
	tasksDeleted []string
}

func newFake() *fake { return &fake{created: map[string]task.Options{}} }

func (f *fake) Create(ctx context.Context, o task.Options) (Task, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created[o.ID] = o
	ignore := map[syscall.Signal]bool{}
	for _, a := range o.Spec.Process.Args {
		if a == "ignore-term" {
			ignore[syscall.SIGTERM] = true
		}
	}
	return &fakeTask{f: f, id: o.ID, args: o.Spec.Process.Args, ignore: ignore, done: make(chan struct{})}, nil
}

type fakeTask struct {
	f      *fake
	id     string
	args   []string
	ignore map[syscall.Signal]bool
	once   sync.Once
	done   chan struct{}
	code   uint32
}

func (t *fakeTask) ID() string { return t.id }

func (t *fakeTask) CreateTask(ctx context.Context, _, _ io.Writer) error { return ctx.Err() }

func (t *fakeTask) Start(ctx context.Context, stdout, _ io.Writer, before func(uint32) error) error {
	if before != nil {
		if err := before(1); err != nil {
			return err
		}
	}
	if slices.Contains(t.args, "exit") {
		t.end(0)
	}
	if stdout != nil && slices.Contains(t.args, "read-env") {
		// What exec-env would hand the process.
		env, err := secrets.ReadEnvFile(t.f.created[t.id].Spec.Mounts[len(t.f.created[t.id].Spec.Mounts)-1].Source)
		if err != nil {
			return err
		}
		io.WriteString(stdout, strings.Join(env, ","))
	}
	return nil
}

func (t *fakeTask) end(code uint32) {
	t.once.Do(func() {
		t.code = code
		close(t.done)
	})
}

func (t *fakeTask) Wait(ctx context.Context) (uint32, error) {
	select {
	case <-t.done:
		return t.code, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (t *fakeTask) OOMKilled(context.Context) (bool, error) { return false, nil }

func (t *fakeTask) Kill(ctx context.Context, sig syscall.Signal) error {
	t.f.mu.Lock()
	t.f.signals = append(t.f.signals, t.id+" "+sig.String())
	t.f.mu.Unlock()
	if !t.ignore[sig] {
		t.end(128 + uint32(sig))
	}
	return ctx.Err()
}

func (t *fakeTask) Resize(context.Context, uint32, uint32) error { return nil }

func (t *fakeTask) Exec(ctx context.Context, _ string, _ []string) (uint32, []byte, error) {
	return 0, nil, ctx.Err()
}

func (t *fakeTask) DeleteTask(ctx context.Context) error {
	t.end(137)
	t.f.mu.Lock()
	t.f.tasksDeleted = append(t.f.tasksDeleted, t.id)
	t.f.mu.Unlock()
	return ctx.Err()
}

func (t *fakeTask) Delete(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.end(137)
	t.f.mu.Lock()
	t.f.deleted = append(t.f.deleted, t.id)
	t.f.mu.Unlock()
	return nil
}

func newPod(t *testing.T, f *fake) *Pod {
	t.Helper()
	p, err := New(context.Background(), f, Options{ID: "b-1", Dir: filepath.Join(t.TempDir(), "pod"), Namespace: "test", Labels: map[string]string{"crun-ci.build": "b"}, Handoff: &Exe{Path: "/proc/self/exe"}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func member(id string, args ...string) Member {
	return Member{ID: id, Name: id, Container: oci.Container{Args: args}}
}

// logged captures what the pod says on stderr (through the context's logger).
func logged(t *testing.T) (context.Context, *bytes.Buffer) {
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	return log.WithLogger(context.Background(), logrus.NewEntry(l).WithField("step", "test")), &buf
}

func TestStopSendsTheSignalThenKillsAfterTheGrace(t *testing.T) {
	for _, tt := range []struct {
		name        string
		args        []string
		stopSignal  syscall.Signal
		grace       time.Duration
		wantSignals []string
		wantSaid    string
		atLeast     time.Duration
	}{
		{
			name:        "no grace: SIGKILL at once, nothing said",
			args:        []string{"ignore-term"},
			wantSignals: []string{"c killed"},
		},
		{
			name:        "a process that ends on SIGTERM gets no SIGKILL, and nothing is said",
			args:        []string{"serve"},
			grace:       5 * time.Second,
			wantSignals: []string{"c terminated"},
		},
		{
			name:        "a process that ignores it gets SIGKILL after the grace, and crun-ci says it waits",
			args:        []string{"ignore-term"},
			grace:       300 * time.Millisecond,
			wantSignals: []string{"c terminated", "c killed"},
			wantSaid:    `stopping \"c\" (container c): sent SIGTERM, waiting up to 200ms before SIGKILL" step=test`, // 300ms less the 100ms it waits quietly, to a tenth of a second
			atLeast:     300 * time.Millisecond,
		},
		{
			name:        "the service's stop signal is sent instead",
			args:        []string{"serve"},
			stopSignal:  syscall.SIGQUIT,
			grace:       time.Second,
			wantSignals: []string{"c quit"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			p := newPod(t, f)
			m := member("c", tt.args...)
			m.StopSignal = tt.stopSignal
			c, err := p.Create(context.Background(), m)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Start(context.Background(), nil, nil, nil); err != nil {
				t.Fatal(err)
			}
			ctx, said := logged(t)
			began := time.Now()
			if err := c.Stop(ctx, tt.grace, nil); err != nil {
				t.Fatal(err)
			}
			took := time.Since(began)
			if !slices.Equal(f.signals, tt.wantSignals) {
				t.Errorf("signals %q, want %q", f.signals, tt.wantSignals)
			}
			if tt.wantSaid == "" && said.Len() > 0 {
				t.Errorf("said %q, want nothing", said)
			}
			if tt.wantSaid != "" && !strings.Contains(said.String(), tt.wantSaid) {
				t.Errorf("said %q, want %q", said, tt.wantSaid)
			}
			if took < tt.atLeast {
				t.Errorf("Stop took %s, want at least the grace %s", took, tt.atLeast)
			}
			if err := p.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestASecondSignalCutsTheGraceShort(t *testing.T) {
	f := newFake()
	p := newPod(t, f)
	c, _ := p.Create(context.Background(), member("c", "ignore-term"))
	c.Start(context.Background(), nil, nil, nil)
	hurry := make(chan struct{})
	time.AfterFunc(200*time.Millisecond, func() { close(hurry) })
	began := time.Now()
	if err := c.Stop(context.Background(), time.Hour, hurry); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("Stop took %s after the hurry", took)
	}
	if !slices.Equal(f.signals, []string{"c terminated", "c killed"}) {
		t.Errorf("signals %q", f.signals)
	}
	p.Close(context.Background())
}

func TestStopEndsWithItsContext(t *testing.T) {
	f := newFake()
	p := newPod(t, f)
	c, _ := p.Create(context.Background(), member("c", "ignore-term"))
	c.Start(context.Background(), nil, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Stop(ctx, time.Hour, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop = %v, want the context's deadline", err)
	}
	p.Close(context.Background())
}

func TestWaitEndsWithItsContextAndTheTaskRunsOn(t *testing.T) {
	f := newFake()
	p := newPod(t, f)
	c, _ := p.Create(context.Background(), member("c", "serve"))
	c.Start(context.Background(), nil, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait = %v, want context.Canceled", err)
	}
	if isClosed(c.exited) {
		t.Error("the task ended with the wait")
	}
	c.Kill(context.Background(), syscall.SIGTERM)
	if code, err := c.Wait(context.Background()); err != nil || code != 128+15 {
		t.Errorf("Wait = %d, %v; want 143", code, err)
	}
	p.Close(context.Background())
}

func TestSecretsReachTheProcessThroughTheHandoffOnly(t *testing.T) {
	f := newFake()
	p := newPod(t, f)
	m := member("c", "read-env")
	m.Secrets = []string{"TOKEN=s3cret"}
	c, err := p.Create(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	spec := f.created["c"].Spec
	if got, want := spec.Process.Args, []string{secrets.HandoffExe, "exec-env", secrets.HandoffFIFO, "--", "read-env"}; !slices.Equal(got, want) {
		t.Errorf("args %q: want the hand-off's", got)
	}
	if strings.Contains(strings.Join(spec.Process.Env, " "), "s3cret") {
		t.Error("the secret is in the spec's environment")
	}
	var out bytes.Buffer
	if err := c.Start(context.Background(), &out, nil, nil); err != nil {
		t.Fatal(err)
	}
	if out.String() != "TOKEN=s3cret" {
		t.Errorf("the process read %q", out.String())
	}
	fifo := spec.Mounts[len(spec.Mounts)-1].Source
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(fifo); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the hand-off %s is still there after Close", fifo)
	}
}

func TestCloseDeletesTheLastMadeFirstAndRemovesTheDirectory(t *testing.T) {
	f := newFake()
	p := newPod(t, f)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := p.Create(context.Background(), member(id, "serve")); err != nil {
			t.Fatal(err)
		}
	}
	// Close runs even when the build's context was cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.deleted, []string{"c", "b", "a"}) {
		t.Errorf("deleted %q, want c, b, a", f.deleted)
	}
	if _, err := os.Stat(p.o.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the pod's directory is still there: %v", err)
	}
	if _, err := p.Create(context.Background(), member("d")); err == nil {
		t.Error("a closed pod made a container")
	}
}

func TestMembersGetThePodsLabelsAndTheirOwn(t *testing.T) {
	f := newFake()
	p := newPod(t, f)
	m := member("c", "serve")
	m.Labels = map[string]string{"crun-ci.step": "test"}
	if _, err := p.Create(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if got := f.created["c"].Labels; got["crun-ci.build"] != "b" || got["crun-ci.step"] != "test" {
		t.Errorf("labels %v", got)
	}
	if got := f.created["c"].Spec.Linux.CgroupsPath; got != "/test/c" {
		t.Errorf("cgroup path %q, want /test/c", got)
	}
	p.Close(context.Background())
}

// closing closes the pod while a member is being created, as a build's Close could.
type closing struct {
	*fake
	p *Pod
}

func (c *closing) Create(ctx context.Context, o task.Options) (Task, error) {
	if err := c.p.Close(ctx); err != nil {
		return nil, err
	}
	return c.fake.Create(ctx, o)
}

// A member whose pod closed while it was made is undone by Create: its container deleted,
// its hand-off closed once and gone, and Create returns.
func TestCreateUndoesAMemberWhosePodClosedMeanwhile(t *testing.T) {
	f := newFake()
	c := &closing{fake: f}
	p, err := New(context.Background(), c, Options{ID: "b-1", Dir: filepath.Join(t.TempDir(), "pod"), Namespace: "test", Handoff: &Exe{Path: "/proc/self/exe"}})
	if err != nil {
		t.Fatal(err)
	}
	c.p = p
	m := member("c", "serve")
	m.Secrets = []string{"TOKEN=s3cret"}
	done := make(chan error, 1)
	go func() {
		_, err := p.Create(context.Background(), m)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "its pod is closed") {
			t.Errorf("Create = %v, want that the pod is closed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Create hangs undoing a member with a hand-off")
	}
	if !slices.Equal(f.deleted, []string{"c"}) {
		t.Errorf("deleted %q, want c", f.deleted)
	}
	if _, err := os.Lstat(p.handoffPath(m)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the hand-off is still there: %v", err)
	}
}

func TestACommandNotInTheImageIsSaidInTheUsersWords(t *testing.T) {
	c := &Container{image: "busybox", env: []string{"HOME=/root", "PATH=/usr/bin:/bin"}}
	const chain = `create task x: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: `
	for _, tc := range []struct{ runc, want string }{
		{`exec: "npm": executable file not found in $PATH: unknown`, `"npm" not found in image busybox (PATH=/usr/bin:/bin)`},
		{`exec: "/opt/tool": stat /opt/tool: no such file or directory: unknown`, `"/opt/tool" not found in image busybox`},
		{`exec: "/etc/passwd": permission denied: unknown`, `"/etc/passwd" is not executable in image busybox`},
		{`error mounting "/x" to rootfs at "/y": no such device`, chain + `error mounting "/x" to rootfs at "/y": no such device`},
	} {
		if got := c.missing(errors.New(chain + tc.runc)).Error(); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.runc, got, tc.want)
		}
	}
}

func TestKeepEndsTheTasksAndKeepsContainersDirectoryAndNoSecret(t *testing.T) {
	f := newFake()
	p := newPod(t, f)
	m := member("a", "serve")
	m.Secrets = []string{"TOKEN=s3cret"}
	if _, err := p.Create(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(context.Background(), member("b", "serve")); err != nil {
		t.Fatal(err)
	}
	handoff := p.handoffPath(m)
	if _, err := os.Stat(handoff); err != nil {
		t.Fatalf("no hand-off before Keep: %v", err)
	}
	if err := p.Keep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.tasksDeleted, []string{"b", "a"}) || len(f.deleted) != 0 {
		t.Errorf("tasks deleted %q and containers deleted %q, want tasks b, a and no container", f.tasksDeleted, f.deleted)
	}
	if _, err := os.Stat(handoff); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the secrets' hand-off outlived Keep: %v", err)
	}
	if _, err := os.Stat(p.o.Dir); err != nil {
		t.Errorf("the pod's directory (its volumes) went: %v", err)
	}
	if _, err := p.Create(context.Background(), member("c")); err == nil {
		t.Error("a kept pod made a container")
	}
}
