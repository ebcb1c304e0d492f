package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The seed's configuration #1: an anonymous volume shared through volumes_from lives for
// one step; the next step starts with an empty one.
func TestAnonymousVolumeIsSharedWithinAStepAndGoneAfterIt(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
data:
  image: crunci/seeded:1
  volumes:
    - /artifacts
myapp:
  image: busybox
  volumes_from:
    - data
`,
		"codeship-steps.yml": `
- name: write
  service: myapp
  command: sh -c 'cat /artifacts/from-image.txt && echo step1 > /artifacts/out.txt'
- name: read
  service: myapp
  command: sh -c 'ls -A /artifacts; test ! -e /artifacts/out.txt && echo out.txt is gone'
`,
	})
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout,
		"write/myapp | from the image\n", // data's volume, filled from data's image, seen by myapp
		"read/myapp | from-image.txt\n",
		"read/myapp | out.txt is gone\n",
		"PASSED      write (myapp)", "PASSED      read (myapp)", "2 passed")
}

// The seed's configuration #2: a host volume relative to the build directory persists
// across steps and after the build.
func TestHostVolumePersistsAcrossStepsAndAfterTheBuild(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
data:
  image: busybox
  volumes:
    - ./tmp/artifacts:/artifacts
deployer:
  image: busybox
  volumes_from:
    - data
`,
		"codeship-steps.yml": `
- service: data
  command: sh -c 'echo "built by $CI_NAME" > /artifacts/stamp'
- service: deployer
  command: cat /artifacts/stamp
`,
		"tmp/artifacts/.gitkeep": "",
	})
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "deployer_1/deployer | built by codeship\n")
	got, err := os.ReadFile(filepath.Join(dir, "tmp/artifacts/stamp"))
	if err != nil || string(got) != "built by codeship\n" {
		t.Errorf("host file after the build: %q, %v", got, err)
	}
}

func TestImageContentIsCopiedIntoANewAnonymousVolume(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
app:
  image: crunci/seeded:1
  volumes: [/artifacts]
empty:
  image: crunci/seeded:1
  volumes: ["/artifacts:nocopy"]
`,
		"codeship-steps.yml": `
- service: app
  command: sh -c 'cat /artifacts/from-image.txt; stat -c "%u %a" /artifacts/sub/deep.txt; cat /artifacts/sub/deep.txt; grep " /artifacts " /proc/mounts | wc -l'
- service: empty
  command: sh -c 'ls -A /artifacts | wc -l'
`,
	})
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout,
		"app_1/app | from the image\n",
		"app_1/app | 65534 600\n", // owner and mode kept
		"app_1/app | deep\n",
		"app_1/app | 1\n", // it is a mount, not the image's directory
		"empty_1/empty | 0\n")
}

func TestMissingHostDirectoryIsAPreconditionError(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  volumes:\n    - ./missing:/x\n",
		"codeship-steps.yml":    "- service: app\n  command: 'true'\n",
	})
	r := runSteps(t, dir)
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `codeship-services.yml:4: service "app": volume "./missing:/x": host path `+filepath.Join(dir, "missing")+` does not exist`)
	wantNotContains(t, "stdout", r.stdout, "PASSED")
}

func TestEscapesFromTheBuildDirectoryAreRefusedAllAtOnce(t *testing.T) {
	requireRoot(t)
	outside := t.TempDir()
	dir := project(t, map[string]string{
		"codeship-services.yml": `
app:
  image: busybox
  volumes:
    - ../` + filepath.Base(outside) + `:/a
    - ` + outside + `:/b
    - ./link:/c
`,
		"codeship-steps.yml": "- service: app\n  command: 'true'\n",
	})
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	r := runSteps(t, dir)
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr,
		`codeship-services.yml:5: service "app": volume "../`+filepath.Base(outside)+`:/a": host path `,
		`outside the build directory`,
		`codeship-services.yml:6: service "app": volume "`+outside+`:/b": host path `+outside+` is absolute and no --allow-host-path grants it`,
		`codeship-services.yml:7: service "app": volume "./link:/c": host path `+filepath.Join(dir, "link")+` resolves to `+outside)
	if strings.Count(r.stderr, "\n") < 3 {
		t.Errorf("want the three violations on three lines")
	}

	// A grant lets the same pipeline run.
	r = runSteps(t, dir, "--allow-host-path", outside)
	wantCode(t, r, 0)
}

func TestReadOnlyVolumesCannotBeWritten(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
data:
  image: busybox
  volumes: ["./shared:/shared"]
ro:
  image: busybox
  volumes: ["./shared:/shared:ro"]
rofrom:
  image: busybox
  volumes_from: ["data:ro"]
rw:
  image: busybox
  volumes: ["./shared:/shared:rw"]
`,
		"codeship-steps.yml": `
- type: parallel
  steps:
  - name: ro-write
    service: ro
    command: sh -c 'touch /shared/x 2>&1; echo status $?'
  - name: rofrom-write
    service: rofrom
    command: sh -c 'touch /shared/y 2>&1; echo status $?'
  - name: rw-write
    service: rw
    command: touch /shared/z
`,
		"shared/": "",
	})
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "ro-write/ro | status 1\n", "rofrom-write/rofrom | status 1\n", "Read-only file system")
	for name, want := range map[string]bool{"x": false, "y": false, "z": true} {
		_, err := os.Stat(filepath.Join(dir, "shared", name))
		if (err == nil) != want {
			t.Errorf("shared/%s exists: %v, want %v", name, err == nil, want)
		}
	}
}

