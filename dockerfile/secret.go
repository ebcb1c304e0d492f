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
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if err := makeCacheSecret(stateDir, path); err != nil {
			return nil, fmt.Errorf("layer cache secret %s: %w", path, err)
		}
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
		return nil, fmt.Errorf("layer cache secret %s: %d bytes, want %d", path, len(data), minCacheSecret)
	}
	return data, nil
}

// makeCacheSecret writes a new secret into a temporary file, then links it into place
// as path, which never replaces a file: of builds that start at once, one secret wins
// and every one reads it whole, and a crash leaves no half-written secret at path.
func makeCacheSecret(dir, path string) error {
	secret := make([]byte, minCacheSecret)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".new-"+CacheSecretFile+"-") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, werr := f.Write(secret)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return err
	}
	if err := os.Link(f.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}
