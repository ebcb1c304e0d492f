package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crun-ci/crun-ci/ociarchive"
)

// BenchmarkAgainstReferences measures whole `crun-ci steps` commands against the
// references the speed issue names, run alternately in each iteration on the same
// containerd (the suite's embedded one) and machine, and prints the medians of the
// per-iteration ratios:
//   - ratio-ctr: 20 serial `true` steps of a service with one anonymous and one host
//     volume, on the default bridge network, against twenty `ctr run --rm` of the same
//     image (target ≤ 0.35);
//   - ratio-runc-host: the same steps with --network host, against twenty bare `runc run`
//     of a prepared bundle (target ≤ 1.6);
//   - ratio-seed: the seed's step (a service sharing another's anonymous volume through
//     volumes_from), as a whole command, against one `ctr run --rm` (target ≤ 1.0).
//
// It also reports the CPU time of the whole machine per step (all processes: crun-ci,
// containerd, shims, runc) for each.
//
//	go test -run NONE -bench AgainstReferences -benchtime 5x ./integration
func BenchmarkAgainstReferences(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	for _, tool := range []string{"ctr", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("needs %s: %v", tool, err)
		}
	}
	var sb strings.Builder
	for i := 0; i < stepsPerBench; i++ {
		sb.WriteString("- service: app\n  command: 'true'\n")
	}
	dir := b.TempDir()
	write := func(dir string, files map[string]string) {
		for name, content := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	write(dir, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  volumes:\n    - /scratch\n    - ./host:/host\n",
		"codeship-steps.yml":    sb.String(),
		"host/.keep":            "",
	})
	seed := b.TempDir()
	write(seed, map[string]string{
		"codeship-services.yml": "data:\n  image: busybox\n  volumes:\n    - /artifacts\nmyapp:\n  image: busybox\n  volumes_from:\n    - data\n",
		"codeship-steps.yml":    "- service: myapp\n  command: sh -c 'echo hello > /artifacts/file && cat /artifacts/file'\n",
	})
	bundle := runcBundle(b)
	sock := ctrd.Address
	global := []string{"--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", stateDir}
	cmd := func(name string, args ...string) {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	steps := func(dir string, extra ...string) {
		cmd(bin, append(append(append([]string{}, global...), "steps", "--dir", dir), extra...)...)
	}
	ctrRun := func(id string) {
		cmd("ctr", "--address", sock, "-n", namespace, "run", "--rm", "docker.io/library/busybox:latest", id, "true")
	}
	runcRun := func(id string) {
		cmd("runc", "--root", filepath.Join(bundle, "state"), "run", "--bundle", bundle, id)
	}
	type sample struct{ wall, cpu time.Duration }
	measure := func(f func()) sample {
		start, cpu := time.Now(), machineCPU(b)
		f()
		return sample{time.Since(start), machineCPU(b) - cpu}
	}
	results := map[string][]sample{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		results["crun-ci"] = append(results["crun-ci"], measure(func() { steps(dir) }))
		results["ctr"] = append(results["ctr"], measure(func() {
			for j := 0; j < stepsPerBench; j++ {
				ctrRun(fmt.Sprintf("ref-%d-%d", i, j))
			}
		}))
		results["crun-ci-host"] = append(results["crun-ci-host"], measure(func() { steps(dir, "--network", "host") }))
		results["runc"] = append(results["runc"], measure(func() {
			for j := 0; j < stepsPerBench; j++ {
				runcRun(fmt.Sprintf("ref-%d-%d", i, j))
			}
		}))
		results["seed"] = append(results["seed"], measure(func() { steps(seed) }))
		results["ctr-1"] = append(results["ctr-1"], measure(func() { ctrRun(fmt.Sprintf("one-%d", i)) }))
	}
	b.StopTimer()
	perStep := map[string]int{"crun-ci": stepsPerBench, "ctr": stepsPerBench, "crun-ci-host": stepsPerBench, "runc": stepsPerBench, "seed": 1, "ctr-1": 1}
	ms := func(name string, cpu bool) []float64 {
		var v []float64
		for _, s := range results[name] {
			d := s.wall
			if cpu {
				d = s.cpu
			}
			v = append(v, float64(d.Microseconds())/1000/float64(perStep[name]))
		}
		return v
	}
	ratio := func(a, ref string) float64 {
		x, y := ms(a, false), ms(ref, false)
		var v []float64
		for i := range x {
			v = append(v, x[i]/y[i])
		}
		return medianOf(v)
	}
	for _, name := range []string{"crun-ci", "ctr", "crun-ci-host", "runc", "seed", "ctr-1"} {
		b.ReportMetric(medianOf(ms(name, false)), "ms/"+name)
		b.ReportMetric(medianOf(ms(name, true)), "cpu-ms/"+name)
	}
	b.ReportMetric(ratio("crun-ci", "ctr"), "ratio-ctr")
	b.ReportMetric(ratio("crun-ci-host", "runc"), "ratio-runc-host")
	b.ReportMetric(ratio("seed", "ctr-1"), "ratio-seed")
}

// runcBundle is an OCI bundle of the static busybox running `true`, with runc's own
// default spec (`runc spec`), for bare `runc run`.
func runcBundle(b *testing.B) string {
	dir := b.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(ociarchive.BusyboxPath)
	if err != nil {
		b.Fatalf("read the static busybox: %v", err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", "true")); err != nil {
		b.Fatal(err)
	}
	spec := exec.Command("runc", "spec", "--bundle", dir)
	if out, err := spec.CombinedOutput(); err != nil {
		b.Fatalf("runc spec: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		b.Fatal(err)
	}
	s := strings.Replace(string(raw), `"terminal": true`, `"terminal": false`, 1)
	s = strings.Replace(s, `"sh"`, `"/bin/true"`, 1)
	if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
		b.Fatal(err)
	}
	return dir
}
