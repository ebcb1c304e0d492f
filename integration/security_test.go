package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crun-ci/crun-ci/dockerfile"
)

// The attacks of issue 10, written as an attacker would: a pipeline from a stranger's
// pull request, whose steps write into the build directory through a host volume
// (`./:/src`) and whose later steps, or a later build of the same checkout, make crun-ci
// read what they left there.

// hostSecret is what a file of the host outside the build directory holds; it must never
// reach an image, the output or the layer cache.
const hostSecret = "HOST-SECRET-first-line-4f1c9a"

// outsideDir makes a directory of the host outside every build directory, holding a
// file with hostSecret.
func outsideDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(hostSecret+"\nsecond line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// crunciWithin runs the binary like crunci, but fails the test (after killing crun-ci)
// when it has not ended within d: what a step leaves must never hang crun-ci.
func crunciWithin(t *testing.T, d time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r := crunciCtx(t, ctx, args...)
	if ctx.Err() != nil {
		t.Fatalf("crun-ci did not end within %s", d)
	}
	return r
}

// stepsWithin is runSteps with a time bound.
func stepsWithin(t *testing.T, d time.Duration, dir string, args ...string) result {
	t.Helper()
	r := crunciWithin(t, d, append([]string{"steps", "--dir", dir}, args...)...)
	assertClean(t)
	return r
}

func wantNoSecret(t *testing.T, r result) {
	t.Helper()
	if strings.Contains(r.stdout+r.stderr, hostSecret) {
		t.Errorf("the host file's content is in crun-ci's output")
	}
}

// noImage checks that no image of that name was built.
func noImage(t *testing.T, name string) {
	t.Helper()
	if _, err := ctrd.Client.ImageService().Get(context.Background(), name); err == nil {
		t.Errorf("image %s was built", name)
	}
}

func TestASwappedBuildContextCannotReadTheHost(t *testing.T) {
	requireRoot(t)
	outside := outsideDir(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
app:
  image: busybox
  volumes: ["./:/src"]
built:
  build:
    image: crunci/swapped-context:1
    context: ctx
    dockerfile: ../Dockerfile
`,
		"codeship-steps.yml": `
- {name: swap, service: app, command: "sh -c 'rm -rf /src/ctx && ln -s ` + outside + ` /src/ctx'"}
- {name: use, service: built, command: "cat /ctx/secret"}
`,
		"Dockerfile": "FROM busybox\nCOPY . /ctx/\n",
		"ctx/a.txt":  "ours\n",
	})
	before := cacheEntries(t)
	r := stepsWithin(t, 2*time.Minute, dir)
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout, "PASSED      swap (app)", "FAILED      use (built)", "build context: ctx is a symlink leaving the build directory")
	wantNoSecret(t, r)
	noImage(t, "docker.io/crunci/swapped-context:1")
	if after := cacheEntries(t); after != before {
		t.Errorf("the layer cache grew from %d to %d entries", before, after)
	}
}

// cacheEntries counts the layers of the layer cache.
func cacheEntries(t *testing.T) int {
	t.Helper()
	entries, err := dockerfile.Cache(context.Background(), ctrd.Client)
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// A step swaps the Dockerfile for a link to a host file, a device or a FIFO. The build of
// this run uses the Dockerfile read with the pipeline, before any step ran; the next run
// of the same checkout reads the swapped one, and refuses it without opening it.
func TestADockerfileSwappedForAHostFileOrADeviceIsRefused(t *testing.T) {
	requireRoot(t)
	outside := outsideDir(t)
	for _, tc := range []struct {
		name, swap, want string
	}{
		{"a link to a host file", "ln -sf " + filepath.Join(outside, "secret") + " /src/Dockerfile", "Dockerfile is a symlink leaving the build directory"},
		{"a link to /dev/zero", "ln -sf /dev/zero /src/Dockerfile", "Dockerfile is a symlink leaving the build directory"},
		{"a device node made in the build directory", "rm /src/Dockerfile && mknod /src/Dockerfile c 1 5", "Dockerfile is a character device, not a regular file"},
		{"a FIFO", "rm /src/Dockerfile && mkfifo /src/Dockerfile", "Dockerfile is a named pipe, not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := project(t, map[string]string{
				"codeship-services.yml": "app:\n  image: busybox\n  volumes: [\"./:/src\"]\nbuilt:\n  build: {image: crunci/swapped-dockerfile:1}\n",
				"codeship-steps.yml":    "- {name: swap, service: app, command: \"sh -c '" + tc.swap + "'\"}\n- {name: use, service: built, command: \"cat /from-the-dockerfile\"}\n",
				"Dockerfile":            "FROM busybox\nRUN echo as read with the pipeline > /from-the-dockerfile\n",
			})
			r := stepsWithin(t, 2*time.Minute, dir, "--no-cache")
			wantCode(t, r, 0)
			wantContains(t, "stdout", r.stdout, "use/built | as read with the pipeline\n")
			wantNoSecret(t, r)
			r = stepsWithin(t, 30*time.Second, dir)
			wantCode(t, r, 2)
			wantContains(t, "stderr", r.stderr, `codeship-services.yml:5: service "built": build: `+tc.want)
			wantNoSecret(t, r)
		})
	}
}

// A FIFO named .dockerignore used to block crun-ci in open for good.
func TestAFIFOAsDockerignoreDoesNotHangTheBuild(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  volumes: [\"./:/src\"]\nbuilt:\n  build: {image: crunci/fifo-ignore:1}\n",
		"codeship-steps.yml":    "- {name: plant, service: app, command: \"mkfifo /src/.dockerignore\"}\n- {name: use, service: built, command: \"true\"}\n",
		"Dockerfile":            "FROM busybox\nCOPY Dockerfile /\n",
	})
	start := time.Now()
	r := stepsWithin(t, time.Minute, dir, "--step-timeout", "30s")
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout, ".dockerignore is a named pipe, not a regular file")
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the build took %s", d)
	}
}

// Files that the pipeline names are read when the next build starts: a step of one build
// plants a device node or a FIFO, the next build of the same checkout must refuse it at
// once, without reading it.
func TestAPlantedEnvFileIsRefusedByTheNextBuild(t *testing.T) {
	requireRoot(t)
	outside := outsideDir(t)
	for _, tc := range []struct {
		name, plant, want string
	}{
		{"a character device", "rm /src/env.list && mknod /src/env.list c 1 5", "env.list is a character device, not a regular file"},
		{"a FIFO", "rm /src/env.list && mkfifo /src/env.list", "env.list is a named pipe, not a regular file"},
		{"a link to a host file", "ln -sf " + filepath.Join(outside, "secret") + " /src/env.list", "env.list is a symlink leaving the build directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := project(t, map[string]string{
				"codeship-services.yml": "app:\n  image: busybox\n  volumes: [\"./:/src\"]\n  env_file: env.list\n",
				"codeship-steps.yml":    "- {name: plant, service: app, command: \"sh -c '" + tc.plant + "'\"}\n",
				"env.list":              "A=1\n",
			})
			r := stepsWithin(t, time.Minute, dir)
			wantCode(t, r, 0)
			r = stepsWithin(t, 30*time.Second, dir)
			wantCode(t, r, 2)
			wantContains(t, "stderr", r.stderr, `codeship-services.yml:4: service "app": `+tc.want)
			wantNoSecret(t, r)
		})
	}
}

func TestHostVolumesAreNodevAndNosuid(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  volumes: [\"./:/src\", \"/scratch\"]\n",
		"codeship-steps.yml": `
- {name: plant, service: app, command: "sh -c 'mknod /src/zero c 1 5 && grep -E \" /(src|scratch) \" /proc/self/mounts'"}
- {name: use, service: app, command: "head -c 1 /src/zero"}
`,
	})
	r := stepsWithin(t, time.Minute, dir)
	wantCode(t, r, 1)
	for _, target := range []string{"/src", "/scratch"} {
		line := ""
		for _, l := range strings.Split(r.stdout, "\n") {
			if strings.Contains(l, " "+target+" ") {
				line = l
			}
		}
		if !strings.Contains(line, "nosuid") || !strings.Contains(line, "nodev") {
			t.Errorf("mount of %s: %q, want nosuid and nodev", target, line)
		}
	}
	wantContains(t, "stdout", r.stdout, "use/app | head: /src/zero: Permission denied")
}

// probe builds the probe command (testdata/probe) statically into dir.
func probe(t *testing.T, dir string) {
	t.Helper()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "probe"), "./testdata/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v\n%s", err, out)
	}
}

// Every container crun-ci starts is confined like Docker's: the step's own, its
// dependencies and the RUN of an image build.
func TestEveryContainerHasTheDefaultSeccompProfile(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
app:
  image: busybox
  volumes: ["./:/src"]
  depends_on: [dep]
dep:
  image: busybox
  command: "sh -c 'grep Seccomp: /proc/self/status; sleep 30'"
built:
  build: {image: crunci/seccomp-run:1}
`,
		"codeship-steps.yml": `
- name: probe
  service: app
  command: "sh -c 'grep -E \"^(Seccomp|NoNewPrivs):\" /proc/self/status; /src/probe; unshare -U true && echo unshare: allowed || echo unshare: refused'"
- {name: build, service: built, command: "true"}
`,
		"Dockerfile": "FROM busybox\nRUN grep Seccomp: /proc/self/status; unshare -U true || echo RUN unshare refused\n",
	})
	probe(t, dir)
	r := stepsWithin(t, 2*time.Minute, dir, "--no-cache")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout,
		"probe/app | Seccomp:\t2\n", "probe/app | NoNewPrivs:\t1\n",
		"probe/app | add_key: refused", "probe/app | keyctl: refused", "probe/app | perf_event_open: refused",
		"probe/app | io_uring_setup: refused", "probe/app | unshare: refused\n",
		"probe/dep | Seccomp:\t2\n",
		"build/built build | Seccomp:\t2\n", "build/built build | RUN unshare refused\n")
	wantNotContains(t, "stdout", r.stdout, ": allowed")
}

