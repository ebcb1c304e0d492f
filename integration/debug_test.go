package integration

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// keptBuild runs the pipeline of dir with --keep-on-failure (and args), wants it to fail
// and to say how to enter step, and returns the build's id.
func keptBuild(t *testing.T, dir, step string, args ...string) string {
	t.Helper()
	r := crunci(t, append([]string{"steps", "--dir", dir, "--keep-on-failure"}, args...)...)
	wantCode(t, r, 1)
	id := buildID(t, r.stdout)
	wantContains(t, "stderr", r.stderr, "enter one with: crun-ci debug "+id+" "+step)
	return id
}

// A failed step kept with --keep-on-failure survives the clean-up of later runs; debug
// runs commands on its filesystem, with its volumes and environment, passes their exit
// status on, keeps what they change, and leaves nothing of its own; cleanup --kept
// removes the build.
func TestDebugEntersAKeptFailedStep(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  environment: {GREETING: hello}\n  volumes: [/cache, ./out:/out]\n",
		"codeship-steps.yml": `
- {name: ok, service: app, command: "sh -c 'echo ok > /out/ok'"}
- {name: broken, service: app, command: "sh -c 'echo left-behind > /cache/note; echo mark > /root-mark; exit 3'"}
`,
		"out/": "",
	})
	id := keptBuild(t, dir, "broken")
	// Neither a later build nor a plain cleanup removes it.
	other := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml":    "- {name: fine, service: app, command: \"true\"}\n",
	})
	wantCode(t, crunci(t, "steps", "--dir", other), 0)
	r := crunci(t, "cleanup")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "kept build "+id+` (steps "broken", until removed; crun-ci cleanup --kept removes it)`)

	r = crunci(t, "debug", id, "broken", "--", "sh", "-c", "cat /cache/note /root-mark /out/ok; echo $GREETING; grep -c app /etc/hosts; echo changed > /cache/note; exit 4")
	wantCode(t, r, 4)
	wantContains(t, "stdout", r.stdout, "left-behind\nmark\nok\nhello\n1\n")
	// Without a build id: the latest kept build with that step; what debug changed stays.
	r = crunci(t, "debug", "broken", "--", "cat", "/cache/note")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "changed\n")

	r = crunci(t, "debug", id, "nope")
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `debug: build `+id+` kept no step "nope" (steps "broken", until removed)`)
	r = crunci(t, "debug", "broken", "--", "npm", "test")
	wantCode(t, r, 1)
	wantContains(t, "stderr", r.stderr, `"npm" not found in image busybox (PATH=`)

	// Only the kept container is there: the debug containers went.
	ctrs, err := ctrd.Client.Containers(context.Background())
	if err != nil || len(ctrs) != 1 || ctrs[0].ID() != "crunci-"+id+"-2-app" {
		var ids []string
		for _, c := range ctrs {
			ids = append(ids, c.ID())
		}
		t.Errorf("containers %q, %v: want the kept step's alone", ids, err)
	}
	r = crunci(t, "cleanup", "--kept")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "removed build "+id)
	assertClean(t)
}

// A step may swap a directory of the build directory that its service mounts for a
// symlink to the host's /etc; debug, like a later step, refuses to mount it.
func TestDebugRefusesAHostPathSwappedForASymlink(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  volumes: [./:/src, ./data:/data]\n",
		"codeship-steps.yml":    "- {name: swap, service: app, command: \"sh -c 'rm -rf /src/data && ln -s /etc /src/data; exit 1'\"}\n",
		"data/":                 "",
	})
	id := keptBuild(t, dir, "swap")
	if target, err := os.Readlink(filepath.Join(dir, "data")); err != nil || target != "/etc" {
		t.Fatalf("the swap did not happen: %q, %v", target, err)
	}
	r := crunci(t, "debug", id, "swap", "--", "sh", "-c", "echo pwned > /data/pwned")
	wantCode(t, r, 1)
	wantContains(t, "stderr", r.stderr, filepath.Join(dir, "data")+" changed since it was checked: a symlink is in it now")
	if _, err := os.Stat("/etc/pwned"); err == nil {
		os.Remove("/etc/pwned")
		t.Fatal("debug wrote into the host's /etc")
	}
	wantCode(t, crunci(t, "cleanup", "--kept"), 0)
	assertClean(t)
}

// With --keep-for, the clean-up of a later run removes a kept build once its time is up.
func TestAKeptBuildGoesWhenItsTimeIsUp(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml":    "- {name: fails, service: app, command: \"false\"}\n",
	})
	id := keptBuild(t, dir, "fails", "--keep-for", "1s")
	wantContains(t, "kept.json", readFile(t, filepath.Join(stateDir, "builds", id, "kept.json")), `"until"`)
	time.Sleep(1100 * time.Millisecond)
	r := crunci(t, "cleanup")
	wantCode(t, r, 0)
	if !regexp.MustCompile(`removed build ` + id + `: 1 containers`).MatchString(r.stdout) {
		t.Errorf("the expired kept build was not removed:\n%s", r.stdout)
	}
	assertClean(t)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