func TestAFailingStepStopsTheSerialChainWhileParallelSiblingsFinish(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  volumes: [./out:/out]\n",
		"codeship-steps.yml": `
- name: first
  service: app
  command: touch /out/first
- type: parallel
  steps:
  - name: fails
    service: app
    command: sh -c 'exit 3'
  - name: slow-sibling
    service: app
    command: sh -c 'sleep 1; touch /out/sibling'
  on_fail:
  - name: cleanup-hook
    service: app
    command: touch /out/on_fail
- name: never
  service: app
  command: touch /out/never
`,
		"out/": "",
	})
	r := runSteps(t, dir)
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout,
		"PASSED      first (app)",
		"FAILED      fails (app)", ": exit code 3",
		"PASSED      slow-sibling (app)",
		"PASSED      cleanup-hook (app)",
		"NOT RUN     never (app): an earlier step failed")
	for name, want := range map[string]bool{"first": true, "sibling": true, "on_fail": true, "never": false} {
		_, err := os.Stat(filepath.Join(dir, "out", name))
		if (err == nil) != want {
			t.Errorf("out/%s exists: %v, want %v", name, err == nil, want)
		}
	}
}

func TestTagAndExcludeSelectSteps(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml": `
- {name: always, service: app, command: echo always}
- {name: on-master, service: app, tag: master, command: echo on-master}
- {name: on-feature, service: app, tag: ^feature/, command: echo on-feature}
- {name: not-master, service: app, exclude: master, command: echo not-master}
- type: serial
  tag: ^(master|release)$
  steps:
  - {name: group-child, service: app, command: echo group-child}
`,
	})
	for _, tc := range []struct {
		tag         string
		ran, notRan []string
	}{
		{"", []string{"always", "not-master"}, []string{"on-master", "on-feature", "group-child"}},
		{"master", []string{"always", "on-master", "group-child"}, []string{"on-feature", "not-master"}},
		{"feature/x", []string{"always", "on-feature", "not-master"}, []string{"on-master", "group-child"}},
	} {
		t.Run("tag "+tc.tag, func(t *testing.T) {
			args := []string{}
			if tc.tag != "" {
				args = append(args, "--tag", tc.tag)
			}
			r := runSteps(t, dir, args...)
			wantCode(t, r, 0)
			for _, s := range tc.ran {
				wantContains(t, "stdout", r.stdout, s+"/app | "+s+"\n")
			}
			for _, s := range tc.notRan {
				wantNotContains(t, "stdout", r.stdout, s+"/app | ")
			}
			if tc.tag == "" {
				// As jet: without --tag, steps with a tag are skipped, and said so.
				wantContains(t, "stdout", r.stdout, "SKIPPED     on-master (app): tag master; pass --tag to run it\n",
					"SKIPPED     group-child (app): tag ^(master|release)$; pass --tag to run it\n")
			}
		})
	}
}

func TestEnvironmentReachesContainers(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
listed:
  image: busybox
  environment:
    - FROM_LIST=list value
    - OVERRIDDEN=service
mapped:
  image: busybox
  environment:
    FROM_MAP: map value
    PATH: /custom:/bin
`,
		"codeship-steps.yml": `
- name: list
  service: listed
  command: sh -c 'echo "$FROM_LIST|$OVERRIDDEN|$FROM_FLAG|$CI|$CI_NAME|$CI_BRANCH|$CI_BUILD_ID"'
- name: map
  service: mapped
  command: sh -c 'echo "$FROM_MAP|$PATH"'
`,
	})
	r := runSteps(t, dir, "--tag", "main", "-e", "OVERRIDDEN=flag", "--env", "FROM_FLAG=x=y")
	wantCode(t, r, 0)
	id := buildID(t, r.stdout)
	wantContains(t, "stdout", r.stdout,
		"list/listed | list value|flag|x=y|true|codeship|main|"+id+"\n",
		"map/mapped | map value|/custom:/bin\n")

	// --ci-build-id (the CI system's id) is the containers' CI_BUILD_ID; the build keeps
	// an id of its own for its objects and summary, which many jobs of one CI pipeline
	// (one id) do not share.
	r = runSteps(t, dir, "--tag", "main", "--ci-build-id", "pipeline-77")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "|true|codeship|main|pipeline-77\n")
	if own := buildID(t, r.stdout); own == "pipeline-77" || own == id {
		t.Errorf("build id %q: want a new one of crun-ci's own", own)
	}
}

