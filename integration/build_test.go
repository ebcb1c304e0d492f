package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/platforms"
	"github.com/klauspost/compress/zstd"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/crun-ci/crun-ci/dockerfile"
)

// imageConfig reads the config of an image in containerd's store.
func imageConfig(t *testing.T, name string) dockerspec.DockerOCIImage {
	t.Helper()
	ctx := context.Background()
	img, err := ctrd.Client.ImageService().Get(ctx, name)
	if err != nil {
		t.Fatalf("image %s: %v", name, err)
	}
	cs := ctrd.Client.ContentStore()
	m, err := images.Manifest(ctx, cs, img.Target, platforms.Default())
	if err != nil {
		t.Fatal(err)
	}
	blob, err := content.ReadBlob(ctx, cs, m.Config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(blob, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		t.Errorf("image %s: %d diff ids, %d layers", name, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	return cfg
}

// tarOf makes a tar archive of files (name to content), owned by 1234:1234, mode 0640.
func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o640, Size: int64(len(data)), Typeflag: tar.TypeReg, Uid: 1234, Gid: 1234}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// targz makes a gzip-compressed tar archive of files.
func targz(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	gz.Write(tarOf(t, files))
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// tarzst makes a zstd-compressed tar archive of files.
func tarzst(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(tarOf(t, files))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// tarxz makes a tar archive of files compressed by the xz command, which crun-ci needs to
// unpack it too (scripts/setup.sh installs it).
func tarxz(t *testing.T, files map[string]string) string {
	t.Helper()
	if _, err := exec.LookPath("xz"); err != nil {
		t.Fatal("no xz command (scripts/setup.sh installs it): crun-ci needs it for ADD of an xz archive")
	}
	cmd := exec.Command("xz", "-c")
	cmd.Stdin = bytes.NewReader(tarOf(t, files))
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// builtLine matches the line that ends an image build.
var builtLine = regexp.MustCompile(`built (\S+): (\d+) layers, (\d+) from the cache`)

// built returns the "N layers, M from the cache" figures of the builds in output.
func built(t *testing.T, out string) [][2]string {
	t.Helper()
	var got [][2]string
	for _, m := range builtLine.FindAllStringSubmatch(out, -1) {
		got = append(got, [2]string{m[2], m[3]})
	}
	return got
}

// Every instruction the builder supports, checked by running the result and by reading
// its config.
func TestBuildWithEveryInstruction(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
app:
  build:
    image: crunci/every:dev
    dockerfile: docker/Dockerfile.app
    args:
      FROM_SERVICES: "branch-{{ .Branch }}"
`,
		"codeship-steps.yml": `
- name: check
  service: app
  command: "'id -u; cat /app/a.txt /app/b.txt /opt/tool.txt /unpacked/inner/x.txt /added.txt /app/exec.txt /app/args.txt /tmp/uid.txt; echo $GREETING $VERSION_ENV; pwd; ls -ln /data; ls -ln /unpacked/inner; ls /app'"
`,
		"docker/Dockerfile.app": `# syntax is ignored
ARG BASE=busybox
FROM ${BASE} AS tools
RUN echo tool > /tool.txt

FROM $BASE
ARG BASE
ARG VERSION=1.0
ARG FROM_SERVICES
SHELL ["/bin/sh", "-c"]
ENV GREETING="hello world" VERSION_ENV=${VERSION}
LABEL org.example.version=$VERSION maintainer="crun-ci"
EXPOSE 8080 53/udp
WORKDIR /app
COPY *.txt ./
COPY --chown=nobody:nogroup data/ /data/
COPY --from=tools /tool.txt /opt/
ADD archive.tar.gz /unpacked/
ADD plain.txt /added.txt
RUN ["/bin/sh", "-c", "echo exec form > /app/exec.txt"]
RUN echo "$FROM_SERVICES $BASE $VERSION" > /app/args.txt
USER nobody
RUN id -u > /tmp/uid.txt
VOLUME /cache
HEALTHCHECK --interval=2s CMD test -f /app/exec.txt
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo default cmd"]
`,
		"a.txt":            "file a\n",
		"b.txt":            "file b\n",
		"secret.txt":       "ignored by .dockerignore\n",
		"plain.txt":        "added plainly\n",
		"data/one":         "1\n",
		"data/sub/two":     "2\n",
		".dockerignore":    "secret.txt\n**/*.tmp\n",
		"data/skip.tmp":    "ignored\n",
		"archive.tar.gz":   targz(t, map[string]string{"inner/x.txt": "from the archive\n"}),
		"codeship.unused/": "",
	})
	r := runSteps(t, dir, "--ci-branch", "main")
	wantCode(t, r, 0)
	// cat's complaint comes through the task's stderr, a pipe of its own: where it lands
	// among the stdout lines is up to the scheduler, so the stdout lines are checked
	// for their order without it.
	denied := "check/app | cat: can't open '/unpacked/inner/x.txt': Permission denied\n" // 1234's, mode 0640
	if n := strings.Count(r.stdout, denied); n != 1 {
		t.Errorf("stdout has %q %d times, want once", denied, n)
	}
	wantContains(t, "stdout without stderr's line", strings.Replace(r.stdout, denied, "", 1),
		"check/app build | step 1/25: FROM ${BASE} AS tools\n",
		"check/app | 65534\n", // USER nobody
		"check/app | file a\ncheck/app | file b\ncheck/app | tool\n", "check/app | added plainly\ncheck/app | exec form\n",
		"check/app | branch-main busybox 1.0\n", // build args with a template, meta ARG redeclared, default
		"check/app | 65534\n",
		"check/app | hello world 1.0\n",
		"check/app | /app\n",
	)
	// --chown by name; .dockerignore keeps secret.txt and *.tmp out.
	if !regexp.MustCompile(`check/app \| -rw-r--r-- +1 65534 +65534 +2 .* one\n`).MatchString(r.stdout) {
		t.Errorf("COPY --chown=nobody:nogroup: /data/one not owned by 65534:65534")
	}
	wantNotContains(t, "stdout", r.stdout, "secret.txt", "skip.tmp", "ignored")
	// Files unpacked from a local archive keep what the archive says of them, owners too.
	if !regexp.MustCompile(`check/app \| -rw-r----- +1 1234 +1234 +17 .* x.txt\n`).MatchString(r.stdout) {
		t.Errorf("ADD archive.tar.gz: /unpacked/inner/x.txt missing or with the wrong mode")
	}
	if got := built(t, r.stdout); len(got) != 1 || got[0] != [2]string{"9", "0"} {
		t.Errorf("build figures %v, want one build of 9 layers, none cached", got)
	}

	cfg := imageConfig(t, "docker.io/crunci/every:dev")
	c := cfg.Config
	if c.User != "nobody" || c.WorkingDir != "/app" || c.StopSignal != "SIGINT" {
		t.Errorf("user %q, workdir %q, stop signal %q", c.User, c.WorkingDir, c.StopSignal)
	}
	if strings.Join(c.Entrypoint, " ") != "/bin/sh -c" || strings.Join(c.Cmd, " ") != "echo default cmd" {
		t.Errorf("entrypoint %q, cmd %q", c.Entrypoint, c.Cmd)
	}
	if c.Labels["org.example.version"] != "1.0" || c.Labels["maintainer"] != "crun-ci" {
		t.Errorf("labels %v", c.Labels)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}
	if _, ok := c.ExposedPorts["53/udp"]; !ok {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}
	if _, ok := c.Volumes["/cache"]; !ok {
		t.Errorf("volumes %v", c.Volumes)
	}
	if c.Healthcheck == nil || strings.Join(c.Healthcheck.Test, " ") != "CMD-SHELL test -f /app/exec.txt" || c.Healthcheck.Interval.Seconds() != 2 {
		t.Errorf("healthcheck %+v", c.Healthcheck)
	}
	if strings.Join(c.Shell, " ") != "/bin/sh -c" {
		t.Errorf("shell %q", c.Shell)
	}
	if !hasEnv(c.Env, "GREETING=hello world") || hasEnv(c.Env, "FROM_SERVICES=branch-main") {
		t.Errorf("env %q: want ENV's values and no build argument", c.Env)
	}

	// The image's default command and its health check work as a dependency.
	dir2 := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: crunci/every:dev\ndep:\n  image: crunci/every:dev\n  command: \"'sleep 30'\"\nclient:\n  image: busybox\n  depends_on: [dep]\n",
		"codeship-steps.yml":    "- {name: default, service: app}\n- {name: waits, service: client, command: echo app is healthy}\n",
	})
	r = runSteps(t, dir2, "--stop-timeout", "1s")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "default/app | default cmd\n", "waits/client | app is healthy\n")
}

// ADD unpacks zstd and xz archives from the context as Docker does, told by content:
// one named .bin too, keeping the owners and modes they record.
func TestBuildAddsZstdAndXzArchives(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  build:\n    image: crunci/archives:dev\n",
		"codeship-steps.yml":    "- {name: check, service: app, command: \"sh -c 'cat /zst/inner/z.txt /xz/inner/x.txt /bin-named/y.txt; ls -ln /zst/inner /xz/inner; ls /zst /xz /bin-named'\"}\n",
		"Dockerfile":            "FROM busybox\nADD files.tar.zst /zst/\nADD files.tar.xz /xz/\nADD xz-archive.bin /bin-named/\n",
		"files.tar.zst":         tarzst(t, map[string]string{"inner/z.txt": "from the zstd archive\n"}),
		"files.tar.xz":          tarxz(t, map[string]string{"inner/x.txt": "from the xz archive\n"}),
		"xz-archive.bin":        tarxz(t, map[string]string{"y.txt": "from the archive named .bin\n"}),
	})
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout,
		"check/app | from the zstd archive\ncheck/app | from the xz archive\ncheck/app | from the archive named .bin\n")
	for _, name := range []string{"z.txt", "x.txt"} {
		if !regexp.MustCompile(`check/app \| -rw-r----- +1 1234 +1234 +\d+ .* ` + name + `\n`).MatchString(r.stdout) {
			t.Errorf("%s is missing or has not the archive's owner and mode", name)
		}
	}
	// Unpacked, not copied.
	wantNotContains(t, "stdout", r.stdout, "check/app | files.tar", "check/app | xz-archive.bin")
}

func hasEnv(env []string, kv string) bool {
	for _, e := range env {
		if e == kv {
			return true
		}
	}
	return false
}

// The seed's two build-time examples: COPY . from the build directory, and a Dockerfile
// that ADDs a file an earlier step wrote into a host volume: the image is built when the
// step that needs it starts, not before the build.
func TestImagesAreBuiltWhenAStepFirstNeedsThem(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
app:
  build: .
  volumes:
    - ./tmp/artifacts:/artifacts
deploy:
  build:
    dockerfile: Dockerfile.deploy
`,
		"codeship-steps.yml": `
- {name: compile, service: app, command: "sh -c 'cat /app/main.src > /artifacts/release.bin; echo compiled'"}
- type: parallel
  steps:
  - {name: ship-1, service: deploy, command: cat /release.bin}
  - {name: ship-2, service: deploy, command: cat /release.bin}
`,
		"Dockerfile":        "FROM busybox\nCOPY . /app\n",
		"Dockerfile.deploy": "FROM busybox\nADD tmp/artifacts/release.bin /release.bin\n",
		"main.src":          "the release\n",
		"tmp/artifacts/":    "",
	})
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "compile/app | compiled\n", "ship-1/deploy | the release\n", "ship-2/deploy | the release\n")
	// Built once although two parallel steps need it.
	if n := strings.Count(r.stdout, "deploy build | built "); n != 1 {
		t.Errorf("the deploy image was built %d times", n)
	}
	if i, j := strings.Index(r.stdout, "compile/app | compiled"), strings.Index(r.stdout, "deploy build | step 1/2"); i < 0 || j < i {
		t.Errorf("the deploy image was built before the step that writes its file ran")
	}
	wantContains(t, "stdout", r.stdout, "built docker.io/library/"+strings.ToLower(filepath.Base(dir))+"-deploy:latest")
}

// A second build reuses every layer; a changed file invalidates the layers from the
// instruction that copies it on; --no-cache builds everything.
func TestTheLayerCache(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  build:\n    image: crunci/cached:1\n",
		"codeship-steps.yml":    "- {name: show, service: app, command: cat /stamp /app/src.txt}\n",
		"Dockerfile":            "FROM busybox\nRUN echo first > /first\nCOPY src.txt /app/\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n",
		"src.txt":               "version 1\n",
	})
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	stamp := regexp.MustCompile(`show/app \| ([0-9a-f-]{36})\n`).FindStringSubmatch(r.stdout)
	if stamp == nil {
		t.Fatalf("no stamp in the output")
	}

	r = runSteps(t, dir)
	wantCode(t, r, 0)
	if got := built(t, r.stdout); len(got) != 1 || got[0] != [2]string{"3", "3"} {
		t.Errorf("second build %v, want every one of 3 layers from the cache", got)
	}
	wantContains(t, "stdout", r.stdout, "show/app | "+stamp[1]+"\n") // the RUN did not run again
	// A build that is all cache is one line.
	if n := strings.Count(r.stdout, "show/app build | "); n != 1 {
		t.Errorf("a build all from the cache printed %d lines, want 1:\n%s", n, r.stdout)
	}

	os.WriteFile(filepath.Join(dir, "src.txt"), []byte("version 2\n"), 0o644)
	r = runSteps(t, dir)
	wantCode(t, r, 0)
	if got := built(t, r.stdout); len(got) != 1 || got[0] != [2]string{"3", "1"} {
		t.Errorf("after a change %v, want 1 of 3 layers from the cache (the RUN before the COPY)", got)
	}
	wantContains(t, "stdout", r.stdout, "show/app | version 2\n")
	// One that is not shows every instruction, cached ones too.
	wantContains(t, "stdout", r.stdout, "show/app build | step 2/4: RUN echo first > /first\nshow/app build |   cached\n", "show/app build | step 3/4: COPY src.txt /app/\n")
	wantNotContains(t, "stdout", r.stdout, "show/app | "+stamp[1]+"\n")

	r = runSteps(t, dir, "--no-cache")
	wantCode(t, r, 0)
	if got := built(t, r.stdout); len(got) != 1 || got[0] != [2]string{"3", "0"} {
		t.Errorf("--no-cache %v, want no layer from the cache", got)
	}

	// The cache is bounded: with a bound of 1 byte, every entry goes once the build is
	// done, least recently used first, and the next build starts over.
	entries, err := dockerfile.Cache(context.Background(), ctrd.Client)
	if err != nil || len(entries) == 0 {
		t.Fatalf("cache entries %v, %v", entries, err)
	}
	r = runSteps(t, dir, "--cache-max-size", "1")
	wantCode(t, r, 0)
	entries, _ = dockerfile.Cache(context.Background(), ctrd.Client)
	for _, e := range entries {
		if e.Size > 0 {
			t.Errorf("cache entry %s (%d bytes) kept beyond the bound", e.Name, e.Size)
		}
	}
	r = runSteps(t, dir)
	if got := built(t, r.stdout); len(got) != 1 || got[0][1] != "0" {
		t.Errorf("after eviction %v, want nothing from the cache", got)
	}
	// crun-ci cleanup --layer-cache empties it (--dry-run only says so).
	entries, _ = dockerfile.Cache(context.Background(), ctrd.Client)
	if len(entries) == 0 {
		t.Fatal("no cache entries after a build")
	}
	r = crunci(t, "cleanup", "--layer-cache", "--dry-run")
	wantContains(t, "stdout", r.stdout, fmt.Sprintf("layer cache: would remove %d layers (", len(entries)))
	if again, _ := dockerfile.Cache(context.Background(), ctrd.Client); len(again) != len(entries) {
		t.Errorf("a dry run removed cache entries: %d left of %d", len(again), len(entries))
	}
	r = crunci(t, "cleanup", "--layer-cache")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, fmt.Sprintf("layer cache: removed %d layers (", len(entries)))
	if again, _ := dockerfile.Cache(context.Background(), ctrd.Client); len(again) != 0 {
		t.Errorf("%d cache entries left after cleanup --layer-cache", len(again))
	}
	assertClean(t) // and no layer that only the cache used is left

	r = crunci(t, "steps", "--dir", dir, "--cache-max-size", "lots")
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `--cache-max-size: size "lots": want a number of bytes`)
}

