package steps

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/crun-ci/crun-ci/builds"
)

// keptRun runs p with o in a state directory of its own and returns the record of what
// the build kept (nil when it kept nothing) and the containers still there.
func keptRun(t *testing.T, p string, o Options) (*builds.Kept, []string) {
	t.Helper()
	f := newFake(t)
	var out bytes.Buffer
	o.Project, o.Namespace, o.StateDir, o.Output = load(t, oneService, p), "test", t.TempDir(), &out
	o.BuildID = "b1"
	if _, err := Run(context.Background(), f, o); err != nil {
		t.Fatal(err)
	}
	k, err := builds.ReadKept(builds.Dir(o.StateDir, o.BuildID))
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	for id := range f.live {
		live = append(live, id)
	}
	slices.Sort(live)
	return k, live
}

const keepSteps = `
- type: parallel
  steps:
  - {name: fails, service: app, command: exit 3}
  - {name: passes, service: app, command: exit 0}
`

func TestKeepOnFailureKeepsTheFailedStepsAndRemovesTheRest(t *testing.T) {
	k, live := keptRun(t, keepSteps, Options{KeepOnFailure: true, KeepFor: time.Hour, MaxParallel: 2})
	if k == nil {
		t.Fatal("nothing recorded as kept")
	}
	if len(k.Steps) != 1 || k.Steps[0].Name != "fails" || !k.Steps[0].Failed || k.Steps[0].Service != "app" {
		t.Fatalf("kept %+v, want the failed step alone", k.Steps)
	}
	if !slices.Equal(live, []string{k.Steps[0].Container}) {
		t.Errorf("containers left %q, want the failed step's %s alone", live, k.Steps[0].Container)
	}
	if k.Removable || k.Until.Sub(k.Created) != time.Hour || k.Expired(time.Now()) {
		t.Errorf("kept %+v: want it kept for an hour", k)
	}
	if !k.Expired(k.Created.Add(2 * time.Hour)) {
		t.Error("a build kept for an hour is not expired two hours later")
	}
}

func TestWithoutKeepOnFailureAFailedStepGoes(t *testing.T) {
	if k, live := keptRun(t, keepSteps, Options{MaxParallel: 2}); k != nil || len(live) != 0 {
		t.Errorf("kept %+v, containers %q: want nothing", k, live)
	}
}

func TestNoRemoveKeepsEveryStepUntilTheNextCleanup(t *testing.T) {
	k, live := keptRun(t, keepSteps, Options{NoRemove: true, MaxParallel: 2})
	if k == nil || len(k.Steps) != 2 || len(live) != 2 {
		t.Fatalf("kept %+v, containers %q: want both steps", k, live)
	}
	if !k.Removable || !k.Expired(time.Now()) {
		t.Errorf("kept %+v: --no-remove alone must leave it to the next clean-up", k)
	}
}

func TestAnInterruptedStepIsNotKept(t *testing.T) {
	f := newFake(t)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	o := Options{Project: load(t, oneService, "- {name: s, service: app, command: serve}\n"), Namespace: "test", StateDir: t.TempDir(), Output: &out, BuildID: "b2", KeepOnFailure: true, StopTimeout: 10 * time.Millisecond}
	sum, _ := Run(ctx, f, o)
	if sum == nil || len(sum.Results) != 1 || sum.Results[0].Status != Interrupted {
		t.Fatalf("summary %+v: want the step interrupted", sum)
	}
	if k, _ := builds.ReadKept(builds.Dir(o.StateDir, o.BuildID)); k != nil {
		t.Errorf("an interrupted build kept %+v", k.Steps)
	}
	if len(f.live) != 0 {
		t.Errorf("containers left: %v", f.live)
	}
}

func TestATimedOutStepIsKept(t *testing.T) {
	k, live := keptRun(t, "- {name: slow, service: app, command: serve}\n", Options{KeepOnFailure: true, StepTimeout: 50 * time.Millisecond, StopTimeout: 10 * time.Millisecond})
	if k == nil || len(k.Steps) != 1 || k.Steps[0].Name != "slow" || !k.Steps[0].Failed || len(live) != 1 {
		t.Fatalf("kept %+v, containers %q: want the timed out step", k, live)
	}
}

// The run steps after a running step of a serial group are made ahead, their own
// container's task created; when a step fails, what was made ahead of the rest goes.
func TestSerialStepsAreMadeAheadAndDroppedWhenOneFails(t *testing.T) {
	f := newFake(t)
	p := load(t, oneService, `
- {name: a, service: app, command: exit 0}
- {name: b, service: app, command: exit 0}
- {name: c, service: app, command: exit 3}
- {name: d, service: app, command: exit 0}
- {name: e, service: app, command: exit 0}
`)
	sum, _, err := run(t, f, p, Options{}) // run checks that no container is left
	if err != nil {
		t.Fatal(err)
	}
	want := []outcome{{"a", Passed, 0}, {"b", Passed, 0}, {"c", Failed, 3}, {"d", NotRun, 0}, {"e", NotRun, 0}}
	if diff := cmp.Diff(want, outcomes(sum)); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	// b and c were made ahead while a ran, d and e while b and c did; d and e never ran.
	if len(f.tasksAhead) != 4 {
		t.Errorf("tasks made ahead: %q, want b's, c's, d's and e's", f.tasksAhead)
	}
	if slices.ContainsFunc(f.started, func(s string) bool { return s != "exit 0" && s != "exit 3" }) || len(f.started) != 3 {
		t.Errorf("started %q, want a, b and c only", f.started)
	}
}

// A step made ahead has its dependencies' tasks created too; they start in their order
// when the step's turn comes.
func TestADependencysTaskIsMadeAheadToo(t *testing.T) {
	f := newFake(t)
	p := load(t, "db:\n  image: busybox\n  command: serve\napp:\n  image: busybox\n  depends_on: [db]\n", `
- {name: a, service: app, command: exit 0}
- {name: b, service: app, command: exit 0}
`)
	sum, _, err := run(t, f, p, Options{})
	if err != nil || !sum.Passed() {
		t.Fatalf("%v, %+v", err, sum)
	}
	slices.Sort(f.tasksAhead)
	if want := []string{"crunci-" + sum.BuildID + "-2-app", "crunci-" + sum.BuildID + "-2-db"}; !slices.Equal(f.tasksAhead, want) {
		t.Errorf("tasks made ahead %q, want b's %q", f.tasksAhead, want)
	}
	if strings.Count(strings.Join(f.started, "\n"), "serve") != 2 {
		t.Errorf("started %q: want db started for each step", f.started)
	}
}
