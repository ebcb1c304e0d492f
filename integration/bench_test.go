package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/cio"
	ctroci "github.com/containerd/containerd/v2/pkg/oci"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/network"
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
// network (crun-ci's default): what the namespace and CNI cost.
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
func bareCycle(ctx context.Context, c *client.Client, img client.Image, id string) error {
	ctx, done, err := c.WithLease(ctx, leases.WithRandomID(), leases.WithExpiration(time.Hour))
	if err != nil {
		return err
	}
	defer done(context.WithoutCancel(ctx))
	ctr, err := c.NewContainer(ctx, id,
		client.WithSnapshotter("overlayfs"),
		client.WithNewSnapshot(id, img),
		client.WithNewSpec(ctroci.WithImageConfig(img), ctroci.WithProcessArgs("true")))
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