// What the builder does not do, or a RUN that fails, is an error naming the Dockerfile
// and line; the build leaves nothing behind.
func TestBuildErrorsNameTheDockerfileAndLine(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name, dockerfile, want string
		code                   int
	}{
		{"failing RUN", "FROM busybox\nRUN echo going\nRUN sh -c 'exit 3'\n", `Dockerfile:3: RUN sh -c 'exit 3': exit code 3`, 1},
		// Found when the pipeline is read: nothing runs.
		{"ONBUILD", "FROM busybox\nONBUILD RUN true\n", `codeship-services.yml:2: service "app": build: Dockerfile:2: ONBUILD is not supported`, 2},
		{"unknown instruction", "FROM busybox\nFETCH x\n", `codeship-services.yml:2: service "app": build: Dockerfile:2: unknown instruction: FETCH`, 2},
		{"missing source", "FROM busybox\nCOPY nothere.txt /\n", `Dockerfile:2: COPY nothere.txt /: "nothere.txt": not found in the build context`, 1},
		{"escaping source", "FROM busybox\nCOPY ../../etc/shadow /\n", `not found in the build context`, 1},
		{"missing base", "FROM 127.0.0.1:1/not-here:1\n", `Dockerfile:1: FROM 127.0.0.1:1/not-here:1: pull 127.0.0.1:1/not-here:1`, 1},
		{"remote URL", "FROM busybox\nADD http://127.0.0.1:1/file /\n", `Dockerfile:2: ADD http://127.0.0.1:1/file /: fetch "http://127.0.0.1:1/file"`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := project(t, map[string]string{
				"codeship-services.yml": "app:\n  build: .\n",
				"codeship-steps.yml":    "- {name: one, service: app, command: 'true'}\n",
				"Dockerfile":            tc.dockerfile,
			})
			r := runSteps(t, dir)
			wantCode(t, r, tc.code)
			if tc.code == 2 {
				wantContains(t, "stderr", r.stderr, tc.want)
				wantNotContains(t, "stdout", r.stdout, "one/app build |")
			} else {
				wantContains(t, "stdout", r.stdout, tc.want)
			}
		})
	}
	// A Dockerfile that is not there stops the build before anything runs.
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  build:\n    dockerfile: Dockerfile.nope\n",
		"codeship-steps.yml":    "- {name: one, service: app, command: 'true'}\n",
	})
	r := runSteps(t, dir)
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `codeship-services.yml:3: service "app": build: Dockerfile "Dockerfile.nope": no such file`)
}

