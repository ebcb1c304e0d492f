package integration

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/steps"
	"github.com/crun-ci/crun-ci/task"
)

// BenchmarkParallelSteps measures what --max-parallel's default does for parallel
// groups, with the default flags and the step networks, alternating in each iteration:
//
//   - waiting steps: a parallel group of 8 `sleep 1` steps against the same 8 steps in
//     series (ratio-sleep; target ≤ 0.25);
//
//   - computing steps: a parallel group of 8 steps that each spin a CPU for a while,
//     with the default bound against a bound of one per CPU, the old default
//     (ratio-cpu; it must not be above about 1: sharing the CPUs among more steps at
//     once does not make the group slower).
//
//     go test -run NONE -bench ParallelSteps -benchtime 3x ./integration
func BenchmarkParallelSteps(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	nm, err := network.New(network.Bridge, network.Config{StateDir: stateDir})
	if err != nil {
		b.Fatal(err)
	}
	const n = 8
	group := func(command string, parallel bool) string {
		var sb strings.Builder
		indent := ""
		if parallel {
			sb.WriteString("- type: parallel\n  steps:\n")
			indent = "  "
		}
		for i := 0; i < n; i++ {
			fmt.Fprintf(&sb, "%s- {name: s%d, service: app, command: %q}\n", indent, i, command)
		}
		return sb.String()
	}
	const (
		sleep = "sleep 1"
		spin  = "sh -c 'i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done'"
	)
	projects := map[string]string{
		"sleep-parallel": group(sleep, true),
		"sleep-serial":   group(sleep, false),
		"spin":           group(spin, true),
	}
	rt := steps.Containerd(task.New(ctrd.Client))
	ctx := context.Background()
	run := func(name string, maxParallel int) time.Duration {
		proj := benchProjectSteps(b, "app:\n  image: busybox\n", projects[name])
		start := time.Now()
		sum, err := steps.Run(ctx, rt, steps.Options{Project: proj, Namespace: namespace, StateDir: stateDir, Output: io.Discard, Network: nm, MaxParallel: maxParallel})
		if err != nil || !sum.Passed() || len(sum.Results) != n {
			b.Fatalf("%s: %v", name, err)
		}
		return time.Since(start)
	}
	var sleepRatio, cpuRatio []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		par, ser := run("sleep-parallel", 0), run("sleep-serial", 0)
		sleepRatio = append(sleepRatio, float64(par)/float64(ser))
		wide, narrow := run("spin", 0), run("spin", runtime.NumCPU())
		cpuRatio = append(cpuRatio, float64(wide)/float64(narrow))
		b.Logf("sleep: parallel %s, serial %s; spin: default bound (%d) %s, one per CPU (%d) %s", par.Round(time.Millisecond), ser.Round(time.Millisecond), steps.DefaultMaxParallel(), wide.Round(time.Millisecond), runtime.NumCPU(), narrow.Round(time.Millisecond))
	}
	b.StopTimer()
	b.ReportMetric(medianOf(sleepRatio), "ratio-sleep")
	b.ReportMetric(medianOf(cpuRatio), "ratio-cpu")
}

// BenchmarkHealthyDependency measures what a step with one dependency that has a health
// check costs beyond its commands: 10 serial steps, each `true` in a service that
// depends on a service becoming healthy 300 ms after it starts (its check: a file it
// writes then), on the default bridge network. It reports the time per step and the
// overhead, the time per step less the dependency's 300 ms (target ≤ 150 ms).
//
//	go test -run NONE -bench HealthyDependency -benchtime 3x ./integration
func BenchmarkHealthyDependency(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	nm, err := network.New(network.Bridge, network.Config{StateDir: stateDir})
	if err != nil {
		b.Fatal(err)
	}
	const n, ready = 10, 300 * time.Millisecond
	var sb strings.Builder
	for i := 0; i < n; i++ {
		sb.WriteString("- {service: app, command: 'true'}\n")
	}
	proj := benchProjectSteps(b, `
db:
  image: busybox
  command: sh -c 'sleep 0.3; touch /tmp/ready; exec sleep 3600'
  healthcheck:
    test: ["CMD", "test", "-f", "/tmp/ready"]
app:
  image: busybox
  depends_on: [db]
`, sb.String())
	rt := steps.Containerd(task.New(ctrd.Client))
	var per []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		sum, err := steps.Run(context.Background(), rt, steps.Options{Project: proj, Namespace: namespace, StateDir: stateDir, Output: io.Discard, Network: nm})
		if err != nil || !sum.Passed() || len(sum.Results) != n {
			b.Fatalf("pipeline: %v", err)
		}
		per = append(per, float64(time.Since(start).Microseconds())/1000/n)
	}
	b.StopTimer()
	b.ReportMetric(medianOf(per), "ms/step")
	b.ReportMetric(medianOf(per)-float64(ready.Milliseconds()), "ms-overhead")
}
