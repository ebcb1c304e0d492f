package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/cio"
	ctroci "github.com/containerd/containerd/v2/pkg/oci"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/dockerfile"
	"github.com/crun-ci/crun-ci/hostfs"
	"github.com/crun-ci/crun-ci/images"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/pod"
	"github.com/crun-ci/crun-ci/steps"
	"github.com/crun-ci/crun-ci/task"
)

const stepsPerBench = 20

// BenchmarkStepOverhead runs a pipeline of 20 serial steps, each `true` in a service with
// one anonymous and one host volume, and the same number of bare create/start/wait/delete
// cycles of one container through the containerd client (the floor), alternately, and
// reports the time per step, the floor per container and their ratio. Target: ratio ≤ 1.3.
//
//	go test -run NONE -bench StepOverhead -benchtime 5x ./integration
func BenchmarkStepOverhead(b *testing.B) {
	benchSteps(b, "app:\n  image: busybox\n  volumes:\n    - /scratch\n    - ./host:/host\n", network.Host)
}

// BenchmarkStepOverheadBridge is BenchmarkStepOverhead with each step on its own bridge
// network (crun-ci's default): what the step network and the address cost.
func BenchmarkStepOverheadBridge(b *testing.B) {
	benchSteps(b, "app:\n  image: busybox\n  volumes:\n    - /scratch\n    - ./host:/host\n", network.Bridge)
}

// BenchmarkStepOverheadWithDependency is BenchmarkStepOverhead with one dependency per
// step (a service running `sleep`, started before and stopped after each step's `true`),
// on a bridge network: its floor is still one bare container.
func BenchmarkStepOverheadWithDependency(b *testing.B) {
	benchSteps(b, "db:\n  image: busybox\n  command: sh -c 'trap \"exit 0\" TERM; sleep 3600 & wait'\napp:\n  image: busybox\n  depends_on: [db]\n  volumes:\n    - /scratch\n    - ./host:/host\n", network.Bridge)
}

func benchSteps(b *testing.B, services string, mode network.Mode) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	nm, err := network.New(mode, network.Config{StateDir: stateDir})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "host"), 0o755); err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	for i := 0; i < stepsPerBench; i++ {
		fmt.Fprintf(&sb, "- service: app\n  command: 'true'\n")
	}
	files := map[string]string{
		"codeship-services.yml": services,
		"codeship-steps.yml":    sb.String(),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	proj, err := config.Load(dir, "", "")
	if err != nil {
		b.Fatal(err)
	}
	rt := steps.Containerd(task.New(ctrd.Client))
	img, err := ctrd.Client.GetImage(ctx, "docker.io/library/busybox:latest")
	if err != nil {
		b.Fatal(err)
	}

	var pipeline, floor time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		sum, err := steps.Run(ctx, rt, steps.Options{
			Project:   proj,
			Namespace: namespace,
			StateDir:  stateDir,
			Output:    io.Discard,
			Network:   nm,
		})
		if err != nil || !sum.Passed() || len(sum.Results) != stepsPerBench {
			b.Fatalf("pipeline: %v", err)
		}
		pipeline += time.Since(start)

		start = time.Now()
		for j := 0; j < stepsPerBench; j++ {
			if err := bareCycle(ctx, ctrd.Client, img, fmt.Sprintf("floor-%d-%d", i, j)); err != nil {
				b.Fatal(err)
			}
		}
		floor += time.Since(start)
	}
	b.StopTimer()
	perStep := pipeline / time.Duration(b.N*stepsPerBench)
	perFloor := floor / time.Duration(b.N*stepsPerBench)
	b.ReportMetric(float64(perStep.Microseconds())/1000, "ms/step")
	b.ReportMetric(float64(perFloor.Microseconds())/1000, "ms/floor")
	b.ReportMetric(float64(perStep)/float64(perFloor), "ratio")
}

// bareCycle is the floor: one container on a new snapshot, its task started, waited for
// and deleted with the snapshot, through the plain client.
func bareCycle(ctx context.Context, c *client.Client, img client.Image, id string, args ...string) error {
	if len(args) == 0 {
		args = []string{"true"}
	}
	ctx, done, err := c.WithLease(ctx, leases.WithRandomID(), leases.WithExpiration(time.Hour))
	if err != nil {
		return err
	}
	defer done(context.WithoutCancel(ctx))
	ctr, err := c.NewContainer(ctx, id,
		client.WithSnapshotter("overlayfs"),
		client.WithNewSnapshot(id, img),
		client.WithNewSpec(ctroci.WithImageConfig(img), ctroci.WithProcessArgs(args...)))
	if err != nil {
		return err
	}
	defer ctr.Delete(context.WithoutCancel(ctx), client.WithSnapshotCleanup)
	t, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		return err
	}
	exit, err := t.Wait(ctx)
	if err != nil {
		return err
	}
	if err := t.Start(ctx); err != nil {
		return err
	}
	<-exit
	_, err = t.Delete(ctx)
	return err
}

