package integration

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	ggcrremote "github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/crun-ci/crun-ci/ociarchive"
)

// testRegistry is an in-process registry on 127.0.0.1 that wants a user and password.
type testRegistry struct {
	host     string
	requests atomic.Int64
	// slow, when set, sends blobs at about 512 KiB/s.
	slow atomic.Bool
}

// slowWriter writes what it is given 16 KiB at a time, 30 ms apart.
type slowWriter struct{ http.ResponseWriter }

func (s slowWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := min(len(p), 16<<10)
		m, err := s.ResponseWriter.Write(p[:chunk])
		n += m
		if err != nil {
			return n, err
		}
		if f, ok := s.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		time.Sleep(30 * time.Millisecond)
		p = p[chunk:]
	}
	return n, nil
}

// newRegistry starts a registry that wants user and password; with user "", one that
// anyone may use.
func newRegistry(t *testing.T, user, password string) *testRegistry {
	r := &testRegistry{}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		u, p, ok := req.BasicAuth()
		if user != "" && (!ok || u != user || p != password) {
			w.Header().Set("WWW-Authenticate", `Basic realm="crun-ci test"`)
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		if r.slow.Load() && req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") {
			w = slowWriter{w}
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// push puts the busybox image, with a marker file, into the registry as repo:tag.
func (r *testRegistry) push(t *testing.T, repo, user, password string, extra ...ociarchive.File) string {
	t.Helper()
	files, err := ociarchive.Busybox(ociarchive.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, ociarchive.File{Path: "/pulled", Mode: 0o644, Data: []byte("from the registry\n")})
	files = append(files, extra...)
	archive := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := ociarchive.WriteDockerSave(f, ociarchive.Image{Name: "docker.io/" + repo, Config: ociarchive.BusyboxConfig(), Files: files}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := r.host + "/" + repo
	parsed, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := ggcrremote.Write(parsed, img, ggcrremote.WithAuth(&authn.Basic{Username: user, Password: password})); err != nil {
		t.Fatal(err)
	}
	return ref
}

// importBusybox imports the busybox test image under name, and returns name.
func importBusybox(t *testing.T, name string) string {
	t.Helper()
	files, err := ociarchive.Busybox(ociarchive.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "local.tar")
	if err := ociarchive.WriteFile(archive, ociarchive.Image{Name: name, Config: ociarchive.BusyboxConfig(), Files: files}); err != nil {
		t.Fatal(err)
	}
	if r := crunci(t, "import", archive); r.code != 0 {
		t.Fatalf("import: exit %d", r.code)
	}
	return name
}

// dockerConfig writes a Docker config.json with a login for host and returns its
// directory.
func dockerConfig(t *testing.T, host, user, password string) string {
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	cfg := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, host, auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMissingImagesArePulledWithCredentials(t *testing.T) {
	requireRoot(t)
	reg := newRegistry(t, "ci", "s3cret")
	ref := reg.push(t, "crunci/pulled:1", "ci", "s3cret")
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: " + ref + "\nmissing:\n  image: " + reg.host + "/crunci/absent:1\n",
		"codeship-steps.yml":    "- {name: uses-pulled, service: app, command: cat /pulled}\n",
		"other-steps.yml":       "- {service: missing, command: 'true'}\n",
	})
	steps := func(config string, args ...string) result {
		t.Helper()
		return runStepsEnv(t, dir, []string{"DOCKER_CONFIG=" + config}, args...)
	}
	t.Cleanup(func() { crunci(t, "cleanup") })

	// Wrong credentials: the registry's refusal, with the service and the image.
	r := steps(dockerConfig(t, reg.host, "ci", "wrong"))
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `codeship-services.yml:1: service "app": pull image `+ref+`: access denied by the registry`)

	// Right credentials: pulled, unpacked, run.
	good := dockerConfig(t, reg.host, "ci", "s3cret")
	r = steps(good)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "uses-pulled/app | from the registry\n")
	wantContains(t, "stderr", r.stderr, "pulled "+ref+" (")

	// Present now: not pulled again, unless asked.
	before := reg.requests.Load()
	r = steps(good)
	wantCode(t, r, 0)
	if n := reg.requests.Load() - before; n != 0 {
		t.Errorf("a present image was pulled again (%d requests)", n)
	}
	r = steps(good, "--pull-if-present")
	wantCode(t, r, 0)
	if n := reg.requests.Load() - before; n == 0 {
		t.Errorf("--pull-if-present did not pull")
	}

	// crun-ci load pulls without running anything; it names what it could not get.
	load := exec.Command(bin, "--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", stateDir, "load", "--dir", dir, "--pull-if-present", "app")
	load.Env = append(os.Environ(), "DOCKER_CONFIG="+good)
	out, err := load.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pulled "+ref) || !strings.HasSuffix(string(out), ref+"\n") {
		t.Errorf("crun-ci load app: %v\n%s", err, out)
	}
	load = exec.Command(bin, "--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", stateDir, "load", "--dir", dir, "missing")
	load.Env = append(os.Environ(), "DOCKER_CONFIG="+good)
	out, _ = load.CombinedOutput()
	if load.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), `crun-ci: codeship-services.yml:3: service "missing": pull image `+reg.host+`/crunci/absent:1: not found in the registry`) {
		t.Errorf("crun-ci load missing: exit %d\n%s", load.ProcessState.ExitCode(), out)
	}

	// Not in the registry.
	r = steps(good, "--steps-path", "other-steps.yml")
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `service "missing": pull image `+reg.host+`/crunci/absent:1: not found in the registry`)
}

