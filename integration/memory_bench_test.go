package integration

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var manySteps = flag.Int("many-steps", 1000, "steps of BenchmarkManySteps (the speed issue's target is 10000)")

// BenchmarkManySteps runs one `crun-ci steps` command of -many-steps steps (blocks of a
// parallel group of five steps and five serial steps, on the default bridge network) and
// samples the process's resident memory, open files and threads every 100 ms. It reports
// the largest RSS and the growth from the first tenth of the run to its end, and fails
// when the build leaves a container, snapshot, mount, veth or iptables rule that was not
// there before (assertClean and the counts below). Target: RSS ≤ 50 MiB, flat.
//
//	go test -run NONE -bench ManySteps -benchtime 1x ./integration -args -many-steps 10000
func BenchmarkManySteps(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	var sb strings.Builder
	for i := 0; i < *manySteps/10; i++ {
		sb.WriteString("- type: parallel\n  steps:\n")
		for j := 0; j < 5; j++ {
			fmt.Fprintf(&sb, "  - {name: p%d-%d, service: app, command: 'true'}\n", i, j)
		}
		for j := 0; j < 5; j++ {
			fmt.Fprintf(&sb, "- {name: s%d-%d, service: app, command: 'true'}\n", i, j)
		}
	}
	dir := b.TempDir()
	for name, content := range map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  volumes: [/scratch, ./host:/host]\n",
		"codeship-steps.yml":    sb.String(),
		"host/.keep":            "",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	// A first build makes what stays for later builds: the rules of the subnet.
	warm := b.TempDir()
	os.WriteFile(filepath.Join(warm, "codeship-services.yml"), []byte("app:\n  image: busybox\n"), 0o644)
	os.WriteFile(filepath.Join(warm, "codeship-steps.yml"), []byte("- {service: app, command: 'true'}\n"), 0o644)
	if out, err := exec.Command(bin, "--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", stateDir, "steps", "--dir", warm).CombinedOutput(); err != nil {
		b.Fatalf("first build: %v\n%s", err, out)
	}
	vethsBefore, rulesBefore := veths(b), iptablesRules(b)
	mountsBefore := countMounts(b)
	for i := 0; i < b.N; i++ {
		cmd := exec.CommandContext(context.Background(), bin, "--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", stateDir, "steps", "--dir", dir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		type sample struct {
			at           time.Duration
			rss          int64 // KiB
			fds, threads int
		}
		var samples []sample
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		tick := time.NewTicker(100 * time.Millisecond)
	wait:
		for {
			select {
			case err := <-done:
				if err != nil {
					b.Fatalf("crun-ci steps: %v\n%s", err, tail(out.String(), 20))
				}
				break wait
			case <-tick.C:
				rss, threads := procStatus(cmd.Process.Pid)
				fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid))
				if rss > 0 {
					samples = append(samples, sample{time.Since(start), rss, len(fds), threads})
				}
			}
		}
		tick.Stop()
		took := time.Since(start)
		if !strings.Contains(out.String(), fmt.Sprintf("%d passed", *manySteps/10*10)) {
			b.Fatalf("not every step passed:\n%s", tail(out.String(), 20))
		}
		if len(samples) < 10 {
			b.Fatalf("%d samples", len(samples))
		}
		early := samples[len(samples)/10]
		last := samples[len(samples)-1]
		var maxRSS int64
		maxFDs := 0
		for _, s := range samples {
			maxRSS = max(maxRSS, s.rss)
			maxFDs = max(maxFDs, s.fds)
		}
		b.ReportMetric(float64(maxRSS)/1024, "MiB-rss-max")
		b.ReportMetric(float64(last.rss-early.rss)/1024, "MiB-rss-growth")
		b.ReportMetric(float64(last.fds-early.fds), "fds-growth")
		b.ReportMetric(float64(maxFDs), "fds-max")
		b.ReportMetric(float64(last.threads-early.threads), "threads-growth")
		b.ReportMetric(float64(took.Milliseconds())/float64(*manySteps), "ms/step")
		b.Logf("%d steps in %s; RSS %d KiB at %s, %d KiB at %s, at most %d KiB; open files %d then %d (at most %d); threads %d then %d",
			*manySteps, took.Round(time.Second), early.rss, early.at.Round(time.Second), last.rss, last.at.Round(time.Second), maxRSS, early.fds, last.fds, maxFDs, early.threads, last.threads)
	}
	assertClean(b)
	if got := veths(b); got > vethsBefore {
		b.Errorf("%d veths after, %d before", got, vethsBefore)
	}
	if diff := cmp.Diff(rulesBefore, iptablesRules(b)); diff != "" {
		b.Errorf("iptables rules changed (-before +after):\n%s", diff)
	}
	if got := countMounts(b); got > mountsBefore {
		b.Errorf("%d mounts after, %d before", got, mountsBefore)
	}
}

// procStatus is a process's resident anonymous memory (KiB: its heap, stacks and
// runtime's, not the pages of its executable file, which the kernel maps in as code
// runs and may drop) and thread count.
func procStatus(pid int) (rss int64, threads int) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "RssAnon:":
			rss, _ = strconv.ParseInt(f[1], 10, 64)
		case len(f) >= 2 && f[0] == "Threads:":
			threads, _ = strconv.Atoi(f[1])
		}
	}
	return rss, threads
}

func countMounts(b *testing.B) int {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		b.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
