package remote

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Credentials are the logins of registries, by host.
type Credentials map[string]Login

// Login is one registry's credentials. An identity token, when set, is sent as a
// refresh token instead of the password.
type Login struct {
	Username, Password, IdentityToken string
}

type authEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

// LoadCredentials reads Docker's config.json in dockerConfig (the directory; "" means
// $DOCKER_CONFIG, else ~/.docker) and the legacy ~/.dockercfg. Missing files give no
// credentials; unreadable or malformed ones are an error naming the file.
func LoadCredentials(dockerConfig string) (Credentials, error) {
	home, _ := os.UserHomeDir()
	if dockerConfig == "" {
		dockerConfig = os.Getenv("DOCKER_CONFIG")
	}
	if dockerConfig == "" && home != "" {
		dockerConfig = filepath.Join(home, ".docker")
	}
	creds := Credentials{}
	if home != "" {
		if err := creds.read(filepath.Join(home, ".dockercfg"), false); err != nil {
			return nil, err
		}
	}
	if dockerConfig != "" {
		if err := creds.read(filepath.Join(dockerConfig, "config.json"), true); err != nil {
			return nil, err
		}
	}
	return creds, nil
}

// read adds the entries of one file; modern files keep them under "auths".
func (c Credentials) read(path string, modern bool) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read registry credentials: %w", err)
	}
	return c.parse(path, data, modern)
}

func (c Credentials) parse(path string, data []byte, modern bool) error {
	var entries map[string]authEntry
	if modern {
		var file struct {
			Auths map[string]authEntry `json:"auths"`
		}
		if err := json.Unmarshal(data, &file); err != nil {
			return fmt.Errorf("read registry credentials %s: %w", path, err)
		}
		entries = file.Auths
	} else if err := json.Unmarshal(data, &entries); err != nil {
		return fmt.Errorf("read registry credentials %s: %w", path, err)
	}
	for host, e := range entries {
		l := Login{Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken}
		if e.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(e.Auth))
			if err != nil {
				return fmt.Errorf("read registry credentials %s: host %q: \"auth\" is not base64", path, host)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return fmt.Errorf("read registry credentials %s: host %q: \"auth\" is not user:password", path, host)
			}
			l.Username, l.Password = user, pass
		}
		c[normalizeHost(host)] = l
	}
	return nil
}

// normalizeHost turns the keys Docker writes ("https://index.docker.io/v1/",
// "registry.example.com:5000") into the host names containerd asks for.
func normalizeHost(h string) string {
	h = strings.TrimPrefix(strings.TrimPrefix(h, "https://"), "http://")
	if i := strings.IndexByte(h, '/'); i >= 0 {
		h = h[:i]
	}
	switch h {
	case "index.docker.io", "docker.io":
		return "registry-1.docker.io"
	}
	return h
}

// ParseCredentials reads the content of a Docker config file, in either format (entries
// under "auths", or at the top level as in ~/.dockercfg); name names it in errors.
func ParseCredentials(name string, data []byte) (Credentials, error) {
	creds := Credentials{}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("read registry credentials %s: %w", name, err)
	}
	_, modern := probe["auths"]
	if err := creds.parse(name, data, modern); err != nil {
		return nil, err
	}
	return creds, nil
}

// With returns c with the entries of more added, more's winning.
func (c Credentials) With(more Credentials) Credentials {
	out := Credentials{}
	for h, l := range c {
		out[h] = l
	}
	for h, l := range more {
		out[h] = l
	}
	return out
}

// Lookup returns the user and secret for host, as containerd's authorizer wants them: an
// identity token is a secret with an empty user.
func (c Credentials) Lookup(host string) (string, string, error) {
	l, ok := c[normalizeHost(host)]
	if !ok {
		return "", "", nil
	}
	if l.IdentityToken != "" {
		return "", l.IdentityToken, nil
	}
	return l.Username, l.Password, nil
}