// A service's encrypted_dockercfg_path holds the credentials of its image's registry,
// decrypted in memory.
func TestAnEncryptedDockercfgPullsTheServiceImage(t *testing.T) {
	requireRoot(t)
	reg := newRegistry(t, "deploy", "pw-4711")
	ref := reg.push(t, "crunci/private:1", "deploy", "pw-4711")
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: " + ref + "\n  encrypted_dockercfg_path: dockercfg.encrypted\n",
		"codeship-steps.yml":    "- {name: private, service: app, command: cat /pulled}\n",
	})
	cfg := dockerConfig(t, reg.host, "deploy", "pw-4711")
	crunci(t, "generate", "--dir", dir)
	if r := crunci(t, "encrypt", "--dir", dir, filepath.Join(cfg, "config.json"), filepath.Join(dir, "dockercfg.encrypted")); r.code != 0 {
		t.Fatalf("encrypt: exit %d", r.code)
	}
	// No credentials of the host's: an empty Docker config directory.
	cmd := exec.Command(bin, "--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", stateDir, "steps", "--dir", dir)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	out, err := cmd.CombinedOutput()
	t.Logf("crun-ci steps: %v\n%s", err, out)
	if err != nil || !strings.Contains(string(out), "private/app | from the registry\n") {
		t.Errorf("the image was not pulled with the encrypted credentials")
	}
	if strings.Contains(string(out), "pw-4711") {
		t.Errorf("the password is in crun-ci's output")
	}
	assertClean(t)
}

// Push steps run with --push: the service's image goes to its registry under the
// expanded image_tag.
func TestPushStepsPushTheServiceImage(t *testing.T) {
	requireRoot(t)
	reg := newRegistry(t, "ci", "pw")
	local := importBusybox(t, reg.host+"/crunci/pushed:local")
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: " + local + "\n",
		"codeship-steps.yml":    "- {service: app, command: 'true'}\n- {name: publish, type: push, service: app, image_name: " + reg.host + "/crunci/pushed, image_tag: \"{{ .Branch }}-{{ .ServiceName }}\"}\n",
	})
	steps := func(args ...string) result {
		t.Helper()
		return runStepsEnv(t, dir, []string{"DOCKER_CONFIG=" + dockerConfig(t, reg.host, "ci", "pw")}, args...)
	}
	target := reg.host + "/crunci/pushed:main-app"
	r := steps("--tag", "main")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "SKIPPED     publish (app): push steps run with --push")

	r = steps("--tag", "main", "--push")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "PASSED      publish (app)", "pushed "+target)
	parsed, err := name.ParseReference(target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ggcrremote.Head(parsed, ggcrremote.WithAuth(&authn.Basic{Username: "ci", Password: "pw"})); err != nil {
		t.Errorf("%s is not in the registry: %v", target, err)
	}
}

// On a terminal, a pull shows a line per layer, redrawn in place with bytes and rate,
// then the layer's final line and the pull's.
func TestPullProgressOnATerminal(t *testing.T) {
	requireRoot(t)
	reg := newRegistry(t, "tty", "pw-tty")
	// A layer of its own (random bytes do not compress), which no earlier test fetched.
	noise := make([]byte, 256<<10)
	rand.Read(noise)
	ref := reg.push(t, "crunci/slow:1", "tty", "pw-tty", ociarchive.File{Path: "/noise", Mode: 0o644, Data: noise})
	reg.slow.Store(true)
	dir := project(t, map[string]string{"codeship-services.yml": "app:\n  image: " + ref + "\n"})
	cmdline := strings.Join([]string{bin, "--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", stateDir, "load", "--dir", dir}, " ")
	// script gives crun-ci a terminal and copies what it writes there.
	cmd := exec.Command("script", "-qefc", cmdline, "/dev/null")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dockerConfig(t, reg.host, "tty", "pw-tty"), "TERM=xterm")
	out, err := cmd.CombinedOutput()
	t.Logf("on the terminal:\n%q", out)
	assertClean(t)
	if err != nil {
		t.Fatalf("crun-ci load: %v", err)
	}
	got := string(out)
	if !regexp.MustCompile(`layer [0-9a-f]{12} [0-9.]+ (B|KiB|MiB) of [0-9.]+ (KiB|MiB), [0-9.]+ (B|KiB|MiB)/s\r?\n`).MatchString(got) {
		t.Errorf("no line with a layer's bytes and rate")
	}
	if !strings.Contains(got, "\x1b[J") {
		t.Errorf("the lines are not redrawn in place")
	}
	if !regexp.MustCompile(`layer [0-9a-f]{12} done \([0-9.]+ (KiB|MiB)\)`).MatchString(got) || !strings.Contains(got, "pulled "+ref+" (") {
		t.Errorf("no final line for the layer or the pull")
	}
}

// A registry that wants no login is pulled from without credentials, for a service and
// for a Dockerfile's base image.
func TestAnonymousPulls(t *testing.T) {
	requireRoot(t)
	reg := newRegistry(t, "", "")
	ref := reg.push(t, "crunci/public:1", "", "")
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: " + ref + "\nbuilt:\n  build: .\n",
		"codeship-steps.yml":    "- {name: pulled, service: app, command: cat /pulled}\n- {name: built, service: built, command: cat /pulled}\n",
		"Dockerfile":            "FROM " + ref + "\n",
	})
	cmd := exec.Command(bin, "--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", stateDir, "steps", "--dir", dir, "--pull-if-present")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir()) // no credentials at all
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	assertClean(t)
	if err != nil {
		t.Fatalf("crun-ci steps: %v", err)
	}
	for _, want := range []string{"pulled/app | from the registry\n", "built/built | from the registry\n", "pulled " + ref + " ("} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in the output", want)
		}
	}
}