func TestWideningTheContainerNeedsTheOperator(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
priv:
  image: busybox
  privileged: true
admin:
  image: busybox
  cap_add: [SYS_ADMIN]
dev:
  image: busybox
  devices: ["/dev/fuse"]
unconfined:
  image: busybox
  security_opt: ["seccomp=unconfined"]
`,
		"codeship-steps.yml": `
- {name: priv, service: priv, command: "sh -c 'grep Seccomp: /proc/self/status; mkdir -p /mnt && mount -t tmpfs none /mnt && echo mounted'"}
- {name: admin, service: admin, command: "sh -c 'mkdir -p /mnt && mount -t tmpfs none /mnt && echo mounted'"}
- {name: unconfined, service: unconfined, command: "grep Seccomp: /proc/self/status"}
`,
	})
	r := crunci(t, "validate", "--dir", dir)
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr,
		`codeship-services.yml:4: service "priv": key "privileged": a privileged container can reach the host; refused unless the operator runs crun-ci with --allow-privileged`,
		`codeship-services.yml:7: service "admin": key "cap_add": SYS_ADMIN is beyond Docker's default capabilities; refused unless the operator runs crun-ci with --allow-privileged`,
		`codeship-services.yml:10: service "dev": key "devices": /dev/fuse: a host device is refused unless the operator runs crun-ci with --allow-privileged`,
		`codeship-services.yml:13: service "unconfined": key "security_opt": "seccomp=unconfined" is refused unless the operator runs crun-ci with --allow-unconfined`)
	r = runSteps(t, dir)
	wantCode(t, r, 2)
	wantNotContains(t, "stdout", r.stdout, "mounted")

	// The operator allows it: the containers are as wide as asked.
	os.WriteFile(filepath.Join(dir, "codeship-services.yml"), []byte(strings.Replace(string(must(os.ReadFile(filepath.Join(dir, "codeship-services.yml")))), "  devices: [\"/dev/fuse\"]\n", "  devices: [\"/dev/null:/dev/extra-null\"]\n", 1)), 0o644)
	r = runSteps(t, dir, "--allow-privileged", "--allow-unconfined")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "priv/priv | Seccomp:\t0\n", "priv/priv | mounted\n", "admin/admin | mounted\n", "unconfined/unconfined | Seccomp:\t0\n")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestCapabilitiesWithinDockersDefaultsAlwaysWork(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
dropped:
  image: busybox
  cap_drop: [CHOWN]
only:
  image: busybox
  cap_drop: [ALL]
  cap_add: [CHOWN]
`,
		"codeship-steps.yml": `
- {name: dropped, service: dropped, command: "sh -c 'touch /x; chown 1 /x || echo chown refused'"}
- {name: only, service: only, command: "sh -c 'touch /x; chown 1 /x && echo chown works; grep CapEff: /proc/self/status'"}
`,
	})
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	// CAP_CHOWN alone is bit 0.
	wantContains(t, "stdout", r.stdout, "dropped/dropped | chown refused\n", "only/only | chown works\n", "only/only | CapEff:\t0000000000000001\n")
}

func TestAForkBombStopsAtThePidsLimit(t *testing.T) {
	requireRoot(t)
	fork := func(n int) string {
		return fmt.Sprintf(`sh -c 'i=0; while [ $i -lt %d ]; do sleep 60 & i=$((i+1)); done; echo all forked'`, n)
	}
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\nsmall:\n  image: busybox\n  pids_limit: 64\n",
		"codeship-steps.yml": `
- type: parallel
  steps:
  - {name: default, service: app, command: "` + fork(2100) + `"}
  - {name: small, service: small, command: "` + fork(100) + `"}
  - {name: enough, service: small, command: "` + fork(50) + `"}
`,
	})
	start := time.Now()
	r := stepsWithin(t, 2*time.Minute, dir)
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout, "default/app | sh: can't fork", "small/small | sh: can't fork", "enough/small | all forked\n",
		"FAILED      default (app)", "FAILED      small (small)", "PASSED      enough (small)")
	wantNotContains(t, "stdout", r.stdout, "default/app | all forked", "small/small | all forked")
	t.Logf("three fork bombs ended in %s", time.Since(start))
	// The host is unaffected: it still forks, and no process of the steps is left.
	if out, err := exec.Command("sh", "-c", "echo alive").Output(); err != nil || string(out) != "alive\n" {
		t.Errorf("the host cannot fork: %v", err)
	}

	// The operator's bound is the most a service may ask for.
	r = crunci(t, "validate", "--dir", dir, "--pids-limit", "32")
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `codeship-services.yml:5: service "small": key "pids_limit": 64 is above the operator's bound of 32 (--pids-limit)`)
}