// crun-ci load builds (and pulls) without running a step; a built image pushes and
// pulls back.
func TestLoadBuildsAndABuiltImageRoundTripsThroughARegistry(t *testing.T) {
	requireRoot(t)
	reg := newRegistry(t, "ci", "pw-build")
	cfg := dockerConfig(t, reg.host, "ci", "pw-build")
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  build:\n    image: " + reg.host + "/crunci/built\n",
		"codeship-steps.yml":    "- {type: push, name: publish, service: app, image_name: " + reg.host + "/crunci/built, image_tag: \"{{ .Branch }}\"}\n",
		"Dockerfile":            "FROM busybox\nRUN echo round trip > /marker\n",
	})
	t.Setenv("DOCKER_CONFIG", cfg)
	r := crunci(t, "load", "--dir", dir)
	assertClean(t)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "load/app build | step 2/2: RUN echo round trip > /marker\n", reg.host+"/crunci/built:latest\n")

	r = runSteps(t, dir, "--push", "--ci-branch", "feature/x")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "pushed "+reg.host+"/crunci/built:featurex")

	// Pulled back under another name by a service that uses it.
	ctx := context.Background()
	if err := ctrd.Client.ImageService().Delete(ctx, reg.host+"/crunci/built:featurex"); err != nil {
		t.Fatal(err)
	}
	dir2 := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: " + reg.host + "/crunci/built:featurex\n",
		"codeship-steps.yml":    "- {name: check, service: app, command: cat /marker}\n",
	})
	r = runSteps(t, dir2)
	wantCode(t, r, 0)
	wantContains(t, "stderr", r.stderr, "pulled "+reg.host+"/crunci/built:featurex")
	wantContains(t, "stdout", r.stdout, "check/app | round trip\n")
}

