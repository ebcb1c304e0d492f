package integration

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrremote "github.com/google/go-containerregistry/pkg/v1/remote"
)

// credService is a credential service (dockercfg_service) that writes a login for $HOST
// from its encrypted variable AUTH to the path it is given as its last argument ($0 of
// sh -c), then exits with $CODE.
const credService = `
creds:
  image: busybox
  environment: {HOST: %HOST%, CODE: "%CODE%"}
  encrypted_env_file: creds.env.encrypted
  command:
    - sh
    - -c
    - 'echo writing $0; mkdir -p $(dirname $0) && printf "{\"auths\":{\"%s\":{\"auth\":\"%s\"}}}" "$HOST" "$AUTH" > "$0"; exit $CODE'
`

// credProject writes a build directory whose services file is services followed by
// credService, with a key and AUTH encrypted for user and password.
func credProject(t *testing.T, services, host, user, password string, code string, files map[string]string) string {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	all := map[string]string{
		"codeship-services.yml": services + strings.NewReplacer("%HOST%", host, "%CODE%", code).Replace(credService),
		"creds.env":             "AUTH=" + auth + "\n",
	}
	for k, v := range files {
		all[k] = v
	}
	dir := project(t, all)
	if r := crunci(t, "generate", "--dir", dir); r.code != 0 {
		t.Fatalf("generate: exit %d", r.code)
	}
	if r := crunci(t, "encrypt", "--dir", dir, filepath.Join(dir, "creds.env"), filepath.Join(dir, "creds.env.encrypted")); r.code != 0 {
		t.Fatalf("encrypt: exit %d", r.code)
	}
	os.Remove(filepath.Join(dir, "creds.env"))
	return dir
}

// stepsWithoutCredentials runs `crun-ci steps` in dir with an empty Docker config, so
// that only the pipeline's own credentials reach the registry, and checks that the build
// left nothing behind.
func stepsWithoutCredentials(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return runStepsEnv(t, dir, []string{"DOCKER_CONFIG=" + t.TempDir()}, args...)
}

// A service's dockercfg_service runs before its image is pulled; what it writes is the
// login for the pull.
func TestDockercfgServiceCredentialsPullTheServiceImage(t *testing.T) {
	requireRoot(t)
	reg := newRegistry(t, "deploy", "pw-0815-secret")
	ref := reg.push(t, "crunci/from-service:1", "deploy", "pw-0815-secret")
	t.Cleanup(func() { crunci(t, "cleanup") })
	services := "app:\n  image: " + ref + "\n  dockercfg_service: creds\n"
	steps := map[string]string{"codeship-steps.yml": "- {name: private, service: app, command: cat /pulled}\n"}

	// A wrong password: the registry's refusal, naming the service and the image.
	dir := credProject(t, services, reg.host, "deploy", "wrong", "0", steps)
	r := stepsWithoutCredentials(t, dir)
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `codeship-services.yml:3: service "app": pull image `+ref+` with the credentials of dockercfg_service "creds": access denied by the registry`)
	wantContains(t, "stdout", r.stdout, "dockercfg/creds | writing /crun-ci-dockercfg/config.json\n")

	// A credential service that fails: one line naming both services, and no pull.
	dir = credProject(t, services, reg.host, "deploy", "pw-0815-secret", "1", steps)
	before := reg.requests.Load()
	r = stepsWithoutCredentials(t, dir)
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `codeship-services.yml:3: service "app": dockercfg_service "creds": exited with code 1`+"\n")
	if n := reg.requests.Load() - before; n != 0 {
		t.Errorf("%d requests to the registry without credentials", n)
	}

	// The right password: pulled and run; the password is nowhere in the output.
	dir = credProject(t, services, reg.host, "deploy", "pw-0815-secret", "0", steps)
	r = stepsWithoutCredentials(t, dir, "--debug")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "dockercfg/creds | writing /crun-ci-dockercfg/config.json\n", "private/app | from the registry\n")
	auth := base64.StdEncoding.EncodeToString([]byte("deploy:pw-0815-secret"))
	wantNotContains(t, "output", r.stdout+r.stderr, "pw-0815-secret", auth)

	// Present now: no credentials needed, the credential service does not run.
	r = stepsWithoutCredentials(t, dir)
	wantCode(t, r, 0)
	wantNotContains(t, "stdout", r.stdout, "dockercfg/creds |")
}

