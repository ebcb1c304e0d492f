package integration

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
)

var chaos = flag.Int("chaos", 0, "run TestChaos with this many kills (e.g. -chaos=100)")

// TestChaos kills crun-ci with SIGINT, SIGTERM or SIGKILL at random moments of a
// multi-step, parallel pipeline, -chaos times, then runs `crun-ci cleanup`, and prints
// how many objects of crun-ci are left (containers, tasks, snapshots, leases, build
// directories, lock files, mounts, FIFOs) and how many host-volume files were lost. Both
// must be 0.
//
//	go test -v -run TestChaos ./integration -args -chaos=100
func TestChaos(t *testing.T) {
	requireRoot(t)
	if *chaos == 0 {
		t.Skip("run with -chaos=N")
	}
	dir := project(t, map[string]string{
		"codeship-services.yml": `
data:
  image: crunci/seeded:1
  volumes: [/artifacts, ./out:/out]
app:
  image: busybox
  volumes_from: [data]
  volumes: [/scratch]
built:
  build:
    args: {BUILD: "{{ .BuildID }}"}
`,
		"Dockerfile": "FROM busybox\nARG BUILD\nRUN echo $BUILD > /build-id; sleep 0.2\nCOPY out/keep-00.txt /kept\n",
		"codeship-steps.yml": `
- {name: prepare, service: app, command: "sh -c 'echo x > /artifacts/a; sleep 0.2'"}
- type: parallel
  steps:
  - {name: p1, service: app, command: "sh -c 'trap \"exit 1\" TERM; for i in 1 2 3 4 5; do sleep 0.1; done'"}
  - {name: p2, service: app, command: "sleep 0.7"}
  - {name: p3, service: data, command: "sh -c 'cat /artifacts/from-image.txt; sleep 0.3'"}
  - {name: p4, service: built, command: "cat /build-id"}
  - type: serial
    steps:
    - {name: s1, service: app, command: "true"}
    - {name: s2, service: app, command: "sh -c 'date >> /out/runs.log'"}
- {name: finish, service: app, command: "sh -c 'sleep 0.3'"}
`,
		"out/": "",
	})
	// Files that were in the host volume before any build; none may be lost or changed.
	keep := map[string]string{}
	for i := 0; i < 20; i++ {
		name := filepath.Join(dir, "out", fmt.Sprintf("keep-%02d.txt", i))
		keep[name] = strings.Repeat(fmt.Sprintf("file %d\n", i), 100)
		if err := os.WriteFile(name, []byte(keep[name]), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	signals := []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL}
	codes := map[string]int{}
	for i := 0; i < *chaos; i++ {
		sig := signals[rand.IntN(len(signals))]
		delay := time.Duration(rand.Int64N(int64(3000 * time.Millisecond)))
		run := start(t, stateDir, "steps", "--dir", dir, "--stop-timeout", "1s")
		run.quiet = true
		time.Sleep(delay)
		run.signal(sig)
		r := run.wait()
		codes[fmt.Sprintf("%s→%d", sig, r.code)]++
		// A clean stop must exit 130 or 143; a build that finished first exits 0.
		if sig != syscall.SIGKILL && r.code != 0 && r.code != 128+int(sig) {
			t.Errorf("kill %d: %s after %s gave exit %d\nstdout:\n%s\nstderr:\n%s", i, sig, delay, r.code, r.stdout, r.stderr)
		}
	}
	r := crunci(t, "cleanup")
	if r.code != 0 {
		t.Errorf("cleanup: exit %d", r.code)
	}

	left := leftoverObjects(t)
	lost := 0
	for name, content := range keep {
		if b, err := os.ReadFile(name); err != nil || string(b) != content {
			lost++
		}
	}
	t.Logf("chaos: %d kills (%v)", *chaos, codes)
	t.Logf("leftover objects: %d", len(left))
	t.Logf("host-volume files lost: %d", lost)
	for _, l := range left {
		t.Errorf("left behind: %s", l)
	}
	if lost != 0 {
		t.Errorf("%d host-volume files lost", lost)
	}
}

// leftoverObjects lists everything of crun-ci that remains in the suite's containerd and
// state directory, and on the host.
func leftoverObjects(t *testing.T) []string {
	ctx := context.Background()
	c := ctrd.Client
	var left []string
	ctrs, err := c.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ctr := range ctrs {
		left = append(left, "container "+ctr.ID())
	}
	tasks, err := c.TaskService().List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks.Tasks {
		left = append(left, "task "+tk.ID)
	}
	c.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted {
			left = append(left, "snapshot "+info.Name)
		}
		return nil
	})
	ls, err := c.LeasesService().List(ctx, `labels."crun-ci.build"`)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		left = append(left, "lease "+l.ID)
	}
	for _, sub := range []string{"builds", "locks"} {
		entries, _ := os.ReadDir(filepath.Join(stateDir, sub))
		for _, e := range entries {
			left = append(left, sub+"/"+e.Name())
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, stateDir+"/builds") {
			left = append(left, "mount "+line)
		}
	}
	for _, ip := range allocatedIPs(t) {
		left = append(left, "address "+ip)
	}
	for _, sh := range runningShims(t) {
		left = append(left, fmt.Sprintf("shim of %s (pid %d)", sh.ID, sh.PID))
	}
	for _, name := range orphanLayers(t) {
		left = append(left, "layer "+name)
	}
	if n := fifoDirs(t); n != fifosAtStart {
		left = append(left, fmt.Sprintf("%d FIFO directories in %s", n-fifosAtStart, defaultFIFODir))
	}
	return left
}