// Encrypted build arguments reach RUN, are masked in its output, and are in no spec, no
// file of the state directory and no cache key.
func TestEncryptedBuildArguments(t *testing.T) {
	requireRoot(t)
	const secret, inline = "bu1ld-t1me-S3CRET", "1nl1ne-S3CRET-arg"
	dir := project(t, map[string]string{
		"codeship-services.yml": `
app:
  build:
    image: crunci/secret-args:1
    args: {PLAIN: visible}
    encrypted_args_file: args.encrypted
`,
		"codeship-steps.yml": "- {name: one, service: app, command: \"sh -c 'cat /len; test -e /.crun-ci && echo hand-off left in the image || echo clean'\"}\n",
		"Dockerfile":         "FROM busybox\nARG PLAIN\nARG TOKEN\nARG INLINE\nRUN echo \"token=$TOKEN plain=$PLAIN inline=$INLINE\"; echo ${#TOKEN} > /len\n",
		"args.env":           "TOKEN=" + secret + "\n",
		"inline.env":         "INLINE=" + inline + "\n",
	})
	crunci(t, "generate", "--dir", dir)
	crunci(t, "encrypt", "--dir", dir, filepath.Join(dir, "args.env"), filepath.Join(dir, "args.encrypted"))
	crunci(t, "encrypt", "--dir", dir, filepath.Join(dir, "inline.env"), filepath.Join(dir, "inline.encrypted"))
	os.Remove(filepath.Join(dir, "args.env"))
	os.Remove(filepath.Join(dir, "inline.env"))
	enc, err := os.ReadFile(filepath.Join(dir, "inline.encrypted"))
	if err != nil {
		t.Fatal(err)
	}
	services, _ := os.ReadFile(filepath.Join(dir, "codeship-services.yml"))
	// The encrypted text (v2: a header line, then base64) as a YAML block in the list.
	entry := "    encrypted_args:\n      - |\n"
	for _, line := range strings.Split(strings.TrimSpace(string(enc)), "\n") {
		entry += "        " + line + "\n"
	}
	services = append(services, entry...)
	os.WriteFile(filepath.Join(dir, "codeship-services.yml"), services, 0o644)
	r := runSteps(t, dir, "--debug")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "one/app build | token=*** plain=visible inline=***\n", "one/app | 17\n", "one/app | clean\n")
	if strings.Contains(r.stdout+r.stderr, secret) || strings.Contains(r.stdout+r.stderr, inline) {
		t.Errorf("a secret is in the output")
	}
	filepath.Walk(stateDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && info.Size() < 64<<20 {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte(inline)) {
				t.Errorf("a secret is on disk in %s", p)
			}
		}
		return nil
	})
	cfg := imageConfig(t, "docker.io/crunci/secret-args:1")
	data, _ := json.Marshal(cfg)
	if bytes.Contains(data, []byte(secret)) {
		t.Errorf("the secret is in the image config")
	}
}

