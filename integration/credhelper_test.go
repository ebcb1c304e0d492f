package integration

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// credentialHelpers writes stand-ins for Docker credential helpers into a new directory
// and returns it: docker-credential-<name> for each name of scripts, whose value is the
// body of a shell script that has the server URL it is asked about in $url. Every call
// is recorded as a line "<name> <action> <url>" in the file calls of the directory.
func credentialHelpers(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range scripts {
		script := fmt.Sprintf("#!/bin/sh\nurl=$(cat)\necho \"%s $1 $url\" >> %s\n%s\n", name, filepath.Join(dir, "calls"), body)
		if err := os.WriteFile(filepath.Join(dir, "docker-credential-"+name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// helperCalls returns the calls the helpers in dir recorded, and forgets them.
func helperCalls(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "calls"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "calls"))
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// answers is a helper's script that gives user and password for host, and no login for
// any other registry.
func answers(host, user, password string) string {
	return fmt.Sprintf(`[ "$url" = %q ] || { echo 'credentials not found in native keychain'; exit 1; }
printf '{"ServerURL":"%%s","Username":%q,"Secret":%q}\n' "$url"`, host, user, password)
}

// stepsWithHelpers runs `crun-ci steps` in dir with config as the host's config.json,
// in a directory of its own (returned too) as $DOCKER_CONFIG, an empty $HOME, and the
// helpers in helpers first on $PATH.
func stepsWithHelpers(t *testing.T, dir, config, helpers string, args ...string) (result, string) {
	t.Helper()
	cfgDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"DOCKER_CONFIG=" + cfgDir, "HOME=" + t.TempDir(), "DOCKER_AUTH_CONFIG=", "PATH=" + helpers + string(os.PathListSeparator) + os.Getenv("PATH")}
	return runStepsEnv(t, dir, env, args...), cfgDir
}

// The host's config.json may name credential helpers: credHelpers for a registry,
// credsStore for any other. crun-ci runs them as Docker does, never shows what they
// give, and stops the build before anything runs when one fails.
func TestCredentialHelpersGiveTheHostsLogins(t *testing.T) {
	requireRoot(t)
	const user, password = "helped", "pw-from-the-helper-4242"
	reg := newRegistry(t, user, password)
	helpers := credentialHelpers(t, map[string]string{
		"crunci-test":    answers(reg.host, user, password),
		"crunci-failing": "echo 'the vault is sealed'; exit 1",
	})
	t.Cleanup(func() { crunci(t, "cleanup") })
	secrets := []string{password, base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}

	for _, tt := range []struct {
		name, repo, config string
	}{
		{"a registry in credHelpers gets its login from that helper", "crunci/helped:1", `{"credHelpers": {%q: "crunci-test"}}`},
		{"credsStore's helper gives the login of a registry in no credHelpers key", "crunci/stored:1", `{"auths": {%q: {}}, "credsStore": "crunci-test"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ref := reg.push(t, tt.repo, user, password)
			dir := project(t, map[string]string{
				"codeship-services.yml": "app:\n  image: " + ref + "\n",
				"codeship-steps.yml":    "- {name: helped, service: app, command: cat /pulled}\n",
			})
			r, _ := stepsWithHelpers(t, dir, fmt.Sprintf(tt.config, reg.host), helpers, "--debug")
			wantCode(t, r, 0)
			wantContains(t, "stdout", r.stdout, "helped/app | from the registry\n")
			wantContains(t, "stderr", r.stderr, "pulled "+ref+" (")
			wantNotContains(t, "output", r.stdout+r.stderr, secrets...)
			calls := helperCalls(t, helpers)
			if len(calls) == 0 {
				t.Errorf("the helper was not asked")
			}
			for _, c := range calls {
				if c != "crunci-test get "+reg.host {
					t.Errorf("helper call %q, want only \"crunci-test get %s\"", c, reg.host)
				}
			}
		})
	}

	t.Run("a helper that fails stops the build before anything runs, in one line naming it", func(t *testing.T) {
		ref := reg.host + "/crunci/failing:1"
		dir := project(t, map[string]string{
			"codeship-services.yml": "app:\n  image: " + ref + "\n",
			"codeship-steps.yml":    "- {name: never, service: app, command: echo ran}\n",
		})
		r, cfgDir := stepsWithHelpers(t, dir, fmt.Sprintf(`{"credHelpers": {%q: "crunci-failing"}}`, reg.host), helpers)
		wantCode(t, r, 2)
		wantContains(t, "stderr", r.stderr, `codeship-services.yml:1: service "app": pull image `+ref+`: get credentials for registry `+reg.host+
			` from docker-credential-crunci-failing (credHelpers of `+filepath.Join(cfgDir, "config.json")+`): error getting credentials - err: exit status 1, out: `+"`the vault is sealed`\n")
		wantNotContains(t, "stdout", r.stdout, "never/app |")
		if calls := helperCalls(t, helpers); len(calls) == 0 {
			t.Errorf("the helper was not asked")
		}
	})
}

// A Docker config the pipeline gives (here an encrypted_dockercfg_path) is logins only:
// the helpers it names never run. Its logins win over the host's helpers, which are not
// asked for their registry.
func TestAPipelinesDockerConfigRunsNoCredentialHelper(t *testing.T) {
	requireRoot(t)
	const user, password = "pipeline", "pw-pipeline-5150"
	reg := newRegistry(t, user, password)
	helpers := credentialHelpers(t, map[string]string{
		"crunci-chosen":  answers(reg.host, user, password),
		"crunci-failing": "echo 'the vault is sealed'; exit 1",
	})
	t.Cleanup(func() { crunci(t, "cleanup") })
	encrypted := func(t *testing.T, repo, dockercfg string) string {
		t.Helper()
		ref := reg.push(t, repo, user, password)
		dir := project(t, map[string]string{
			"codeship-services.yml": "app:\n  image: " + ref + "\n  encrypted_dockercfg_path: dockercfg.encrypted\n",
			"codeship-steps.yml":    "- {name: private, service: app, command: cat /pulled}\n",
			"dockercfg.json":        dockercfg,
		})
		crunci(t, "generate", "--dir", dir)
		if r := crunci(t, "encrypt", "--dir", dir, filepath.Join(dir, "dockercfg.json"), filepath.Join(dir, "dockercfg.encrypted")); r.code != 0 {
			t.Fatalf("encrypt: exit %d", r.code)
		}
		os.Remove(filepath.Join(dir, "dockercfg.json"))
		return dir
	}

	t.Run("credHelpers and credsStore in the pipeline's config are ignored", func(t *testing.T) {
		dir := encrypted(t, "crunci/chosen:1", fmt.Sprintf(`{"auths": {%q: {}}, "credsStore": "crunci-chosen", "credHelpers": {%[1]q: "crunci-chosen"}}`, reg.host))
		r, _ := stepsWithHelpers(t, dir, `{}`, helpers)
		wantCode(t, r, 2)
		// No login at all for a registry that wants one: containerd's words.
		wantContains(t, "stderr", r.stderr, `service "app": pull image `+reg.host+`/crunci/chosen:1: `, "no basic auth credentials")
		if calls := helperCalls(t, helpers); calls != nil {
			t.Errorf("a helper the pipeline named ran: %q", calls)
		}
	})

	t.Run("the pipeline's login wins over the host's helper, which is not asked", func(t *testing.T) {
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
		dir := encrypted(t, "crunci/own:1", fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg.host, auth))
		r, _ := stepsWithHelpers(t, dir, fmt.Sprintf(`{"credHelpers": {%q: "crunci-failing"}, "credsStore": "crunci-failing"}`, reg.host), helpers)
		wantCode(t, r, 0)
		wantContains(t, "stdout", r.stdout, "private/app | from the registry\n")
		if calls := helperCalls(t, helpers); calls != nil {
			t.Errorf("the host's helper was asked: %q", calls)
		}
	})
}
