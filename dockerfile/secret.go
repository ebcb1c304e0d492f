package dockerfile

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/crun-ci/crun-ci/hostfs"
)

// CacheSecretFile is the file, in crun-ci's state directory, that holds the host's
// cache secret.
const CacheSecretFile = "layer-cache.key"

// minCacheSecret is the size of a cache secret in bytes.
const minCacheSecret = 32

// LoadCacheSecret returns the host's cache secret, kept in stateDir/CacheSecretFile
// (mode 0600), and makes it at the first call: random bytes that key the hashes by which
// secret build arguments enter the layer cache's keys. A file that others may read is an
// error: with the secret, the hash of a short secret could be guessed.
func LoadCacheSecret(stateDir string) ([]byte, error) {
	path := filepath.Join(stateDir, CacheSecretFile)
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("layer cache secret: %w", err)
	}
	secret := make([]byte, minCacheSecret)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("layer cache secret: %w", err)
	}
	// O_EXCL: of two builds that start at once, one writes it and both read it.
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		_, werr := f.Write(secret)
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("layer cache secret %s: %w", path, err)
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("layer cache secret: %w", err)
	}
	d, err := hostfs.Open(stateDir, hostfs.Beneath, "the state directory")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fi, err := d.Stat(CacheSecretFile)
	if err != nil {
		return nil, fmt.Errorf("layer cache secret: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("layer cache secret %s: mode %v lets others read it; chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := d.ReadFile(CacheSecretFile, 4096)
	if err != nil {
		return nil, fmt.Errorf("layer cache secret: %w", err)
	}
	if len(data) < minCacheSecret {
		return nil, fmt.Errorf("layer cache secret %s: %d bytes, want %d (remove it to make a new one)", path, len(data), minCacheSecret)
	}
	return data, nil
}
