package remote

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadCredentialsReadsBothDockerFormats(t *testing.T) {
	home, cfgDir := t.TempDir(), t.TempDir()
	t.Setenv("HOME", home)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	write := func(path, data string) {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(home, ".dockercfg"), `{"legacy.example.com": {"auth": "`+b64("old:pw")+`"}, "both.example.com": {"auth": "`+b64("legacy:pw")+`"}}`)
	write(filepath.Join(cfgDir, "config.json"), `{"auths": {
		"https://index.docker.io/v1/": {"auth": "`+b64("hub:pw:with:colons")+`"},
		"registry.example.com:5000": {"username": "u", "password": "p"},
		"token.example.com": {"identitytoken": "tok"},
		"both.example.com": {"auth": "`+b64("modern:pw")+`"}
	}}`)
	creds, err := LoadCredentials(cfgDir)
	if err != nil {
		t.Fatal(err)
	}
	want := Credentials{
		"registry-1.docker.io":      {Username: "hub", Password: "pw:with:colons"},
		"registry.example.com:5000": {Username: "u", Password: "p"},
		"token.example.com":         {IdentityToken: "tok"},
		"legacy.example.com":        {Username: "old", Password: "pw"},
		"both.example.com":          {Username: "modern", Password: "pw"},
	}
	if diff := cmp.Diff(want, creds); diff != "" {
		t.Errorf("credentials (-want +got):\n%s", diff)
	}
	for host, want := range map[string][2]string{
		"registry-1.docker.io": {"hub", "pw:with:colons"},
		"token.example.com":    {"", "tok"},
		"nobody.example.com":   {"", ""},
	} {
		u, p, err := creds.Lookup(host)
		if err != nil || u != want[0] || p != want[1] {
			t.Errorf("Lookup(%s) = %q, %q, %v; want %q, %q", host, u, p, err, want[0], want[1])
		}
	}
}

func TestLoadCredentialsNamesABrokenFile(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	dir := t.TempDir()
	for data, want := range map[string]string{
		`{"auths": `: "read registry credentials " + filepath.Join(dir, "config.json") + ": unexpected end of JSON input",
		`{"auths": {"r.example.com": {"auth": "%%%"}}}`:          "read registry credentials " + filepath.Join(dir, "config.json") + `: host "r.example.com": "auth" is not base64`,
		`{"auths": {"r.example.com": {"auth": "bm9jb2xvbg=="}}}`: "read registry credentials " + filepath.Join(dir, "config.json") + `: host "r.example.com": "auth" is not user:password`,
	} {
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(data), 0o600)
		if _, err := LoadCredentials(dir); err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %s", data, err, want)
		}
	}
	os.Remove(filepath.Join(dir, "config.json"))
	if creds, err := LoadCredentials(dir); err != nil || len(creds) != 0 {
		t.Errorf("no files: %v, %v; want no credentials", creds, err)
	}
}

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
