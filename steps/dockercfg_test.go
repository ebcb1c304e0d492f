package steps

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/pod"
	"github.com/crun-ci/crun-ci/remote"
	"github.com/crun-ci/crun-ci/secrets"
	"github.com/crun-ci/crun-ci/task"
)

// credFake is a fake whose credential containers (those with a mount at dockercfgDir)
// do what write says to the mounted directory, then exit with code.
type credFake struct {
	*fake
	write func(dir string) error
	code  uint32
}

func (f *credFake) Create(ctx context.Context, o task.Options) (pod.Task, error) {
	c, err := f.fake.Create(ctx, o)
	if err != nil {
		return nil, err
	}
	for _, m := range o.Spec.Mounts {
		if m.Destination == dockercfgDir {
			if !slices.Contains(m.Options, "rw") {
				return nil, errors.New("the credential directory is not mounted read-write")
			}
			return &credContainer{Task: c, f: f, dir: m.Source}, nil
		}
	}
	return c, nil
}

type credContainer struct {
	pod.Task
	f   *credFake
	dir string
}

func (c *credContainer) Wait(ctx context.Context) (uint32, error) {
	if _, err := c.Task.Wait(ctx); err != nil {
		return 0, err
	}
	if c.f.write != nil {
		if err := c.f.write(c.dir); err != nil {
			return 0, err
		}
	}
	return c.f.code, nil
}

// writes returns a credFake write function that writes data as the Docker config.
func writes(data string) func(string) error {
	return func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "config.json"), []byte(data), 0o600)
	}
}

func authFile(host, user, password string) string {
	return `{"auths": {"` + host + `": {"auth": "` + base64.StdEncoding.EncodeToString([]byte(user+":"+password)) + `"}}}`
}

// puller is an Options.Pull that records the credentials of each pull and makes the
// image present.
type puller struct {
	f     *fake
	mu    sync.Mutex
	creds map[string]remote.Credentials
}

func (p *puller) pull(_ context.Context, ref string, creds remote.Credentials) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.creds == nil {
		p.creds = map[string]remote.Credentials{}
	}
	p.creds[ref] = creds
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	p.f.images[strings.TrimPrefix(ref, "docker.io/library/")] = &task.Image{Name: ref}
	return nil
}

const credServices = `
app:
  image: registry.example.com/team/app:1
  dockercfg_service: creds
creds:
  image: busybox
  command: echo writing
`

func TestADockercfgServiceWritesTheCredentialsOfTheServiceImage(t *testing.T) {
	f := &credFake{fake: newFake(t), write: writes(authFile("registry.example.com", "ci", "pw"))}
	p := &puller{f: f.fake}
	sum, out, err := runCred(t, f, load(t, credServices, "- {name: use, service: app, command: echo used}\n"), Options{Pull: p.pull})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]outcome{{"use", Passed, 0}}, outcomes(sum)); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	want := map[string]remote.Credentials{"registry.example.com/team/app:1": {"registry.example.com": {Username: "ci", Password: "pw"}}}
	if diff := cmp.Diff(want, p.creds); diff != "" {
		t.Errorf("pulls (-want +got):\n%s", diff)
	}
	if !slices.Contains(f.started, "echo writing "+dockercfgPath) {
		t.Errorf("the credential service was not run with the path as its last argument: %q", f.started)
	}
	if !strings.Contains(out, "dockercfg/creds | writing "+dockercfgPath+"\n") {
		t.Errorf("output:\n%s", out)
	}

	// Present now: the image is not pulled again, and no credentials are needed.
	f.started, p.creds = nil, nil
	if _, _, err := runCred(t, f, load(t, credServices, "- {name: use, service: app, command: echo used}\n"), Options{Pull: p.pull}); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(f.started, "echo writing "+dockercfgPath) || p.creds != nil {
		t.Errorf("the credential service ran for a present image: %q, pulls %v", f.started, p.creds)
	}
	// Unless PullIfPresent asks.
	if _, _, err := runCred(t, f, load(t, credServices, "- {name: use, service: app, command: echo used}\n"), Options{Pull: p.pull, PullIfPresent: true}); err != nil {
		t.Fatal(err)
	}
	if got := p.creds["registry.example.com/team/app:1"]; !cmp.Equal(want["registry.example.com/team/app:1"], got) {
		t.Errorf("pulled with PullIfPresent with %v", got)
	}
}

