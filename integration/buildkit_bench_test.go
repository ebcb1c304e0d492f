package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/crun-ci/crun-ci/dockerfile"
	"github.com/crun-ci/crun-ci/ociarchive"
	"github.com/crun-ci/crun-ci/task"
)

// BenchmarkBuildAgainstBuildKit builds the 10-instruction Dockerfile of BenchmarkBuild
// (5 RUN, 2 COPY) with crun-ci's builder and with BuildKit's buildkitd (its containerd
// worker, on the same containerd, host networking for RUN, in a namespace of its own
// holding the same busybox) driven by buildctl, alternately, cold (no cache) and fully
// cached, and reports the medians of the per-iteration ratios (targets ≤ 0.8). It needs
// buildkitd and buildctl in $CRUNCI_BUILDKIT_DIR: scripts/bench-buildkit.sh builds them
// from the Go module proxy in a throwaway module and runs it.
//
//	CRUNCI_BUILDKIT_DIR=… go test -run NONE -bench BuildAgainstBuildKit -benchtime 5x ./integration
func BenchmarkBuildAgainstBuildKit(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	bk := os.Getenv("CRUNCI_BUILDKIT_DIR")
	if bk == "" {
		b.Skip("set CRUNCI_BUILDKIT_DIR to where buildkitd and buildctl are (scripts/bench-buildkit.sh builds them)")
	}
	const bkNS = "crunci-bench-buildkit"
	ctx := context.Background()
	// BuildKit's namespace gets the same busybox, resolved locally (no registry).
	tmp := b.TempDir()
	files, err := ociarchive.Busybox(ociarchive.BusyboxPath)
	if err != nil {
		b.Fatal(err)
	}
	tar := filepath.Join(tmp, "busybox.tar")
	if err := ociarchive.WriteFile(tar, ociarchive.Image{Name: "docker.io/library/busybox:latest", Config: ociarchive.BusyboxConfig(), Files: files}); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(tar)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := task.New(ctrd.Client).Import(namespaces.WithNamespace(ctx, bkNS), f); err != nil {
		b.Fatalf("import busybox for BuildKit: %v", err)
	}
	f.Close()
	sock := filepath.Join(tmp, "buildkitd.sock")
	daemon := exec.Command(filepath.Join(bk, "buildkitd"), "--root", filepath.Join(tmp, "bk-root"), "--addr", "unix://"+sock,
		"--oci-worker=false", "--containerd-worker=true", "--containerd-worker-addr", ctrd.Address,
		"--containerd-worker-namespace", bkNS, "--containerd-worker-net", "host")
	logf, _ := os.Create(filepath.Join(tmp, "buildkitd.log"))
	daemon.Stdout, daemon.Stderr = logf, logf
	if err := daemon.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		daemon.Process.Kill()
		daemon.Wait()
	}()
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Since(start) > 30*time.Second {
			log, _ := os.ReadFile(logf.Name())
			b.Fatalf("buildkitd did not start:\n%s", log)
		}
	}

	dir := b.TempDir()
	for name, content := range map[string]string{"Dockerfile": buildBenchDockerfile, "a.txt": "a\n", "b.txt": "b\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	seq := 0
	buildctl := func(noCache bool) time.Duration {
		seq++
		args := []string{"--addr", "unix://" + sock, "build", "--frontend", "dockerfile.v0",
			"--local", "context=" + dir, "--local", "dockerfile=" + dir, "--opt", "image-resolve-mode=local",
			"--output", fmt.Sprintf("type=image,name=docker.io/crunci/bench-bk:%d", seq)}
		if noCache {
			args = append(args, "--no-cache")
		}
		start := time.Now()
		out, err := exec.Command(filepath.Join(bk, "buildctl"), args...).CombinedOutput()
		if err != nil {
			b.Fatalf("buildctl: %v\n%s", err, out)
		}
		return time.Since(start)
	}
	lctx, done, err := ctrd.Client.WithLease(ctx, leases.WithRandomID(), leases.WithExpiration(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	defer done(context.WithoutCancel(lctx))
	crunci := func(noCache bool) time.Duration {
		seq++
		start := time.Now()
		benchBuild(b, lctx, dir, fmt.Sprintf("bench-bk-%d", seq), &dockerfile.Builder{Client: task.New(ctrd.Client), NoCache: noCache})
		return time.Since(start)
	}
	// Warm both caches.
	crunci(false)
	buildctl(false)
	var coldRatio, cachedRatio []float64
	var times [4]time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, k := crunci(true), buildctl(true)
		coldRatio = append(coldRatio, float64(c)/float64(k))
		cc, kc := crunci(false), buildctl(false)
		cachedRatio = append(cachedRatio, float64(cc)/float64(kc))
		times[0], times[1], times[2], times[3] = times[0]+c, times[1]+k, times[2]+cc, times[3]+kc
	}
	b.StopTimer()
	n := time.Duration(b.N)
	for i, name := range []string{"crun-ci-cold", "buildkit-cold", "crun-ci-cached", "buildkit-cached"} {
		b.ReportMetric(float64((times[i]/n).Microseconds())/1000, "ms/"+name)
	}
	b.ReportMetric(medianOf(coldRatio), "ratio-cold")
	b.ReportMetric(medianOf(cachedRatio), "ratio-cached")
}
