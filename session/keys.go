package session

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/crun-ci/crun-ci/secrets"
)

// Key is where a build directory's key is: the key file (KeyPath, "" for codeship.aes
// in Dir) unless $CRUNCI_AES_KEY holds it.
type Key struct{ Dir, KeyPath string }

// CryptFile encrypts the file in into out with the key (Codeship's v2 format), or
// decrypts it (v1 or v2). out is readable by its owner only: a decrypted file holds
// secrets. What the user must fix (no key, a file that cannot be read) is a
// *SetupError.
func (k Key) CryptFile(in, out string, encrypt bool) error {
	name, crypt := "decrypt", secrets.Decrypt
	if encrypt {
		name, crypt = "encrypt", secrets.Encrypt
	}
	key, where, err := secrets.FindKey(os.Getenv(KeyEnv), KeyEnv, secrets.KeyPath(k.Dir, k.KeyPath))
	if err != nil {
		return &SetupError{err}
	}
	if key == nil {
		return &SetupError{fmt.Errorf("%s: no key: %s (make one with crun-ci generate)", name, where)}
	}
	data, err := os.ReadFile(in)
	if err != nil {
		return &SetupError{fmt.Errorf("%s: %w", name, err)}
	}
	result, err := crypt(*key, data)
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, in, err)
	}
	if err := os.WriteFile(out, result, 0o600); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Version is crun-ci's version: linked (-X main.version) when not empty, else the
// module's (go install …@v1.2.3), else the commit it was built from (dev+<commit>, and
// +dirty with uncommitted changes), else dev.
func Version(linked string) string {
	if linked != "" {
		return linked
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			rev = s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "+dirty"
		}
	}
	if rev == "" {
		return "dev"
	}
	return "dev+" + rev + dirty
}

// WriteFile writes what write writes to the file path, whole or not at all: a temporary
// file next to it, renamed over it once written (a CI system never reads half a report).
func WriteFile(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, nothing
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(f.Name(), path)
}

// Generate writes a new key to the key file and returns its path; an existing key is
// never overwritten (a *SetupError).
func (k Key) Generate() (string, error) {
	key, err := secrets.GenerateKey()
	if err != nil {
		return "", err
	}
	file := secrets.KeyPath(k.Dir, k.KeyPath)
	if err := secrets.WriteKeyFile(file, key); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", &SetupError{fmt.Errorf("generate: %s exists; crun-ci never overwrites a key", file)}
		}
		return "", fmt.Errorf("generate: %w", err)
	}
	return file, nil
}