// A run step's dockercfg_service is for the images the step pulls: its service's and
// those of the services it needs, not those of other steps.
func TestARunStepsDockercfgServiceLogsInItsPulls(t *testing.T) {
	const services = `
app:
  image: registry.example.com/team/app:1
  depends_on: [db]
db:
  image: registry.example.com/team/db:1
solo:
  image: registry.example.com/team/solo:1
creds:
  image: busybox
  command: echo writing
`
	f := &credFake{fake: newFake(t), write: writes(authFile("registry.example.com", "ci", "pw"))}
	p := &puller{f: f.fake}
	steps := "- {name: use, service: app, command: echo used, dockercfg_service: creds}\n- {name: other, service: solo, command: echo used}\n"
	sum, _, err := runCred(t, f, load(t, services, steps), Options{Pull: p.pull})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]outcome{{"use", Passed, 0}, {"other", Passed, 0}}, outcomes(sum)); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	login := remote.Credentials{"registry.example.com": {Username: "ci", Password: "pw"}}
	want := map[string]remote.Credentials{
		"registry.example.com/team/app:1":  login,
		"registry.example.com/team/db:1":   login,
		"registry.example.com/team/solo:1": nil,
	}
	if diff := cmp.Diff(want, p.creds); diff != "" {
		t.Errorf("pulls (-want +got):\n%s", diff)
	}
	if n := strings.Count(strings.Join(f.started, "\n"), "echo writing "+dockercfgPath); n != 1 {
		t.Errorf("the credential service ran %d times, want once: %q", n, f.started)
	}
}

// --dockercfg-service is a credential service for every pull of the build but its own.
func TestTheDockercfgServiceOptionLogsInEveryPull(t *testing.T) {
	const services = `
app:
  image: registry.example.com/team/app:1
creds:
  image: registry.example.com/team/creds:1
  command: echo writing
`
	f := &credFake{fake: newFake(t), write: writes(authFile("registry.example.com", "ci", "pw"))}
	p := &puller{f: f.fake}
	sum, _, err := runCred(t, f, load(t, services, "- {name: use, service: app, command: echo used}\n"), Options{Pull: p.pull, DockercfgService: "creds"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]outcome{{"use", Passed, 0}}, outcomes(sum)); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	want := map[string]remote.Credentials{
		"registry.example.com/team/app:1":   {"registry.example.com": {Username: "ci", Password: "pw"}},
		"registry.example.com/team/creds:1": nil, // its own image, pulled before it runs
	}
	if diff := cmp.Diff(want, p.creds); diff != "" {
		t.Errorf("pulls (-want +got):\n%s", diff)
	}

	_, _, err = runCred(t, f, load(t, services, "- {name: use, service: app, command: echo used}\n"), Options{Pull: p.pull, DockercfgService: "nope", PullIfPresent: true})
	if err == nil || !strings.Contains(err.Error(), `--dockercfg-service "nope": no such service in `) {
		t.Errorf("an unknown service: %v", err)
	}
}

func TestADockercfgServiceThatFailsStopsTheBuildBeforeItStarts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(string) error
		code  uint32
		want  string
	}{
		{"it exits non-zero", writes(authFile("registry.example.com", "ci", "pw")), 3, `codeship-services.yml:4: service "app": dockercfg_service "creds": exited with code 3`},
		{"it writes nothing", nil, 0, `codeship-services.yml:4: service "app": dockercfg_service "creds": wrote no /crun-ci-dockercfg/config.json`},
		{"it writes no JSON", writes("user:password"), 0, `codeship-services.yml:4: service "app": dockercfg_service "creds": read registry credentials /crun-ci-dockercfg/config.json: invalid character`},
		{"it writes a link to a host file", func(dir string) error {
			return os.Symlink("/etc/hostname", filepath.Join(dir, "config.json"))
		}, 0, `codeship-services.yml:4: service "app": dockercfg_service "creds": /crun-ci-dockercfg/config.json is a symlink leaving /crun-ci-dockercfg`},
		{"it writes a directory", func(dir string) error {
			return os.Mkdir(filepath.Join(dir, "config.json"), 0o755)
		}, 0, `codeship-services.yml:4: service "app": dockercfg_service "creds": /crun-ci-dockercfg/config.json is a directory, not a regular file`},
		{"it writes a FIFO", func(dir string) error {
			return unix.Mkfifo(filepath.Join(dir, "config.json"), 0o600)
		}, 0, `codeship-services.yml:4: service "app": dockercfg_service "creds": /crun-ci-dockercfg/config.json is a named pipe, not a regular file`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &credFake{fake: newFake(t), write: tc.write, code: tc.code}
			p := &puller{f: f.fake}
			sum, _, err := runCred(t, f, load(t, credServices, "- {name: use, service: app, command: echo used}\n"), Options{Pull: p.pull})
			var pe *PreconditionError
			if !errors.As(err, &pe) || sum != nil {
				t.Fatalf("Run: %v, %v; want a *PreconditionError", sum, err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error:\n%s\nwant one line starting with\n%s", err, tc.want)
			}
			if p.creds != nil {
				t.Errorf("pulled anyway: %v", p.creds)
			}
		})
	}
}

