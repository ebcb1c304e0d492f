package remote

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// credentialHelpers writes stand-ins for docker-credential-<name> into a directory put
// first on $PATH. Each answers "get" for the server URL on its stdin by cases, shell
// case arms ("r.example.com) echo …;;"); any other URL has no login. Each call is
// recorded in the file returned, as "<name> <action> <url>" lines.
func credentialHelpers(t *testing.T, cases map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	for name, arms := range cases {
		script := "#!/bin/sh\nurl=$(cat)\necho \"" + name + " $1 $url\" >> " + calls + "\n" +
			"case \"$url\" in\n" + arms + "\n*) echo 'credentials not found in native keychain'; exit 1;;\nesac\n"
		if err := os.WriteFile(filepath.Join(dir, "docker-credential-"+name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return calls
}

// readCalls returns the helper calls recorded in calls, and empties it.
func readCalls(t *testing.T, calls string) []string {
	t.Helper()
	data, err := os.ReadFile(calls)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(calls)
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func TestLoadDockerConfigReadsBothDockerFormats(t *testing.T) {
	home, cfgDir := t.TempDir(), t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("DOCKER_AUTH_CONFIG", "")
	writeFile(t, filepath.Join(home, ".dockercfg"), `{"legacy.example.com": {"auth": "`+b64("old:pw")+`", "email": "x@y"}, "https://both.example.com": {"auth": "`+b64("legacy:pw")+`"}}`)
	writeFile(t, filepath.Join(cfgDir, "config.json"), `{"auths": {
		"https://index.docker.io/v1/": {"auth": "`+b64("hub:pw:with:colons")+`"},
		"registry.example.com:5000": {"username": "u", "password": "p"},
		"token.example.com": {"identitytoken": "tok"},
		"both.example.com": {"auth": "`+b64("modern:pw")+`"}
	}}`)
	cfg, err := LoadDockerConfig(cfgDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, host   string
		user, secret string
	}{
		{"Docker Hub's key answers for registry-1.docker.io", "registry-1.docker.io", "hub", "pw:with:colons"},
		{"Docker Hub's key answers for docker.io", "docker.io", "hub", "pw:with:colons"},
		{"a username and password, with a port", "registry.example.com:5000", "u", "p"},
		{"an identity token is a secret without a user", "token.example.com", "", "tok"},
		{"the legacy file's logins count", "legacy.example.com", "old", "pw"},
		{"config.json wins over the legacy file, whatever the spelling", "both.example.com", "modern", "pw"},
		{"a registry without a login gets none", "nobody.example.com", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			user, secret, err := cfg.Lookup(tt.host)
			if err != nil || user != tt.user || secret != tt.secret {
				t.Errorf("Lookup(%s) = %q, %q, %v; want %q, %q", tt.host, user, secret, err, tt.user, tt.secret)
			}
		})
	}
}

func TestLoadDockerConfigNamesABrokenFile(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_AUTH_CONFIG", "")
	dir := t.TempDir()
	file := filepath.Join(dir, "config.json")
	for _, tt := range []struct{ name, data, want string }{
		{"a file cut short", `{"auths": `, "read registry credentials " + file + ": unexpected end of JSON input"},
		{"an empty file", ``, "read registry credentials " + file + ": unexpected end of JSON input"},
		{"something after the object", `{"auths": {}} {}`, "read registry credentials " + file + ": invalid character '{' after top-level value"},
		{"an auth that is not base64", `{"auths": {"a.example.com": {}, "r.example.com": {"auth": "%%%"}}}`, "read registry credentials " + file + `: host "r.example.com": "auth" is not base64`},
		{"an auth without a colon", `{"auths": {"r.example.com": {"auth": "bm9jb2xvbg=="}}}`, "read registry credentials " + file + `: host "r.example.com": "auth" is not user:password`},
		{"an auth without a user", `{"auths": {"r.example.com": {"auth": "` + b64(":pw") + `"}}}`, "read registry credentials " + file + `: host "r.example.com": "auth" is not user:password`},
		{"auths that are no object", `{"auths": []}`, "read registry credentials " + file + ": json: cannot unmarshal array into Go struct field ConfigFile.auths of type map[string]types.AuthConfig"},
		{"credHelpers that are no object", `{"credHelpers": "xyz"}`, "read registry credentials " + file + ": json: cannot unmarshal string into Go struct field ConfigFile.credHelpers of type map[string]string"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			writeFile(t, file, tt.data)
			if _, err := LoadDockerConfig(dir); err == nil || err.Error() != tt.want {
				t.Errorf("error %v\nwant  %s", err, tt.want)
			}
		})
	}
	t.Run("no files are no credentials", func(t *testing.T) {
		os.Remove(file)
		cfg, err := LoadDockerConfig(dir)
		if err != nil {
			t.Fatal(err)
		}
		if user, secret, err := cfg.Lookup("registry-1.docker.io"); user != "" || secret != "" || err != nil {
			t.Errorf("Lookup = %q, %q, %v; want nothing", user, secret, err)
		}
	})
}

func TestDockerConfigAsksTheCredentialHelpers(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_AUTH_CONFIG", "")
	calls := credentialHelpers(t, map[string]string{
		"xyz": `helped.example.com) echo '{"ServerURL":"helped.example.com","Username":"xyz-user","Secret":"xyz-pw"}';;
https://index.docker.io/v1/) echo '{"Username":"hub-user","Secret":"hub-pw"}';;
token.example.com) echo '{"Username":"<token>","Secret":"xyz-token"}';;
broken.example.com) echo 'the keychain is locked'; echo 'try again' ; exit 1;;
garbled.example.com) echo 'not json';;`,
		"store": `auths.example.com|other.example.com) echo '{"Username":"store-user","Secret":"store-pw"}';;`,
	})
	config := func(json string) string {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "config.json"), json)
		return dir
	}
	helpers := `"credHelpers": {"helped.example.com": "xyz", "docker.io": "xyz", "https://token.example.com/v2/": "xyz",
		"broken.example.com": "xyz", "garbled.example.com": "xyz", "nologin.example.com": "xyz", "gone.example.com": "absent"}`
	auths := `"auths": {"auths.example.com": {"auth": "` + b64("file-user:file-pw") + `"}, "helped.example.com": {"auth": "` + b64("file-user:file-pw") + `"}}`
	noStore := config(`{` + auths + `, ` + helpers + `}`)
	withStore := config(`{` + auths + `, ` + helpers + `, "credsStore": "store"}`)
	missingStore := config(`{` + auths + `, "credsStore": "absent"}`)
	for _, tt := range []struct {
		name, dir, host string
		env             string // $DOCKER_AUTH_CONFIG
		user, secret    string
		err             string
		calls           []string
	}{
		{
			name: "a registry in credHelpers gets its login from that helper, not from auths",
			dir:  noStore, host: "helped.example.com",
			user: "xyz-user", secret: "xyz-pw", calls: []string{"xyz get helped.example.com"},
		},
		{
			name: "a registry in no helper's keys gets its login from auths",
			dir:  noStore, host: "auths.example.com",
			user: "file-user", secret: "file-pw",
		},
		{
			name: "Docker Hub in credHelpers as docker.io is asked for under Docker's key",
			dir:  noStore, host: "registry-1.docker.io",
			user: "hub-user", secret: "hub-pw", calls: []string{"xyz get https://index.docker.io/v1/"},
		},
		{
			name: "a credHelpers key with a scheme and a path names its host",
			dir:  noStore, host: "token.example.com",
			user: "", secret: "xyz-token", calls: []string{"xyz get token.example.com"},
		},
		{
			name: "a helper without a login for the registry gives none",
			dir:  noStore, host: "nologin.example.com",
			calls: []string{"xyz get nologin.example.com"},
		},
		{
			name: "with credsStore, a registry in no credHelpers key gets its login from the store's helper",
			dir:  withStore, host: "auths.example.com",
			user: "store-user", secret: "store-pw", calls: []string{"store get auths.example.com"},
		},
		{
			name: "with credsStore, credHelpers still win for their registries",
			dir:  withStore, host: "helped.example.com",
			user: "xyz-user", secret: "xyz-pw", calls: []string{"xyz get helped.example.com"},
		},
		{
			name: "with credsStore, a registry the store has no login for gets none, as in Docker",
			dir:  withStore, host: "nobody.example.com",
			calls: []string{"store get nobody.example.com"},
		},
		{
			name: "$DOCKER_AUTH_CONFIG wins over the helpers, as in Docker",
			dir:  withStore, host: "helped.example.com", env: `{"auths": {"helped.example.com": {"auth": "` + b64("env-user:env-pw") + `"}}}`,
			user: "env-user", secret: "env-pw",
		},
		{
			name: "a helper that fails is one line naming the helper, the key and the registry, with what it said",
			dir:  noStore, host: "broken.example.com",
			err:   "get credentials for registry broken.example.com from docker-credential-xyz (credHelpers of " + noStore + "/config.json): error getting credentials - err: exit status 1, out: `the keychain is locked try again`",
			calls: []string{"xyz get broken.example.com"},
		},
		{
			name: "a helper that answers no JSON is an error naming it",
			dir:  noStore, host: "garbled.example.com",
			err:   "get credentials for registry garbled.example.com from docker-credential-xyz (credHelpers of " + noStore + "/config.json): invalid character 'o' in literal null (expecting 'u')",
			calls: []string{"xyz get garbled.example.com"},
		},
		{
			name: "a helper that is not on $PATH is an error naming it",
			dir:  noStore, host: "gone.example.com",
			err: "get credentials for registry gone.example.com from docker-credential-absent (credHelpers of " + noStore + "/config.json): error getting credentials - err: exec: \"docker-credential-absent\": executable file not found in $PATH, out: ``",
		},
		{
			name: "a credsStore that is not on $PATH is an error naming it",
			dir:  missingStore, host: "auths.example.com",
			err: "get credentials for registry auths.example.com from docker-credential-absent (credsStore of " + missingStore + "/config.json): error getting credentials - err: exec: \"docker-credential-absent\": executable file not found in $PATH, out: ``",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DOCKER_AUTH_CONFIG", tt.env)
			cfg, err := LoadDockerConfig(tt.dir)
			if err != nil {
				t.Fatal(err)
			}
			readCalls(t, calls)
			user, secret, err := cfg.Lookup(tt.host)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Errorf("error %v\nwant  %s", err, tt.err)
				}
			} else if err != nil {
				t.Errorf("error %v", err)
			}
			if user != tt.user || secret != tt.secret {
				t.Errorf("Lookup(%s) = %q, %q; want %q, %q", tt.host, user, secret, tt.user, tt.secret)
			}
			if diff := cmp.Diff(tt.calls, readCalls(t, calls)); diff != "" {
				t.Errorf("helper calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseCredentialsReadsAPipelinesDockerConfig(t *testing.T) {
	calls := credentialHelpers(t, map[string]string{"xyz": `*) echo '{"Username":"xyz-user","Secret":"xyz-pw"}';;`})
	for _, tt := range []struct {
		name, data string
		want       Credentials
	}{
		{
			name: "auths with a base64 auth, username and password, or an identity token",
			data: `{"auths": {"a.example.com": {"auth": "` + b64("a:pw:with:colons") + `"}, "b.example.com:5000": {"username": "b", "password": "pw"}, "c.example.com": {"identitytoken": "tok"}}}`,
			want: Credentials{
				"a.example.com":      {Username: "a", Password: "pw:with:colons"},
				"b.example.com:5000": {Username: "b", Password: "pw"},
				"c.example.com":      {IdentityToken: "tok"},
			},
		},
		{
			name: "the legacy form, entries at the top level",
			data: `{"r.example.com": {"auth": "` + b64("u:p") + `", "email": "x@y"}}`,
			want: Credentials{"r.example.com": {Username: "u", Password: "p"}},
		},
		{
			name: "Docker Hub's keys are registry-1.docker.io, as containerd asks for it",
			data: `{"auths": {"https://index.docker.io/v1/": {"auth": "` + b64("hub:pw") + `"}, "https://r.example.com/v2/": {"auth": "` + b64("u:p") + `"}}}`,
			want: Credentials{"registry-1.docker.io": {Username: "hub", Password: "pw"}, "r.example.com": {Username: "u", Password: "p"}},
		},
		{
			name: "credsStore and credHelpers are ignored: no helper runs, the auths count",
			data: `{"auths": {"r.example.com": {"auth": "` + b64("u:p") + `"}, "h.example.com": {}}, "credsStore": "xyz", "credHelpers": {"h.example.com": "xyz"}}`,
			want: Credentials{"r.example.com": {Username: "u", Password: "p"}, "h.example.com": {}},
		},
		{
			name: "other keys are not read, even those Docker would refuse",
			data: `{"auths": {"r.example.com": {"auth": "` + b64("u:p") + `"}}, "credsStore": 5, "credHelpers": ["xyz"], "psFormat": {}}`,
			want: Credentials{"r.example.com": {Username: "u", Password: "p"}},
		},
		{
			name: "a file with credHelpers only has no logins, and is not taken for the legacy form",
			data: `{"credHelpers": {"h.example.com": "xyz"}}`,
			want: Credentials{},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCredentials("/crun-ci-dockercfg/config.json", []byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("credentials (-want +got):\n%s", diff)
			}
			for _, host := range []string{"h.example.com", "r.example.com", "registry-1.docker.io"} {
				got.Lookup(host)
			}
			if c := readCalls(t, calls); c != nil {
				t.Errorf("a helper ran: %q", c)
			}
		})
	}
}

func TestParseCredentialsNamesTheFile(t *testing.T) {
	const name = "dockercfg.encrypted"
	for _, tt := range []struct{ name, data, want string }{
		{"no JSON", "user:password", "read registry credentials dockercfg.encrypted: invalid character 'u' looking for beginning of value"},
		{"no object", `[]`, "read registry credentials dockercfg.encrypted: json: cannot unmarshal array into Go value of type map[string]json.RawMessage"},
		{"a legacy entry that is no object", `{"r.example.com": "u:p"}`, `read registry credentials dockercfg.encrypted: host "r.example.com": json: cannot unmarshal string into Go struct field ConfigFile.auths of type types.AuthConfig`},
		{"a legacy auth that is not base64", `{"r.example.com": {"auth": "%%%"}}`, `read registry credentials dockercfg.encrypted: host "r.example.com": "auth" is not base64`},
		{"an auth without a colon", `{"auths": {"r.example.com": {"auth": "bm9jb2xvbg=="}}}`, `read registry credentials dockercfg.encrypted: host "r.example.com": "auth" is not user:password`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseCredentials(name, []byte(tt.data)); err == nil || err.Error() != tt.want {
				t.Errorf("error %v\nwant  %s", err, tt.want)
			}
		})
	}
}