// Push steps push with their own credentials: encrypted_dockercfg_path or
// dockercfg_service, without any of the host's.
func TestPushStepsPushWithTheirOwnCredentials(t *testing.T) {
	requireRoot(t)
	reg := newRegistry(t, "pusher", "pw-4242-secret")
	local := importBusybox(t, reg.host+"/crunci/pushed-own:local")
	t.Cleanup(func() { crunci(t, "cleanup") })
	dir := credProject(t, "app:\n  image: "+local+"\n", reg.host, "pusher", "pw-4242-secret", "0", map[string]string{
		"codeship-steps.yml": `
- {name: with-file, type: push, service: app, image_name: ` + reg.host + `/crunci/pushed-own, image_tag: file, encrypted_dockercfg_path: dockercfg.encrypted, registry: "http://` + reg.host + `/"}
- {name: with-service, type: push, service: app, image_name: ` + reg.host + `/crunci/pushed-own, image_tag: service, dockercfg_service: creds}
`,
	})
	cfg := dockerConfig(t, reg.host, "pusher", "pw-4242-secret")
	if r := crunci(t, "encrypt", "--dir", dir, filepath.Join(cfg, "config.json"), filepath.Join(dir, "dockercfg.encrypted")); r.code != 0 {
		t.Fatalf("encrypt: exit %d", r.code)
	}

	// A registry that is not image_name's is refused before anything runs (jet's check).
	os.WriteFile(filepath.Join(dir, "other-steps.yml"), []byte("- {name: elsewhere, type: push, service: app, image_name: "+reg.host+"/crunci/pushed-own, registry: quay.io}\n"), 0o644)
	r := stepsWithoutCredentials(t, dir, "--push", "--steps-path", "other-steps.yml")
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `other-steps.yml:1: step "elsewhere": registry "quay.io" is not the registry of image_name `+reg.host+`/crunci/pushed-own (`+reg.host+`)`)

	r = stepsWithoutCredentials(t, dir, "--push")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout,
		"PASSED      with-file (app)", "pushed "+reg.host+"/crunci/pushed-own:file",
		"dockercfg/creds | writing /crun-ci-dockercfg/config.json\n",
		"PASSED      with-service (app)", "pushed "+reg.host+"/crunci/pushed-own:service")
	wantNotContains(t, "output", r.stdout+r.stderr, "pw-4242-secret")

	// Both are in the registry, the same image.
	var digests []string
	for _, tag := range []string{"file", "service"} {
		ref, err := name.ParseReference(reg.host + "/crunci/pushed-own:" + tag)
		if err != nil {
			t.Fatal(err)
		}
		img, err := ggcrremote.Image(ref, ggcrremote.WithAuth(&authn.Basic{Username: "pusher", Password: "pw-4242-secret"}))
		if err != nil {
			t.Fatalf("pull %s back: %v", ref, err)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) == 0 {
			t.Errorf("%s: layers %d, %v", ref, len(layers), err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
	}
	if digests[0] != digests[1] {
		t.Errorf("the two pushes differ: %v", digests)
	}

	// Without the key, nothing runs and the error names the file.
	os.Remove(filepath.Join(dir, "codeship.aes"))
	r = stepsWithoutCredentials(t, dir, "--push")
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `codeship-steps.yml:2: step "with-file": dockercfg.encrypted needs the key, which is not there`)
}

// A run step's (or its group's) encrypted_dockercfg_path is the login for the images
// that step pulls, as Codeship's image-registries page tells private-image users to
// write it; a service with both dockercfg_service and encrypted_dockercfg_path takes the
// encrypted file and says so.
func TestRunStepsAndGroupsPullWithTheirEncryptedDockercfg(t *testing.T) {
	requireRoot(t)
	reg := newRegistry(t, "runner", "pw-7777-secret")
	ref := reg.push(t, "crunci/for-a-step:1", "runner", "pw-7777-secret")
	t.Cleanup(func() { crunci(t, "cleanup") })
	dir := credProject(t, "app:\n  image: "+ref+"\nother:\n  image: "+ref+"\n  encrypted_dockercfg_path: dockercfg.encrypted\n  dockercfg_service: creds\n", reg.host, "runner", "pw-7777-secret", "0", map[string]string{
		"codeship-steps.yml": `
- type: serial
  encrypted_dockercfg_path: dockercfg.encrypted
  steps:
  - {name: in-group, service: app, command: cat /pulled}
`,
		"other-steps.yml": "- {name: both-keys, service: other, command: cat /pulled}\n",
	})
	cfg := dockerConfig(t, reg.host, "runner", "pw-7777-secret")
	if r := crunci(t, "encrypt", "--dir", dir, filepath.Join(cfg, "config.json"), filepath.Join(dir, "dockercfg.encrypted")); r.code != 0 {
		t.Fatalf("encrypt: exit %d", r.code)
	}
	r := stepsWithoutCredentials(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "in-group/app | from the registry\n")
	wantNotContains(t, "output", r.stdout+r.stderr, "pw-7777-secret")

	// --pull-if-present pulls again, with the service's credentials this time.
	r = stepsWithoutCredentials(t, dir, "--steps-path", "other-steps.yml", "--pull-if-present")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "both-keys/other | from the registry\n")
	wantNotContains(t, "stdout", r.stdout, "dockercfg/creds |") // the credential service does not run
	wantContains(t, "stderr", r.stderr, `service "other": key "dockercfg_service" ignored: encrypted_dockercfg_path is given too, and wins`)
}

