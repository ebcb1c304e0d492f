package integration

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	ctroci "github.com/containerd/containerd/v2/pkg/oci"
	"github.com/crun-ci/crun-ci/builds"
	"github.com/crun-ci/crun-ci/daemon"
)

// sleepy is a pipeline whose steps announce themselves and then wait, so a test can act
// while they run. The host volume collects a file per finished step.
func sleepy(t *testing.T) string {
	return project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  volumes: [/scratch, ./out:/out]\ndata:\n  image: crunci/seeded:1\n  volumes: [/artifacts]\nuser:\n  image: busybox\n  volumes_from: [data]\n",
		"codeship-steps.yml": `
- type: parallel
  steps:
  - {name: one, service: app, command: "sh -c 'echo started; sleep 30; touch /out/one'"}
  - {name: two, service: user, command: "sh -c 'echo started; sleep 30'"}
`,
		"out/keep.txt": "host data that must survive\n",
	})
}

// leftovers returns the build ids in a `cleanup --dry-run` listing.
func leftovers(t *testing.T, listing string) []string {
	return regexp.MustCompile(`(?m)^would remove build ([0-9a-f]{10}):`).FindAllString(listing, -1)
}

func TestAKilledBuildIsCleanedUpByCleanupAndNotBefore(t *testing.T) {
	requireRoot(t)
	dir := sleepy(t)
	run := start(t, stateDir, "steps", "--dir", dir)
	run.waitFor("| started", 2)

	// While the build runs, clean-up leaves it alone.
	r := crunci(t, "cleanup", "--dry-run")
	wantCode(t, r, 0)
	if got := leftovers(t, r.stdout); len(got) != 0 {
		t.Fatalf("cleanup --dry-run lists a live build: %v", got)
	}
	r = crunci(t, "cleanup")
	wantCode(t, r, 0)
	wantContains(t, "cleanup output", r.stdout, "nothing to clean up")

	run.signal(syscall.SIGKILL)
	run.wait()

	r = crunci(t, "cleanup", "--dry-run")
	wantCode(t, r, 0)
	if got := leftovers(t, r.stdout); len(got) != 1 {
		t.Fatalf("cleanup --dry-run lists %d builds, want the killed one", len(got))
	}
	// The killed build left its two containers (one per step; data, which only lends
	// its volumes, has none), their snapshots, tasks, lease, directory and lock.
	wantContains(t, "dry run", r.stdout, "2 containers (", "2 tasks (", "2 snapshots (", "1 leases (", "directory "+stateDir+"/builds/", "lock "+stateDir+"/locks/", "1 builds would be cleaned up")
	r = crunci(t, "cleanup", "--dry-run") // a dry run removes nothing
	if got := leftovers(t, r.stdout); len(got) != 1 {
		t.Fatalf("after a dry run, %d builds are listed, want 1", len(got))
	}

	r = crunci(t, "cleanup")
	wantCode(t, r, 0)
	wantContains(t, "cleanup output", r.stdout, "removed build ", "1 builds cleaned up")
	assertClean(t)
	if b, err := os.ReadFile(filepath.Join(dir, "out/keep.txt")); err != nil || string(b) != "host data that must survive\n" {
		t.Errorf("host volume file after clean-up: %q, %v", b, err)
	}
}

func TestTheNextBuildCleansUpAfterAKilledOne(t *testing.T) {
	requireRoot(t)
	dir := sleepy(t)
	run := start(t, stateDir, "steps", "--dir", dir)
	run.waitFor("| started", 2)
	run.signal(syscall.SIGKILL)
	run.wait()

	quick := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml":    "- service: app\n  command: 'true'\n",
	})
	r := runSteps(t, quick) // checks that nothing is left, the killed build's objects included
	wantCode(t, r, 0)
	wantContains(t, "stderr", r.stderr, "removed build ")
}

func TestAStepTimeoutStopsTheStepAndFailsIt(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  volumes: [./out:/out]\n",
		"codeship-steps.yml": `
- name: slow
  service: app
  timeout: 1s
  command: sh -c 'trap "echo stopping; exit 1" TERM; while true; do sleep 0.1; done'
  on_fail:
  - {name: after-timeout, command: touch /out/on_fail}
- {name: never, service: app, command: touch /out/never}
`,
		"out/": "",
	})
	began := time.Now()
	r := runSteps(t, dir, "--stop-timeout", "5s")
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout, "slow/app | stopping\n", "TIMED OUT   slow (app)", ": stopped after ", "PASSED      after-timeout (app)", "NOT RUN     never (app): an earlier step failed")
	if took := time.Since(began); took > 20*time.Second {
		t.Errorf("the build took %s with a 1s timeout", took)
	}
	if _, err := os.Stat(filepath.Join(dir, "out/on_fail")); err != nil {
		t.Errorf("on_fail of the timed-out step did not run: %v", err)
	}

	// --step-timeout bounds steps without a timeout key; a task that ignores SIGTERM is
	// killed after --stop-timeout.
	dir = project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml":    "- {name: stubborn, service: app, command: sleep 60}\n",
	})
	began = time.Now()
	r = runSteps(t, dir, "--step-timeout", "1s", "--stop-timeout", "1s")
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout, "TIMED OUT   stubborn (app)")
	if took := time.Since(began); took > 20*time.Second {
		t.Errorf("the build took %s with a 1s timeout", took)
	}
}