// A build killed, or interrupted, while a RUN of an image build runs leaves nothing that
// clean-up does not remove: the RUN's container and task, its active snapshot, the
// mounts and network of the image build. Interrupted, it says so and exits 130.
func TestAKilledOrInterruptedImageBuildIsCleanedUp(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  build: .\n",
		"codeship-steps.yml":    "- {name: one, service: app, command: 'true'}\n",
		"Dockerfile":            "FROM busybox\nCOPY Dockerfile /\nRUN echo building; sleep 30\n",
	})
	run := start(t, stateDir, "steps", "--dir", dir)
	run.waitFor("one/app build | building", 1)
	run.signal(syscall.SIGKILL)
	run.wait()
	r := crunci(t, "cleanup", "--dry-run")
	wantContains(t, "dry run", r.stdout, "1 containers (", "1 tasks (", "1 builds would be cleaned up")
	r = crunci(t, "cleanup")
	wantCode(t, r, 0)
	assertClean(t)

	run = start(t, stateDir, "steps", "--dir", dir, "--stop-timeout", "1s")
	run.waitFor("one/app build | building", 1)
	run.signal(syscall.SIGINT)
	r = run.wait()
	assertClean(t)
	wantCode(t, r, 130)
	wantContains(t, "stdout", r.stdout, "INTERRUPTED one (app)")
}

