package remote

import (
	"strings"
	"testing"
)

// FuzzParseCredentials reads a Docker config as a credential service (a container of the
// pipeline's) may write it: anything that is not one is an error naming the file, and
// the credentials of one that is answer lookups without a panic (and without a helper:
// Credentials are only logins).
func FuzzParseCredentials(f *testing.F) {
	for _, s := range []string{
		`{"auths":{"registry.example.com":{"auth":"dXNlcjpwYXNz"}}}`,
		`{"auths":{"https://index.docker.io/v1/":{"username":"u","password":"p"}}}`,
		`{"auths":{"r.example.com":{"identitytoken":"tok"}}}`,
		`{"r.example.com":{"auth":"dXNlcjpwYXNz","email":"x@y"}}`,
		`{"auths":{"r":{"auth":"not base64!"}}}`,
		`{"auths":{"r":{"auth":"bm9jb2xvbg=="}}}`,
		`{"auths":{"r":{"auth":"dXNlcjpwYXNz"}},"credsStore":"x","credHelpers":{"r":"y"}}`,
		`{"credHelpers":{"https://index.docker.io/v1/":"y"}}`,
		`{"auths":{"r":{"auth":5}}}`, `{"auths":{}} {}`,
		`{"auths":null}`, `[]`, `"x"`, `{"auths":{"":{}}}`, "", "{", "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		creds, err := ParseCredentials("/crun-ci-dockercfg/config.json", data)
		if err != nil {
			if !strings.Contains(err.Error(), "/crun-ci-dockercfg/config.json") {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		for host := range creds {
			creds.Lookup(host)
		}
		creds.Lookup("registry.example.com")
	})
}