// buildBenchDockerfile has ten instructions after FROM, five of them RUN.
const buildBenchDockerfile = `FROM busybox
ENV APP=/app
WORKDIR /app
COPY a.txt ./
RUN echo one > one.txt
RUN echo two > two.txt
COPY b.txt ./
RUN cat a.txt b.txt > ab.txt
RUN echo four > four.txt
RUN echo five > five.txt
CMD ["cat", "ab.txt"]
`

// buildBenchRuns are the commands of its RUNs, as plain containers run them.
var buildBenchRuns = []string{"echo one > /tmp/one.txt", "echo two > /tmp/two.txt", "cat /etc/passwd /etc/group > /tmp/ab.txt", "echo four > /tmp/four.txt", "echo five > /tmp/five.txt"}

// BenchmarkBuild builds a 10-instruction Dockerfile (5 RUN, 2 COPY) cold (--no-cache)
// and fully cached, and runs its five RUN commands as bare containers (the floor), and
// reports each build's time and its ratio to the floor.
//
//	go test -run NONE -bench Build -benchtime 5x ./integration
func BenchmarkBuild(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	dir := b.TempDir()
	for name, content := range map[string]string{"Dockerfile": buildBenchDockerfile, "a.txt": "a\n", "b.txt": "b\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	ctx, done, err := ctrd.Client.WithLease(context.Background(), leases.WithRandomID(), leases.WithExpiration(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	defer done(context.WithoutCancel(ctx))
	img, err := ctrd.Client.GetImage(ctx, "docker.io/library/busybox:latest")
	if err != nil {
		b.Fatal(err)
	}
	builder := func(noCache bool) *dockerfile.Builder {
		return &dockerfile.Builder{Client: task.New(ctrd.Client), NoCache: noCache}
	}
	seq := 0
	build := func(bld *dockerfile.Builder, wantCached int) time.Duration {
		seq++
		start := time.Now()
		res := benchBuild(b, ctx, dir, fmt.Sprintf("bench-%d", seq), bld)
		if wantCached >= 0 && res.Cached != wantCached {
			b.Fatalf("built %d layers, %d cached; want 7, %d", res.Layers, res.Cached, wantCached)
		}
		return time.Since(start)
	}
	build(builder(false), -1) // warm the cache for the cached builds

	var cold, cached, floor time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cold += build(builder(true), 0)
		cached += build(builder(false), 7)
		start := time.Now()
		for j, cmd := range buildBenchRuns {
			if err := bareCycle(ctx, ctrd.Client, img, fmt.Sprintf("floor-build-%d-%d", i, j), "sh", "-c", cmd); err != nil {
				b.Fatal(err)
			}
		}
		floor += time.Since(start)
	}
	b.StopTimer()
	n := time.Duration(b.N)
	b.ReportMetric(float64((cold/n).Microseconds())/1000, "ms/cold")
	b.ReportMetric(float64((cached/n).Microseconds())/1000, "ms/cached")
	b.ReportMetric(float64((floor/n).Microseconds())/1000, "ms/floor")
	b.ReportMetric(float64(cold)/float64(floor), "cold-ratio")
	b.ReportMetric(float64(cached)/float64(floor), "cached-ratio")
}

// benchBuild builds the Dockerfile of dir (buildBenchDockerfile) with bld, its RUNs in a
// pod of their own on the host's network, and checks that it has its 7 layers.
func benchBuild(b *testing.B, ctx context.Context, dir, id string, bld *dockerfile.Builder) *dockerfile.Result {
	work := filepath.Join(b.TempDir(), "work")
	root, err := hostfs.Open(dir, hostfs.Beneath, "the build directory")
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	p, err := pod.New(ctx, pod.Containerd(task.New(ctrd.Client)), pod.Options{ID: id, Dir: work, Namespace: namespace})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(ctx)
	res, err := bld.Build(ctx, dockerfile.Request{
		Service: "bench", Root: root, Context: ".", Dockerfile: "Dockerfile", DockerfileName: "Dockerfile",
		Image: "docker.io/crunci/bench:1", Output: io.Discard, Pod: p,
		Images: &images.Store{Find: task.New(ctrd.Client).Image}, // busybox is there
		ID:     "crunci-" + id, Labels: map[string]string{"crun-ci.bench": "1"}, Dir: work,
	})
	if err != nil || res.Layers != 7 {
		b.Fatalf("build: %v (%v layers, want 7)", err, res)
	}
	return res
}