// A run step's or a group's dockercfg_service runs before the images that step pulls
// are pulled (the image-registries page writes it so), and only then.
func TestRunStepsAndGroupsPullWithTheirDockercfgService(t *testing.T) {
	requireRoot(t)
	reg := newRegistry(t, "gen", "pw-4242-secret")
	ref := reg.push(t, "crunci/for-a-step-service:1", "gen", "pw-4242-secret")
	other := reg.push(t, "crunci/for-a-group-service:1", "gen", "pw-4242-secret")
	third := reg.push(t, "crunci/for-the-flag:1", "gen", "pw-4242-secret")
	t.Cleanup(func() { crunci(t, "cleanup") })
	dir := credProject(t, "app:\n  image: "+ref+"\nother:\n  image: "+other+"\nthird:\n  image: "+third+"\n", reg.host, "gen", "pw-4242-secret", "0", map[string]string{
		"codeship-steps.yml": `
- {name: on-step, service: app, command: cat /pulled, dockercfg_service: creds}
- type: parallel
  dockercfg_service: creds
  steps:
  - {name: in-group, service: other, command: cat /pulled}
`,
		"plain-steps.yml": "- {name: plain, service: third, command: cat /pulled}\n",
	})
	r := stepsWithoutCredentials(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "dockercfg/creds | writing /crun-ci-dockercfg/config.json\n", "on-step/app | from the registry\n", "in-group/other | from the registry\n")
	wantNotContains(t, "output", r.stdout+r.stderr, "pw-4242-secret")

	// Present now: the credential service does not run.
	r = stepsWithoutCredentials(t, dir)
	wantCode(t, r, 0)
	wantNotContains(t, "stdout", r.stdout, "dockercfg/creds |")

	// A step without credentials pulls with --dockercfg-service's (jet's flag), and
	// cannot without.
	r = stepsWithoutCredentials(t, dir, "--steps-path", "plain-steps.yml")
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `service "third": pull image `+third+`: `, "no basic auth credentials")
	r = stepsWithoutCredentials(t, dir, "--steps-path", "plain-steps.yml", "--dockercfg-service", "creds")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "dockercfg/creds | writing /crun-ci-dockercfg/config.json\n", "plain/third | from the registry\n")
}

// --encrypted-dockercfg-path (jet's flag) is the login for every pull of the build.
func TestTheEncryptedDockercfgFlagLogsInEveryPull(t *testing.T) {
	requireRoot(t)
	reg := newRegistry(t, "flag", "pw-3131-secret")
	ref := reg.push(t, "crunci/by-flag:1", "flag", "pw-3131-secret")
	t.Cleanup(func() { crunci(t, "cleanup") })
	dir := credProject(t, "app:\n  image: "+ref+"\n", reg.host, "flag", "pw-3131-secret", "0", map[string]string{
		"codeship-steps.yml": "- {name: flagged, service: app, command: cat /pulled}\n",
	})
	// Without it, the registry refuses.
	r := stepsWithoutCredentials(t, dir)
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `service "app": pull image `+ref+`: `, "no basic auth credentials")
	cfg := dockerConfig(t, reg.host, "flag", "pw-3131-secret")
	if r := crunci(t, "encrypt", "--dir", dir, filepath.Join(cfg, "config.json"), filepath.Join(dir, "login.encrypted")); r.code != 0 {
		t.Fatalf("encrypt: exit %d", r.code)
	}
	r = stepsWithoutCredentials(t, dir, "--encrypted-dockercfg-path", "login.encrypted")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "flagged/app | from the registry\n")
	wantNotContains(t, "output", r.stdout+r.stderr, "pw-3131-secret")
}