func TestPushStepsPushWithTheirOwnCredentials(t *testing.T) {
	key, err := secrets.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	f := &credFake{fake: newFake(t), write: writes(authFile("registry.example.com", "from-service", "pw1"))}
	f.images["registry.example.com/team/app:dev"] = &task.Image{Name: "registry.example.com/team/app:dev"}
	p := load(t, `
app:
  image: registry.example.com/team/app:dev
creds:
  image: busybox
  command: gen
`, `
- {name: with-file, type: push, service: app, image_name: registry.example.com/team/app, encrypted_dockercfg_path: dockercfg.encrypted}
- {name: with-service, type: push, service: app, image_name: registry.example.com/team/app, dockercfg_service: creds}
- {name: without, type: push, service: app, image_name: registry.example.com/team/app}
`)
	encrypted, err := secrets.Encrypt(key, []byte(`{"registry.example.com": {"username": "from-file", "password": "pw2"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.Dir, "dockercfg.encrypted"), encrypted, 0o644); err != nil {
		t.Fatal(err)
	}
	var pushed []remote.Credentials
	push := func(_ context.Context, _, _ string, creds remote.Credentials) error {
		pushed = append(pushed, creds)
		return nil
	}
	sum, _, err := runCred(t, f, p, Options{Push: push, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]outcome{{"with-file", Passed, 0}, {"with-service", Passed, 0}, {"without", Passed, 0}}, outcomes(sum)); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	want := []remote.Credentials{
		{"registry.example.com": {Username: "from-file", Password: "pw2"}},
		{"registry.example.com": {Username: "from-service", Password: "pw1"}},
		nil,
	}
	if diff := cmp.Diff(want, pushed); diff != "" {
		t.Errorf("credentials of the pushes (-want +got):\n%s", diff)
	}

	// A credential service that fails fails its step.
	f.code = 3
	pushed = nil
	sum, _, err = runCred(t, f, p, Options{Push: push, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	if r := sum.Results[1]; r.Status != Failed || r.Err == nil || r.Err.Error() != `push: dockercfg_service "creds": exited with code 3` {
		t.Errorf("with-service: %+v", r)
	}

	// Without the key, nothing starts; the error names the file.
	pushed = nil
	_, _, err = runCred(t, f, p, Options{Push: push, KeySource: "no key file"})
	if err == nil || !strings.Contains(err.Error(), `codeship-steps.yml:2: step "with-file": dockercfg.encrypted needs the key, which is not there (no key file)`) {
		t.Errorf("without a key: %v", err)
	}
	if len(pushed) != 0 {
		t.Errorf("pushed without a key")
	}
}

// runCred is run for a credFake: Run, then a check that nothing of the build is left.
func runCred(t *testing.T, f *credFake, p *config.Project, o Options) (*Summary, string, error) {
	t.Helper()
	var out bytes.Buffer
	o.Project, o.Namespace, o.StateDir, o.Output = p, "test", t.TempDir(), &out
	sum, err := Run(context.Background(), f, o)
	if len(f.live) != 0 {
		t.Errorf("containers left: %v", f.live)
	}
	if f.leases != 0 {
		t.Errorf("%d leases left", f.leases)
	}
	if builds, _ := os.ReadDir(filepath.Join(o.StateDir, "builds")); len(builds) != 0 {
		t.Errorf("build directories left: %v", builds)
	}
	return sum, out.String(), err
}