func TestASecondSignalSkipsTheGracePeriod(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml":    "- {name: stubborn, service: app, command: \"sh -c 'echo started; sleep 60'\"}\n",
	})
	run := start(t, stateDir, "steps", "--dir", dir, "--stop-timeout", "60s")
	run.waitFor("| started", 1)
	run.signal(syscall.SIGINT)
	time.Sleep(500 * time.Millisecond)
	sent := time.Now()
	run.signal(syscall.SIGINT)
	r := run.wait()
	wantCode(t, r, 130)
	if took := time.Since(sent); took > 15*time.Second {
		t.Errorf("after the second signal, stopping took %s", took)
	}
	wantContains(t, "stdout", r.stdout, "INTERRUPTED stubborn (app)")
	assertClean(t)
}

func TestConcurrentBuildsOfOneDirectoryDoNotCollide(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "data:\n  image: crunci/seeded:1\n  volumes: [/artifacts, ./out:/out]\napp:\n  image: busybox\n  volumes_from: [data]\n",
		"codeship-steps.yml": `
- {service: app, command: "sh -c 'echo $CI_BUILD_ID > /artifacts/id; sleep 0.5; test $(cat /artifacts/id) = $CI_BUILD_ID && touch /out/$CI_BUILD_ID'"}
- {service: app, command: "sh -c 'test ! -e /artifacts/id'"}
`,
		"out/": "",
	})
	const n = 4
	runs := make([]*bgRun, n)
	for i := range runs {
		runs[i] = start(t, stateDir, "steps", "--dir", dir)
	}
	for i, run := range runs {
		r := run.wait()
		if r.code != 0 {
			t.Errorf("build %d: exit %d", i, r.code)
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "out", buildID(t, r.stdout))); err != nil {
			t.Errorf("build %d saw another build's anonymous volume: %v", i, err)
		}
	}
	assertClean(t)
}

// A containerd that dies mid-build fails the build within seconds; the next crun-ci
// starts a new embedded containerd, and clean-up removes what the build left.
func TestContainerdDyingMidBuildFailsTheBuildAndCleanupRecovers(t *testing.T) {
	requireRoot(t)
	state, err := os.MkdirTemp("", "crunci-dying-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(state)
	defer func() {
		if err := removeNetworkRules(state); err != nil {
			t.Error(err)
		}
	}()
	// Its own embedded containerd, so the suite's keeps running; the image is imported
	// into it.
	own := func(args ...string) result {
		r := start(t, state, args...)
		return r.wait()
	}
	img := filepath.Join(t.TempDir(), "busybox.tar")
	writeBusybox(t, img)
	if r := own("import", img); r.code != 0 {
		t.Fatalf("import: exit %d", r.code)
	}
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  volumes: [/scratch, ./out:/out]\n",
		"codeship-steps.yml": `
- type: parallel
  steps:
  - {name: one, service: app, command: "sh -c 'echo started; sleep 30'"}
  - {name: two, service: app, command: "sh -c 'echo started; sleep 30'"}
`,
		"out/keep.txt": "host data that must survive\n",
	})
	run := start(t, state, "steps", "--dir", dir)
	run.waitFor("| started", 2)
	pid := pidOf(t, filepath.Join(state, "containerd", "containerd.pid"))
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := run.wait()
	if took := time.Since(killed); took > 20*time.Second {
		t.Errorf("crun-ci took %s to notice that containerd died", took)
	}
	if r.code != 1 {
		t.Errorf("exit status %d, want 1", r.code)
	}
	wantContains(t, "stderr", r.stderr, "crun-ci: containerd went away during build ")
	wantContains(t, "stdout", r.stdout, "FAILED      one (app)", ": lost containerd: ")
	if n := strings.Count(r.stderr, "\n"); n != 1 {
		t.Errorf("stderr has %d lines, want the one that says containerd went away", n)
	}

	r = own("cleanup")
	if r.code != 0 {
		t.Errorf("cleanup: exit %d", r.code)
	}
	wantContains(t, "cleanup", r.stdout, "removed build ")
	r = own("cleanup", "--dry-run")
	wantContains(t, "second cleanup", r.stdout, "nothing to clean up")

	// Check with a connection of our own (it starts the embedded containerd again).
	d, err := daemon.Connect(context.Background(), filepath.Join(state, "none.sock"), state, namespace)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctrs, _ := d.Client.Containers(context.Background())
	if len(ctrs) != 0 {
		t.Errorf("%d containers left", len(ctrs))
	}
	entries, _ := os.ReadDir(filepath.Join(state, "builds"))
	if len(entries) != 0 {
		t.Errorf("build directories left: %v", entries)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "out/keep.txt")); err != nil || !strings.Contains(string(b), "survive") {
		t.Errorf("host volume file: %q, %v", b, err)
	}
}

// The clean-up a command does first asks containerd only when a dead build's lock file
// or directory is there (every build holds its lock until it has removed everything);
// `crun-ci cleanup` always asks, and removes objects of this state directory whatever
// their lock file says: here a container whose lock file an operator deleted.
func TestCleanupFindsObjectsWithoutALockFile(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	img, err := ctrd.Client.GetImage(ctx, "docker.io/library/busybox:latest")
	if err != nil {
		t.Fatal(err)
	}
	id := "crunci-0123456780-1-app"
	labels := map[string]string{builds.LabelBuild: "0123456780", builds.LabelState: stateDir}
	_, err = ctrd.Client.NewContainer(ctx, id, client.WithSnapshotter("overlayfs"), client.WithNewSnapshot(id, img, snapshots.WithLabels(labels)),
		client.WithContainerLabels(labels), client.WithNewSpec(ctroci.WithImageConfig(img)))
	if err != nil {
		t.Fatal(err)
	}
	r := crunci(t, "cleanup")
	wantCode(t, r, 0)
	wantContains(t, "cleanup", r.stdout, "removed build 0123456780: 1 containers ("+id+"), 1 snapshots ("+id+")")
	assertClean(t)
}
