package integration

import (
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crun-ci/crun-ci/ociarchive"
)

// The seed's first use case: a file in a shared anonymous volume as the readiness signal
// between a step's containers. The dependency writes it; the step's command waits for it.
func TestADependencySignalsReadinessThroughASharedVolume(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
data:
  image: busybox
  volumes: [/shared]
worker:
  image: busybox
  volumes_from: [data]
  command: sh -c 'echo working; sleep 0.5; echo done > /shared/ready; sleep 60'
app:
  image: busybox
  volumes_from: [data]
  depends_on: [worker]
`,
		"codeship-steps.yml": `
- name: wait-for-worker
  service: app
  command: sh -c 'for i in $(seq 1 100); do test -e /shared/ready && break; sleep 0.1; done; cat /shared/ready'
- name: next-step-starts-empty
  service: app
  command: sh -c 'test ! -e /shared/ready || sleep 1; ls -A /shared | wc -l'
`,
	})
	began := time.Now()
	r := runSteps(t, dir, "--stop-timeout", "1s")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout,
		"wait-for-worker/worker | working\n", // a dependency's output, with its own prefix
		"wait-for-worker/app | done\n",
		"PASSED      wait-for-worker (app)")
	// sleep 60 in the dependency is stopped when the step's command ends: SIGTERM, which
	// sh as pid 1 ignores, then SIGKILL after 1s.
	if took := time.Since(began); took > 20*time.Second {
		t.Errorf("the build took %s; the dependencies were not stopped", took)
	}

	r = runSteps(t, dir, "--quiet-deps", "--stop-timeout", "1s")
	wantCode(t, r, 0)
	wantNotContains(t, "stdout", r.stdout, "/worker | ")
}

// A dependency whose image has a HEALTHCHECK holds the step until it is healthy; one that
// never gets healthy fails the step with the check's last output.
func TestAHealthcheckGatesTheStep(t *testing.T) {
	requireRoot(t)
	files, err := ociarchive.Busybox(ociarchive.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "healthy.tar")
	err = ociarchive.WriteFile(archive, ociarchive.Image{
		Name:   "docker.io/crunci/healthy:1",
		Config: ociarchive.BusyboxConfig(),
		Files:  files,
		Healthcheck: &ociarchive.Healthcheck{
			Test:     []string{"CMD-SHELL", "test -e /shared/ready || { echo not ready yet; exit 1; }"},
			Interval: 200 * time.Millisecond,
			Retries:  50,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := crunci(t, "import", archive); r.code != 0 {
		t.Fatalf("import: exit %d", r.code)
	}
	dir := project(t, map[string]string{
		"codeship-services.yml": `
data:
  image: busybox
  volumes: [/shared]
db:
  image: crunci/healthy:1
  volumes_from: [data]
  command: sh -c 'sleep 1; touch /shared/ready; exec sleep 60'
sick:
  image: crunci/healthy:1
  command: sleep 60
  healthcheck:
    test: ["CMD", "sh", "-c", "echo still sick; exit 1"]
    interval: 100ms
    retries: 3
migrate:
  image: busybox
  command: sh -c 'exit 4'
app:
  image: busybox
  volumes_from: [data]
  depends_on: [db]
app-sick:
  image: busybox
  depends_on: [sick]
app-migrated:
  image: busybox
  depends_on:
    migrate: {condition: service_completed_successfully}
`,
		"codeship-steps.yml": `
- type: parallel
  steps:
  - name: gated
    service: app
    command: test -e /shared/ready
  - name: unhealthy
    service: app-sick
    command: echo never printed
  - name: migration-failed
    service: app-migrated
    command: echo never printed either
`,
	})
	r := runSteps(t, dir, "--stop-timeout", "1s", "--health-timeout", "4s")
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout,
		"PASSED      gated (app)",
		`FAILED      unhealthy (app-sick)`, `dependency "sick" is not healthy after 4s (`, `; --health-timeout): exit code 1: still sick`,
		`FAILED      migration-failed (app-migrated)`, `dependency "migrate" exited with code 4`)
	wantNotContains(t, "stdout", r.stdout, "never printed")
}

func TestAFailingDependencyIsReported(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
flaky:
  image: busybox
  command: sh -c 'echo crashing; exit 3'
app:
  image: busybox
  depends_on: [flaky]
`,
		"codeship-steps.yml": "- {name: uses-flaky, service: app, command: \"sh -c 'sleep 1; exit 1'\"}\n",
	})
	r := runSteps(t, dir)
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout, "uses-flaky/flaky | crashing\n", `FAILED      uses-flaky (app) `, `: exit code 1 (dependency "flaky" exited early with code 3)`)
	wantContains(t, "stderr", r.stderr, `step \"uses-flaky\": dependency \"flaky\" exited early with code 3`)
	if strings.Count(r.stdout, "crashing") != 1 {
		t.Errorf("the dependency ran more than once")
	}
}

