package secrets

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/crun-ci/crun-ci/hostfs"
)

// KeyFileName is the key file of a build directory.
const KeyFileName = "codeship.aes"

// maxKeyFile bounds a key file: a key is 44 bytes of base64.
const maxKeyFile = 64 << 10

// KeyPath is the key file of the build directory dir, unless path names another.
func KeyPath(dir, path string) string {
	if path != "" {
		return path
	}
	return filepath.Join(dir, KeyFileName)
}

// FindKey returns the build's key: the one whose base64 text is given (a CI host's
// $CRUNCI_AES_KEY, named envName in messages), else the key file at path. With neither
// it returns nil and says where it looked, for the error of a pipeline that needs a key;
// a key that is there but bad is an error.
//
// The key file is read as a pipeline may have written it (codeship.aes of the build
// directory): a regular file in its directory, not a symlink out of it, a FIFO or a
// device, of at most 64 KiB.
func FindKey(text, envName, path string) (*Key, string, error) {
	if text != "" {
		key, err := ParseKey([]byte(text))
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", envName, err)
		}
		return &key, envName, nil
	}
	d, err := hostfs.Open(filepath.Dir(path), hostfs.Beneath, "its directory")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Sprintf("no key file %s and %s is not set", path, envName), nil
		}
		return nil, "", fmt.Errorf("read key: %w", err)
	}
	defer d.Close()
	data, err := d.ReadFile(filepath.Base(path), maxKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Sprintf("no key file %s and %s is not set", path, envName), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read key: %w", err)
	}
	key, err := ParseKey(data)
	if err != nil {
		return nil, "", fmt.Errorf("key file %s: %w", path, err)
	}
	return &key, path, nil
}

// WriteKeyFile writes key to a new file at path, mode 0600; it never replaces a file
// (an error satisfying errors.Is(err, fs.ErrExist)).
func WriteKeyFile(path string, key Key) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, key.Base64()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