// BenchmarkStepNetwork runs pipelines of 20 serial `true` steps with one container a
// step and with three (the step's service and two dependencies running sleep), each with
// --network host and on the step networks (bridge), alternately, and reports per step
// the wall time and the machine's CPU time (all processes: crun-ci, containerd, shims,
// runc) of each, and what the step networks add over host networking (ms and ratio):
// medians over the iterations, each iteration's bridge run against its host run.
// Targets (the network issue): at most 15 ms more wall time a step with one container,
// 30 ms with three.
//
//	go test -run NONE -bench StepNetwork -benchtime 5x ./integration
func BenchmarkStepNetwork(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	const (
		one   = "app:\n  image: busybox\n"
		three = "db:\n  image: busybox\n  command: sleep 3600\ncache:\n  image: busybox\n  command: sleep 3600\napp:\n  image: busybox\n  depends_on: [db, cache]\n"
	)
	ctx := context.Background()
	rt := steps.Containerd(task.New(ctrd.Client))
	managers := map[network.Mode]*network.Manager{}
	for _, mode := range []network.Mode{network.Host, network.Bridge} {
		nm, err := network.New(mode, network.Config{StateDir: stateDir})
		if err != nil {
			b.Fatal(err)
		}
		managers[mode] = nm
	}
	projects := map[string]*config.Project{"1": benchProject(b, one), "3": benchProject(b, three)}
	type key struct {
		containers string
		mode       network.Mode
	}
	// Per iteration, so that what the networks add is the median over iterations of
	// the difference between neighbouring runs: one slow moment of the machine moves a
	// mean by tens of milliseconds.
	wall, cpu := map[key][]time.Duration{}, map[key][]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, n := range []string{"1", "3"} {
			for _, mode := range []network.Mode{network.Host, network.Bridge} {
				start, cpuStart := time.Now(), machineCPU(b)
				sum, err := steps.Run(ctx, rt, steps.Options{
					Project:   projects[n],
					Namespace: namespace,
					StateDir:  stateDir,
					Output:    io.Discard,
					Network:   managers[mode],
				})
				if err != nil || !sum.Passed() || len(sum.Results) != stepsPerBench {
					b.Fatalf("pipeline: %v", err)
				}
				k := key{n, mode}
				wall[k] = append(wall[k], time.Since(start))
				cpu[k] = append(cpu[k], machineCPU(b)-cpuStart)
			}
		}
	}
	b.StopTimer()
	// ms is a duration of a pipeline per step, in milliseconds.
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / stepsPerBench }
	median := medianOf
	// per gives, per iteration, f of the host and bridge runs' times.
	per := func(times map[key][]time.Duration, n string, f func(host, bridge float64) float64) []float64 {
		var v []float64
		for i := range times[key{n, network.Host}] {
			v = append(v, f(ms(times[key{n, network.Host}][i]), ms(times[key{n, network.Bridge}][i])))
		}
		return v
	}
	first := func(host, _ float64) float64 { return host }
	second := func(_, bridge float64) float64 { return bridge }
	added := func(host, bridge float64) float64 { return bridge - host }
	ratio := func(host, bridge float64) float64 { return bridge / host }
	for _, n := range []string{"1", "3"} {
		b.ReportMetric(median(per(wall, n, first)), "ms/step-"+n+"-host")
		b.ReportMetric(median(per(wall, n, second)), "ms/step-"+n+"-bridge")
		b.ReportMetric(median(per(wall, n, added)), "ms-added-"+n)
		b.ReportMetric(median(per(wall, n, ratio)), "ratio-wall-"+n)
		b.ReportMetric(median(per(cpu, n, added)), "cpu-ms-added-"+n)
		b.ReportMetric(median(per(cpu, n, ratio)), "ratio-cpu-"+n)
	}
}

// benchProject is a project of stepsPerBench serial `true` steps of the service app.
func benchProject(b *testing.B, services string) *config.Project {
	var sb strings.Builder
	for i := 0; i < stepsPerBench; i++ {
		fmt.Fprintf(&sb, "- service: app\n  command: 'true'\n")
	}
	return benchProjectSteps(b, services, sb.String())
}

// benchProjectSteps is a project of the services and steps files given.
func benchProjectSteps(b *testing.B, services, stepsFile string) *config.Project {
	dir := b.TempDir()
	for name, content := range map[string]string{"codeship-services.yml": services, "codeship-steps.yml": stepsFile} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	proj, err := config.Load(dir, "", "")
	if err != nil {
		b.Fatal(err)
	}
	return proj
}

// machineCPU is the CPU time all processes of the machine have used (user, nice,
// system, irq and softirq of /proc/stat, in clock ticks of 10 ms).
func machineCPU(b *testing.B) time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// medianOf is the median of v.
func medianOf(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