func TestDependenciesAreRemovedAfterAnInterrupt(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
db:
  image: busybox
  command: sh -c 'trap "exit 0" TERM; echo db up; while true; do sleep 0.1; done'
cache:
  image: busybox
  command: sleep 60
app:
  image: busybox
  depends_on: [db, cache]
`,
		"codeship-steps.yml": "- {name: long, service: app, command: \"sh -c 'echo started; sleep 60'\"}\n",
	})
	run := start(t, stateDir, "steps", "--dir", dir, "--stop-timeout", "1s")
	run.waitFor("long/app | started", 1)
	run.signal(syscall.SIGINT)
	r := run.wait()
	wantCode(t, r, 130)
	wantContains(t, "stdout", r.stdout, "long/db | db up\n", "INTERRUPTED long (app)")
	assertClean(t)
}

// A dependency whose PID 1 ignores SIGTERM (busybox httpd, most servers without an init)
// is stopped at once when the step's command has ended: it does not hold the step, or the
// build, for the stop timeout.
func TestADependencyThatIgnoresSIGTERMDoesNotHoldTheStep(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "web:\n  image: busybox\n  command: httpd -f -p 8080\napp:\n  image: busybox\n  depends_on: [web]\n",
		"codeship-steps.yml":    "- {name: one, service: app, command: \"true\"}\n- {name: two, service: app, command: \"true\"}\n",
	})
	began := time.Now()
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	took := time.Since(began)
	t.Logf("two steps with an httpd dependency: %s", took)
	// Before, each step waited out the 10 s stop timeout for httpd.
	if took > 5*time.Second {
		t.Errorf("the build took %s", took)
	}
	for _, m := range regexp.MustCompile(`PASSED      \w+ \(app\) ([0-9.]+)s`).FindAllStringSubmatch(r.stdout, -1) {
		if d, _ := time.ParseDuration(m[1] + "s"); d >= time.Second {
			t.Errorf("a step took %s", d)
		}
	}
	wantNotContains(t, "stderr", r.stderr, "waiting up to")
}

// stop_grace_period gives a dependency its grace after the step: one that handles SIGTERM
// ends in it; one that ignores it gets SIGKILL once the grace is over, and crun-ci says
// that it waits.
func TestStopGracePeriodIsHonoured(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
clean:
  image: busybox
  stop_signal: SIGUSR1
  stop_grace_period: 5s
  command: "sh -c 'trap \"echo got USR1; sleep 1; echo bye; exit 0\" USR1; sleep 3600 & wait; wait'"
stubborn:
  image: busybox
  stop_grace_period: 3s
  command: httpd -f -p 8080
app:
  image: busybox
  depends_on: [clean, stubborn]
`,
		"codeship-steps.yml": "- {name: one, service: app, command: \"sleep 0.5\"}\n",
	})
	began := time.Now()
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	took := time.Since(began)
	wantContains(t, "stdout", r.stdout, "one/clean | got USR1\n", "one/clean | bye\n")
	wantContains(t, "stderr", r.stderr, `stopping \"stubborn\"`, "sent SIGTERM, waiting up to", "before SIGKILL", `step=one`)
	if took < 3*time.Second || took > 15*time.Second {
		t.Errorf("the build took %s; want the stubborn dependency's 3s grace, not much more", took)
	}
}

// With init: true, crun-ci's init is PID 1 and passes SIGTERM on, so a server that
// would ignore it as PID 1 (busybox httpd) stops at once instead of holding the step
// for its stop_grace_period.
func TestInitLetsAServerStopOnSIGTERM(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
web:
  image: busybox
  init: true
  stop_grace_period: 10s
  command: httpd -f -p 8080
app:
  image: busybox
  init: true
  depends_on: [web]
`,
		"codeship-steps.yml": "- {name: one, service: app, command: \"sh -c 'cat /proc/1/cmdline | tr \\\"\\\\\\\\000\\\" \\\" \\\"; echo; echo pid $$'\"}\n",
	})
	began := time.Now()
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	took := time.Since(began)
	wantContains(t, "stdout", r.stdout, "one/app | /.crun-ci/crun-ci init -- sh -c ")
	wantNotContains(t, "stdout", r.stdout, "one/app | pid 1\n")
	wantNotContains(t, "stderr", r.stderr, "waiting up to")
	if took > 5*time.Second {
		t.Errorf("the build took %s; the server should stop on SIGTERM at once, not after its 10s grace", took)
	}
}

// As jet did, a dependency's health check runs every second until it passes (whatever
// its image's interval and retries say), and the wait is said on stderr: a database
// that takes five seconds to start holds the step, it does not fail it.
func TestASlowDependencyIsWaitedFor(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
db:
  image: busybox
  command: sh -c 'sleep 5; touch /tmp/ready; exec sleep 600'
  healthcheck:
    test: ["CMD", "test", "-e", "/tmp/ready"]
    interval: 100ms
    retries: 2
app:
  image: busybox
  depends_on:
    db: {condition: service_healthy}
`,
		"codeship-steps.yml": "- {name: one, service: app, command: echo db is up}\n",
	})
	began := time.Now()
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "one/app | db is up\n")
	wantContains(t, "stderr", r.stderr, "waiting for db to be healthy (")
	if took := time.Since(began); took < 5*time.Second || took > 15*time.Second {
		t.Errorf("took %s, want the five seconds db needs and not much more", took)
	}
}