func TestOutputKeepsTheLastLinesOfShortLivedContainers(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml": `
- name: burst
  service: app
  command: sh -c 'seq 1 5000; printf "no newline at the end"; echo to-stderr >&2'
`,
	})
	for i := 0; i < 3; i++ {
		r := runSteps(t, dir)
		wantCode(t, r, 0)
		if n := strings.Count(r.stdout, "burst/app | "); n != 5002 {
			t.Errorf("run %d: %d prefixed lines, want 5002", i, n)
		}
		wantContains(t, "stdout", r.stdout, "burst/app | 5000\n", "burst/app | no newline at the end\n", "burst/app | to-stderr\n")
	}
}

func TestMissingImageIsAPreconditionErrorNamingTheService(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		// A registry on loopback where nothing listens: crun-ci tries to pull, and fails.
		"codeship-services.yml": "app:\n  image: busybox\nother:\n  image: 127.0.0.1:1/nope:1\n",
		"codeship-steps.yml":    "- service: app\n  command: 'true'\n- service: other\n  command: 'true'\n",
	})
	r := runSteps(t, dir)
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `codeship-services.yml:3: service "other": pull image 127.0.0.1:1/nope:1: `, "connection refused")
	wantNotContains(t, "stderr", r.stderr, "level=info") // containerd's resolver chatter stays quiet
	wantNotContains(t, "stdout", r.stdout, "app_1/app")
}

func TestUserAndWorkingDirectoryAndEntrypoint(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
app:
  image: busybox
  user: nobody
  working_dir: /tmp
  entrypoint: ["sh", "-c"]
  command: ['echo "$(id -u):$(id -g) in $(pwd)"']
numeric:
  image: busybox
  user: "123:456"
  command: id
`,
		"codeship-steps.yml": "- service: app\n- service: numeric\n",
	})
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "app_1/app | 65534:65534 in /tmp\n", "numeric_1/numeric | uid=123 gid=456")
}

func TestValidateReportsEveryErrorWithoutContainerd(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  imgae: typo\n  volumes: ['./x:/y:zz']\n",
		"codeship-steps.yml":    "- service: nope\n  command: 'true'\n",
	})
	r := crunci(t, "validate", "--dir", dir)
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr,
		`codeship-services.yml:3: service "app": unknown key "imgae"`,
		`codeship-steps.yml:1:`, `"nope"`)
	// steps reports the same problems before touching containerd.
	s := crunci(t, "steps", "--dir", dir)
	wantCode(t, s, 2)
	if s.stderr != r.stderr {
		t.Errorf("steps and validate report differently:\nsteps:\n%s\nvalidate:\n%s", s.stderr, r.stderr)
	}
}

