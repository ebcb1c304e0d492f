package remote

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/credentials"
)

// Credentials are the logins of registries, by host. They come from a Docker config
// file the pipeline gives (ParseCredentials) and answer lookups from memory: nothing
// they hold can make crun-ci run a program.
type Credentials map[string]Login

var _ Keychain = Credentials(nil)

// Login is one registry's credentials. An identity token, when set, is sent as a
// refresh token instead of the password.
type Login struct {
	Username, Password, IdentityToken string
}

// DockerConfig is the host's Docker configuration as far as registries go: the logins of
// config.json's "auths" and of the legacy ~/.dockercfg, and the credential helpers that
// config.json's "credHelpers" (by registry) and "credsStore" (for every other registry)
// name. Lookup resolves a registry as Docker does, with Docker's own code: its helper in
// credHelpers, else credsStore's helper, else auths; $DOCKER_AUTH_CONFIG, when set, wins
// over all of them for the registries it names.
type DockerConfig struct {
	file *configfile.ConfigFile
}

var _ Keychain = (*DockerConfig)(nil)

// A form is what crun-ci reads of a Docker config file.
type form int

const (
	full   form = iota // config.json: "auths", "credsStore" and "credHelpers"
	legacy             // ~/.dockercfg: the logins at the top level
	logins             // a pipeline's: "auths" only, or the legacy form when none of config.json's keys is there
)

// hubKey is the key under which Docker keeps Docker Hub's credentials.
const hubKey = "https://index.docker.io/v1/"

// LoadDockerConfig reads Docker's config.json in dir (the directory; "" means
// $DOCKER_CONFIG, else ~/.docker) and the legacy ~/.dockercfg, whose logins config.json's
// replace. Missing files give no credentials; unreadable or malformed ones are an error
// naming the file. No helper runs before Lookup asks for a registry's login.
func LoadDockerConfig(dir string) (*DockerConfig, error) {
	home, _ := os.UserHomeDir()
	if dir == "" {
		dir = os.Getenv("DOCKER_CONFIG")
	}
	if dir == "" && home != "" {
		dir = filepath.Join(home, ".docker")
	}
	file := configfile.New(filepath.Join(dir, "config.json"))
	if dir != "" {
		cfg, err := readConfig(file.Filename, full)
		if err != nil {
			return nil, err
		}
		if cfg != nil {
			file = cfg
		}
	}
	if home != "" {
		old, err := readConfig(filepath.Join(home, ".dockercfg"), legacy)
		if err != nil {
			return nil, err
		}
		if old != nil {
			for key, ac := range old.AuthConfigs {
				if _, ok := file.AuthConfigs[key]; !ok {
					file.AuthConfigs[key] = ac
				}
			}
		}
	}
	return &DockerConfig{file: file}, nil
}

// readConfig reads one of the host's Docker config files, of the form f. A missing file
// is nil.
func readConfig(path string, f form) (*configfile.ConfigFile, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read registry credentials: %w", err)
	}
	return parseConfig(path, data, f)
}

// ParseCredentials reads the content of a Docker config file that the pipeline gives
// (an encrypted_dockercfg_path, or what a dockercfg_service wrote), in either format:
// entries under "auths", or at the top level as in ~/.dockercfg. name names it in
// errors. Only the logins count: "credsStore" and "credHelpers" (and any other key) are
// ignored, never even decoded, since the pipeline must not choose a program for crun-ci
// to run on the host.
func ParseCredentials(name string, data []byte) (Credentials, error) {
	file, err := parseConfig(name, data, logins)
	if err != nil {
		return nil, err
	}
	creds := Credentials{}
	for key, ac := range file.AuthConfigs {
		creds[normalizeHost(key)] = Login{Username: ac.Username, Password: ac.Password, IdentityToken: ac.IdentityToken}
	}
	return creds, nil
}

// parseConfig decodes what the form f reads of a Docker config file with Docker's own
// decoder. The keys of "auths" and "credHelpers" become the keys Docker looks registries
// up by ("https://index.docker.io/v1/" for Docker Hub, host[:port] for any other), so
// that every spelling of a registry is found.
func parseConfig(name string, data []byte, f form) (*configfile.ConfigFile, error) {
	// Docker's decoder takes an empty file, or anything after the first value; a file
	// crun-ci reads must be one JSON object.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("read registry credentials %s: %w", name, err)
	}
	if f == logins && !slices.ContainsFunc([]string{"auths", "credsStore", "credHelpers"}, func(k string) bool { _, ok := top[k]; return ok }) {
		f = legacy
	}
	switch f {
	case legacy:
		data = append(append([]byte(`{"auths":`), data...), '}')
	case logins:
		data, _ = json.Marshal(map[string]json.RawMessage{"auths": top["auths"]})
	}
	file := configfile.New(name)
	if err := file.LoadFromReader(bytes.NewReader(data)); err != nil {
		// Which entry Docker's decoder choked on: the legacy form's entries are the
		// top level, the others' are under "auths".
		entries := top
		if f != legacy {
			entries = nil
			json.Unmarshal(top["auths"], &entries) // when it is no object, LoadFromReader said so
		}
		return nil, fmt.Errorf("read registry credentials %s: %w", name, entryError(entries, err))
	}
	file.AuthConfigs = byKey(file.AuthConfigs)
	file.CredentialHelpers = byKey(file.CredentialHelpers)
	return file, nil
}