// A built service's dockercfg_service (or encrypted_dockercfg_path) pulls the base
// images of its Dockerfile from a registry that wants a login.
func TestABuiltServiceCredentialsPullItsBaseImage(t *testing.T) {
	requireRoot(t)
	reg := newRegistry(t, "builder", "pw-base-4711")
	ref := reg.push(t, "crunci/base:1", "builder", "pw-base-4711")
	t.Cleanup(func() { crunci(t, "cleanup") })
	dir := credProject(t, "app:\n  build: .\n  dockercfg_service: creds\n", reg.host, "builder", "pw-base-4711", "0", map[string]string{
		"codeship-steps.yml": "- {name: one, service: app, command: cat /pulled /built}\n",
		"Dockerfile":         "FROM " + ref + "\nRUN echo built on it > /built\n",
	})
	r := stepsWithoutCredentials(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "dockercfg/creds | writing /crun-ci-dockercfg/config.json\n", "one/app | from the registry\none/app | built on it\n")

	// Present now: the credential service does not run again.
	r = stepsWithoutCredentials(t, dir)
	wantCode(t, r, 0)
	wantNotContains(t, "stdout", r.stdout, "dockercfg/creds")

	// The wrong login: the registry's refusal names the Dockerfile's FROM.
	if err := ctrd.Client.ImageService().Delete(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	dir = credProject(t, "app:\n  build: .\n  dockercfg_service: creds\n", reg.host, "builder", "wrong", "0", map[string]string{
		"codeship-steps.yml": "- {name: one, service: app, command: cat /pulled}\n",
		"Dockerfile":         "FROM " + ref + "\n",
	})
	r = stepsWithoutCredentials(t, dir)
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout, "Dockerfile:1: FROM "+ref+": pull "+ref+": access denied by the registry")
}