// A step can rewrite the build directory through a host volume. A later step's mount of
// a path that was checked before the build must not follow what the earlier step put
// there.
func TestASymlinkSwappedInAfterTheCheckIsNotMounted(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
writer:
  image: busybox
  volumes: ["./work:/work"]
reader:
  image: busybox
  volumes: ["./work/data:/data"]
`,
		"codeship-steps.yml": `
- name: swap
  service: writer
  command: sh -c 'rm -rf /work/data && ln -s /etc /work/data'
- name: read
  service: reader
  command: sh -c 'ls /data; cat /data/hostname'
`,
		"work/data/.gitkeep": "",
	})
	r := runSteps(t, dir)
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout,
		"PASSED      swap (writer)",
		"FAILED      read (reader)", "host path "+filepath.Join(dir, "work/data")+" changed since it was checked: a symlink is in it now")
	wantNotContains(t, "stdout", r.stdout, "read/reader | ")
	if target, err := os.Readlink(filepath.Join(dir, "work/data")); err != nil || target != "/etc" {
		t.Errorf("the swap did not happen as planned: %q, %v", target, err)
	}
}

// Flags jet's scripts pass: -e KEY takes crun-ci's own variable (as docker run -e),
// -T is accepted; load takes --no-remove.
func TestJetFlagsAreAccepted(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml":    "- {name: env, service: app, command: \"sh -c 'echo from=$FROM_HOST unset=${UNSET_HERE-none}'\"}\n",
	})
	r := runStepsEnv(t, dir, []string{"FROM_HOST=host value"}, "-T", "-e", "FROM_HOST", "-e", "UNSET_HERE")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "env/app | from=host value unset=none\n")
	wantCode(t, crunci(t, "load", "--dir", dir, "--no-remove"), 0)
	assertClean(t)
}

// A matrix group runs its steps once per listed service, the copies in parallel, and
// the groups nested in it keep their type; each copy sees its service's environment.
func TestAMatrixGroupRunsItsStepsPerService(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "old:\n  image: busybox\n  environment: {VERSION: \"1\"}\nnew:\n  image: busybox\n  environment: {VERSION: \"2\"}\n",
		"codeship-steps.yml": `
- name: versions
  type: matrix
  services: [old, new]
  steps:
    - name: setup
      command: sh -c 'echo setup $VERSION'
    - type: parallel
      steps:
        - {name: unit, command: "sh -c 'sleep 0.5; echo unit $VERSION'"}
        - {name: lint, command: "sh -c 'sleep 0.5; echo lint $VERSION'"}
`,
	})
	began := time.Now()
	r := runSteps(t, dir, "--max-parallel", "4")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "setup-old/old | setup 1\n", "setup-new/new | setup 2\n", "unit-old/old | unit 1\n", "unit-new/new | unit 2\n", "lint-old/old | lint 1\n", "lint-new/new | lint 2\n", "6 passed")
	// Copies in parallel and the nested group in parallel: about one sleep, not four.
	if took := time.Since(began); took > 6*time.Second {
		t.Errorf("took %s", took)
	}
}

// A step made ahead while the one before it runs still mounts what the build directory
// holds when its turn comes: the step before replaces a directory that it mounts, and it
// sees the new one.
func TestAStepMadeAheadSeesADirectoryTheStepBeforeReplaced(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "src:\n  image: busybox\n  volumes: [./:/src]\nuse:\n  image: busybox\n  volumes: [./data:/data]\n",
		"codeship-steps.yml": `
- {name: replace, service: src, command: "sh -c 'sleep 0.5; rm -rf /src/data; mkdir /src/data; echo new > /src/data/marker'"}
- {name: read, service: use, command: "cat /data/marker"}
- {name: again, service: use, command: "cat /data/marker"}
`,
		"data/marker": "old\n",
	})
	r := runSteps(t, dir, "--debug")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "read/use | new\n", "again/use | new\n")
	wantNotContains(t, "stdout", r.stdout, "| old")
	wantContains(t, "stderr", r.stderr, "made ahead: a host path changed; made again now")
}