func TestAContainerOverItsMemoryLimitIsKilledAndSaysSo(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "small:\n  image: busybox\n  mem_limit: 64m\nplain:\n  image: busybox\n",
		"codeship-steps.yml": `
- type: parallel
  steps:
  - {name: alloc, service: small, command: "dd if=/dev/zero of=/dev/null bs=150M count=1"}
  - {name: fits, service: small, command: "dd if=/dev/zero of=/dev/null bs=16M count=1"}
  - {name: default, service: plain, command: "dd if=/dev/zero of=/dev/null bs=150M count=1"}
`,
	})
	r := runSteps(t, dir, "--memory-limit", "96m")
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout,
		"FAILED      alloc (small)", "exit code 137 (killed: out of memory (limit 64MiB))",
		"PASSED      fits (small)",
		"FAILED      default (plain)", "exit code 137 (killed: out of memory (limit 96MiB))")

	// Above the operator's bound, a service is refused.
	r = crunci(t, "validate", "--dir", dir, "--memory-limit", "32m")
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `codeship-services.yml:3: service "small": key "mem_limit": 64MiB is above the operator's bound of 32MiB (--memory-limit)`)
}

func TestResourceKeysReachTheContainer(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
app:
  image: busybox
  shm_size: 32m
  cpus: 0.5
  cpu_shares: 512
  ulimits:
    nofile: {soft: 1000, hard: 2000}
    core: 0
  labels: {team: ci, "com.example.tier": backend}
`,
		"codeship-steps.yml": `- {name: show, service: app, command: "sh -c 'df -k /dev/shm | tail -1; ulimit -n; ulimit -Hn; ulimit -c'"}` + "\n",
	})
	// Kept, to read what containerd gave runc; cleanup removes it then.
	r := crunci(t, "steps", "--dir", dir, "--no-remove")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, " 32768 ", "show/app | 1000\n", "show/app | 2000\n", "show/app | 0\n")
	ctrs, err := ctrd.Client.Containers(context.Background())
	if err != nil || len(ctrs) != 1 {
		t.Fatalf("containers %v, %v: want the step's", ctrs, err)
	}
	spec, err := ctrs[0].Spec(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cpu := spec.Linux.Resources.CPU
	if cpu == nil || cpu.Quota == nil || *cpu.Quota != 50000 || *cpu.Period != 100000 || *cpu.Shares != 512 {
		t.Errorf("CPU resources %+v: want a quota of 50000 per 100000 and 512 shares", cpu)
	}
	if p := spec.Linux.Resources.Pids; p == nil || p.Limit == nil || *p.Limit != 2048 {
		t.Errorf("pids %+v: want the default limit of 2048", p)
	}
	labels, err := ctrs[0].Labels(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if labels["team"] != "ci" || labels["com.example.tier"] != "backend" || labels["crun-ci.step"] != "show" {
		t.Errorf("labels %v: want the service's (team, com.example.tier) and crun-ci's", labels)
	}
	wantCode(t, crunci(t, "cleanup"), 0)
	assertClean(t)
}

// Secret build arguments enter the cache key as a keyed hash of their value: another
// project with another secret never gets the layer (and the secret) of the first.
func TestSecretBuildArgumentsNeverShareALayer(t *testing.T) {
	requireRoot(t)
	build := func(token string) string {
		dir := project(t, map[string]string{
			"codeship-services.yml": "app:\n  build:\n    image: crunci/secret-layer:" + token[:1] + "\n    encrypted_args_file: args.encrypted\n",
			"codeship-steps.yml":    "- {name: show, service: app, command: \"sed s/./&-/g /t\"}\n",
			"Dockerfile":            "FROM busybox\nARG TOKEN\nRUN echo \"$TOKEN\" > /t\n",
			"args.env":              "TOKEN=" + token + "\n",
		})
		crunci(t, "generate", "--dir", dir)
		crunci(t, "encrypt", "--dir", dir, filepath.Join(dir, "args.env"), filepath.Join(dir, "args.encrypted"))
		os.Remove(filepath.Join(dir, "args.env"))
		return dir
	}
	a, b := build("alpha1"), build("bravo2")
	r := runSteps(t, a)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "show/app | a-l-p-h-a-1-\n")
	r = runSteps(t, b)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "show/app | b-r-a-v-o-2-\n", "built docker.io/crunci/secret-layer:b: 1 layers, 0 from the cache")
	// The same secret finds its layer again.
	r = runSteps(t, a)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "show/app | a-l-p-h-a-1-\n", "built docker.io/crunci/secret-layer:a: 1 layers, 1 from the cache")
	fi, err := os.Stat(filepath.Join(stateDir, dockerfile.CacheSecretFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", dockerfile.CacheSecretFile, fi.Mode().Perm())
	}
}

// ADD <url> fetches from the build's network: what a step could reach, not crun-ci's
// own loopback, and the host only with --host-access gateway.
func TestADDFetchesFromTheBuildNetwork(t *testing.T) {
	requireRoot(t)
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "fetched from "+r.Host) })}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	host := hostAddress(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
loopback:
  build: {image: "crunci/add-loopback:1", dockerfile: Dockerfile.loopback}
bridge:
  build: {image: "crunci/add-bridge:1", dockerfile: Dockerfile.bridge}
`,
		"codeship-steps.yml":  "- {name: bridge, service: bridge, command: cat /f}\n- {name: loopback, service: loopback, command: cat /f}\n",
		"Dockerfile.loopback": fmt.Sprintf("FROM busybox\nADD http://127.0.0.1:%d/f /f\n", port),
		// An address of the host, reached as a step reaches the host.
		"Dockerfile.bridge": fmt.Sprintf("FROM busybox\nADD http://%s:%d/f /f\n", host, port),
	})
	r := runSteps(t, dir, "--no-cache", "--host-access", "gateway")
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout, fmt.Sprintf("bridge/bridge | fetched from %s:%d\n", host, port),
		"FAILED      loopback (loopback)", fmt.Sprintf(`Dockerfile.loopback:2: ADD http://127.0.0.1:%d/f /f: fetch "http://127.0.0.1:%d/f"`, port, port), "connection refused")
	// By default the host is out of reach, at once.
	start := time.Now()
	r = runSteps(t, dir, "--no-cache")
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout, fmt.Sprintf(`Dockerfile.bridge:2: ADD http://%s:%d/f /f: fetch "http://%s:%d/f"`, host, port, host, port), "connection refused")
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("refused by --host-access none after %s, want at once", took)
	}
}