// byKey returns m with its keys turned into authKeys. Where several spell one registry,
// the one already in that form wins, else the last in sorted order.
func byKey[V any](m map[string]V) map[string]V {
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		aCanon, bCanon := a == authKey(a), b == authKey(b)
		switch {
		case aCanon == bCanon:
			return strings.Compare(a, b)
		case aCanon:
			return 1
		}
		return -1
	})
	out := make(map[string]V, len(m))
	for _, k := range keys {
		out[authKey(k)] = m[k]
	}
	return out
}

// entryError says which entry of auths err, Docker's error for the whole file, is about:
// Docker's decoder stops at the first bad "auth" without naming its host.
func entryError(auths map[string]json.RawMessage, err error) error {
	for _, host := range slices.Sorted(maps.Keys(auths)) {
		one, _ := json.Marshal(map[string]map[string]json.RawMessage{"auths": {host: auths[host]}})
		e := configfile.New("").LoadFromReader(bytes.NewReader(one))
		var typeErr *json.UnmarshalTypeError
		switch {
		case e == nil:
			continue
		case errors.As(e, new(base64.CorruptInputError)):
			return fmt.Errorf("host %q: \"auth\" is not base64", host)
		case errors.As(e, &typeErr):
			return fmt.Errorf("host %q: %w", host, e)
		}
		return fmt.Errorf("host %q: \"auth\" is not user:password", host)
	}
	return err
}

// normalizeHost turns the keys Docker writes ("https://index.docker.io/v1/",
// "registry.example.com:5000") into the host names containerd asks for.
func normalizeHost(h string) string {
	switch h = credentials.ConvertToHostname(h); h {
	case "index.docker.io", "docker.io":
		return "registry-1.docker.io"
	}
	return h
}

// authKey is the key under which Docker keeps the credentials of the registry h (a host
// as containerd names it, or any key Docker writes).
func authKey(h string) string {
	if h = normalizeHost(h); h == "registry-1.docker.io" {
		return hubKey
	}
	return h
}

// With returns c with the entries of more added, more's winning.
func (c Credentials) With(more Credentials) Credentials {
	out := Credentials{}
	maps.Copy(out, c)
	maps.Copy(out, more)
	return out
}

// Lookup returns the user and secret for host, as containerd's authorizer wants them: an
// identity token is a secret with an empty user.
func (c Credentials) Lookup(host string) (string, string, error) {
	l, ok := c[normalizeHost(host)]
	if !ok {
		return "", "", nil
	}
	return l.secret()
}

func (l Login) secret() (string, string, error) {
	if l.IdentityToken != "" {
		return "", l.IdentityToken, nil
	}
	return l.Username, l.Password, nil
}

// Lookup returns the user and secret for host, as containerd's authorizer wants them,
// running the registry's credential helper (docker-credential-<name> get, found on
// $PATH) when config.json names one. Nothing is kept: every lookup asks the helper
// again, so that a short-lived token is fresh for each pull. A helper that fails is an
// error naming it, the key that names it and the registry.
func (c *DockerConfig) Lookup(host string) (string, string, error) {
	key := authKey(host)
	ac, err := c.file.GetAuthConfig(key)
	if err != nil {
		e := &helperError{registry: host, helper: c.file.CredentialsStore, key: "credsStore", file: c.file.Filename, err: err}
		if h, ok := c.file.CredentialHelpers[key]; ok {
			e.helper, e.key = h, "credHelpers"
		}
		return "", "", e
	}
	return Login{Username: ac.Username, Password: ac.Password, IdentityToken: ac.IdentityToken}.secret()
}

// helperError is a credential helper's failure to give a registry's login.
type helperError struct {
	registry string // the host whose login was asked for
	helper   string // docker-credential-<helper> is the program
	key      string // the key of file that names it: credHelpers or credsStore
	file     string
	err      error
}

func (e *helperError) Error() string {
	// err has what the helper printed: one line, so that the build's error is one too.
	msg := strings.Join(strings.Fields(e.err.Error()), " ")
	return fmt.Sprintf("get credentials for registry %s from docker-credential-%s (%s of %s): %s", e.registry, e.helper, e.key, e.file, msg)
}

func (e *helperError) Unwrap() error { return e.err }