// Two builds at once of checkouts with the same directory name (two branches of one
// repository on a CI host) build images of the same name; each runs its own.
func TestConcurrentBuildsOfTwoCheckoutsRunTheirOwnImages(t *testing.T) {
	requireRoot(t)
	var dirs []string
	for _, branch := range []string{"main", "feature"} {
		parent := t.TempDir()
		dir := filepath.Join(parent, "repo")
		for name, content := range map[string]string{
			"codeship-services.yml": "app:\n  build: .\n",
			"codeship-steps.yml":    "- {name: show, service: app, command: cat /marker}\n",
			"Dockerfile":            "FROM busybox\nRUN sleep 1\nCOPY marker /marker\n",
			"marker":                "built from " + branch + "\n",
		} {
			os.MkdirAll(dir, 0o755)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		dirs = append(dirs, dir)
	}
	a := start(t, stateDir, "steps", "--dir", dirs[0])
	b := start(t, stateDir, "steps", "--dir", dirs[1])
	ra, rb := a.wait(), b.wait()
	assertClean(t)
	wantCode(t, ra, 0)
	wantCode(t, rb, 0)
	wantContains(t, "stdout", ra.stdout, "show/app | built from main\n")
	wantContains(t, "stdout", rb.stdout, "show/app | built from feature\n")
}

// A service whose image is another service's build.image uses the image that build
// makes, built once, in step order, and is never pulled (no registry holds it).
func TestAServiceUsesTheImageAnotherBuilds(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
builder:
  build:
    image: crunci-test/shared:1
    dockerfile: Dockerfile
runner:
  image: crunci-test/shared:1
  command: cat /made
`,
		"codeship-steps.yml": "- {name: first, service: runner}\n- {name: second, service: builder, command: cat /made}\n",
		"Dockerfile":         "FROM busybox\nRUN echo made by the build > /made\n",
	})
	r := runSteps(t, dir, "--no-cache")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "first/builder build | built docker.io/crunci-test/shared:1", "first/runner | made by the build\n", "second/builder | made by the build\n")
	if n := strings.Count(r.stdout, "| built docker.io/crunci-test/shared:1"); n != 1 {
		t.Errorf("built %d times, want once", n)
	}
	wantNotContains(t, "stderr", r.stderr, "pull")
}

// The forms of Codeship's own pages: build.name (services-and-databases) names the built
// image, which another service uses by that name; image with a dockerfile and no build
// (the deployment-container example) is the image, as under jet, with a notice.
func TestCodeshipsBuildForms(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
ruby:
  image: crunci/named-by-build-name
  depends_on: [elasticsearch]
elasticsearch:
  build:
    name: crunci/named-by-build-name
    dockerfile: Dockerfile.elasticsearch
app1:
  image: busybox
  dockerfile: Dockerfile.app1
`,
		"Dockerfile.elasticsearch": "FROM busybox\nRUN echo customised > /marker\n",
		"codeship-steps.yml": `
- {name: named, service: ruby, command: cat /marker}
- {name: app1, service: app1, command: echo from the image}
`,
	})
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "named/ruby | customised\n", "app1/app1 | from the image\n")
	wantContains(t, "stderr", r.stderr, `codeship-services.yml:11: service "app1": key "dockerfile" ignored: without "build" nothing is built; the service's image is used, as under jet`)
}