// add_docker: true gets the Docker daemon the operator names with --docker-host (its
// socket at /var/run/docker.sock, DOCKER_HOST set), and is refused without it: a
// pipeline never gets the host's daemon by asking.
func TestAddDockerNeedsTheOperator(t *testing.T) {
	requireRoot(t)
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := project(t, map[string]string{
		"codeship-services.yml": "deploy:\n  image: busybox\n  add_docker: true\nplain:\n  image: busybox\n  add_docker: false\n",
		"codeship-steps.yml": `
- {name: docker, service: deploy, command: "sh -c 'test -S /var/run/docker.sock && echo socket; echo host $DOCKER_HOST'"}
- {name: plain, service: plain, command: "sh -c 'test -e /var/run/docker.sock || echo no socket ${DOCKER_HOST:-unset}'"}
`,
	})
	r := runSteps(t, dir)
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `codeship-services.yml:1: service "deploy": add_docker: true: `, "--docker-host unix:///var/run/docker.sock gives the pipeline that daemon, and with it root on this host")
	r = runSteps(t, dir, "--docker-host", "unix://"+filepath.Join(dir, "codeship-steps.yml"))
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, "codeship-steps.yml is not a socket")

	r = runSteps(t, dir, "--docker-host", "unix://"+sock)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "docker/deploy | socket\ndocker/deploy | host unix:///var/run/docker.sock\n", "plain/plain | no socket unset\n")
	// A TCP daemon: DOCKER_HOST only.
	r = runSteps(t, dir, "--docker-host", "tcp://127.0.0.1:2375")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "docker/deploy | host tcp://127.0.0.1:2375\n", "plain/plain | no socket unset\n")
	wantNotContains(t, "stdout", r.stdout, "docker/deploy | socket")
	// Behind TLS: the operator's DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, its
	// certificates mounted read-only, as jet passed the host's.
	certs := t.TempDir()
	os.WriteFile(filepath.Join(certs, "ca.pem"), []byte("the CA\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "tls-steps.yml"), []byte(`- {name: tls, service: deploy, command: "sh -c 'echo $DOCKER_TLS_VERIFY; cat $DOCKER_CERT_PATH/ca.pem; touch $DOCKER_CERT_PATH/x || echo read-only'"}`+"\n"), 0o644)
	r = runStepsEnv(t, dir, []string{"DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + certs}, "--docker-host", "tcp://127.0.0.1:2376", "--steps-path", "tls-steps.yml")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "tls/deploy | 1\n", "tls/deploy | the CA\n", "tls/deploy | read-only\n")
}