func TestAPullsOwnCredentialsWinOverTheKeychain(t *testing.T) {
	asked := map[string]int{}
	p := &Puller{Keychain: keychainFunc(func(host string) (string, string, error) {
		asked[host]++
		return "host-user", "host-pw", nil
	})}
	for _, tt := range []struct {
		name, host   string
		more         Credentials
		user, secret string
		asked        bool
	}{
		{"the pull's login for the registry wins, and the keychain is not asked", "r.example.com", Credentials{"r.example.com": {Username: "u", Password: "p"}}, "u", "p", false},
		{"another registry's login leaves the keychain to answer", "other.example.com", Credentials{"r.example.com": {Username: "u", Password: "p"}}, "host-user", "host-pw", true},
		{"without a pull's logins the keychain answers", "r.example.com", nil, "host-user", "host-pw", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clear(asked)
			user, secret, err := p.lookup(tt.more)(tt.host)
			if err != nil || user != tt.user || secret != tt.secret {
				t.Errorf("lookup(%s) = %q, %q, %v; want %q, %q", tt.host, user, secret, err, tt.user, tt.secret)
			}
			if got := asked[tt.host] > 0; got != tt.asked {
				t.Errorf("keychain asked: %v, want %v", got, tt.asked)
			}
		})
	}
}

// keychainFunc is a Keychain of one function.
type keychainFunc func(host string) (string, string, error)

func (f keychainFunc) Lookup(host string) (string, string, error) { return f(host) }

func TestPlainHTTPOnlyForLoopbackAndInsecureRegistries(t *testing.T) {
	p := &Puller{Insecure: []string{"ci.internal:5000"}}
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "localhost:5000": true, "[::1]:5000": true, "ci.internal:5000": true,
		"ci.internal": false, "registry-1.docker.io": false, "10.0.0.1:5000": false,
	} {
		if got, _ := p.plainHTTP(host); got != want {
			t.Errorf("plainHTTP(%s) = %v, want %v", host, got, want)
		}
	}
}
