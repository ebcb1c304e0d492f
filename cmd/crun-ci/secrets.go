package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/crun-ci/crun-ci/secrets"
)

// keyFlags are where the commands of the key look for it.
func keyFlags(fs *pflag.FlagSet, what string) (dir, path *string) {
	dir, path = new(string), new(string)
	fs.StringVar(dir, "dir", ".", "build directory (where codeship.aes is "+what+")")
	addKeyPath(fs, path)
	return dir, path
}

// addKeyPath adds --key-path, the key file of every command that uses the key.
func addKeyPath(fs *pflag.FlagSet, path *string) {
	fs.StringVar(path, "key-path", "", "key file of encrypted files (default: codeship.aes in the build directory; env "+keyEnv+" may hold the key's base64 instead)")
}

// runCrypt is `crun-ci encrypt IN OUT` and `crun-ci decrypt IN OUT`.
func runCrypt(ctx context.Context, g globals, encrypt bool, args []string, stdout, stderr io.Writer) error {
	name := "decrypt"
	if encrypt {
		name = "encrypt"
	}
	fs := commandFlags(name, &g, stderr, " IN OUT")
	dir, path := keyFlags(fs, "looked for")
	if ok, err := parse(fs, &g, args, stderr); !ok || err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageError("%s: want IN and OUT, got %d arguments", name, fs.NArg())
	}
	in, out := fs.Arg(0), fs.Arg(1)
	key, where, err := secrets.FindKey(os.Getenv(keyEnv), keyEnv, secrets.KeyPath(*dir, *path))
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if key == nil {
		return &exitError{code: 2, err: fmt.Errorf("%s: no key: %s (make one with crun-ci generate)", name, where)}
	}
	data, err := os.ReadFile(in)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("%s: %w", name, err)}
	}
	var result []byte
	if encrypt {
		result, err = secrets.Encrypt(*key, data)
	} else {
		result, err = secrets.Decrypt(*key, data)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, in, err)
	}
	// Decrypted files hold secrets: readable by their owner only.
	if err := os.WriteFile(out, result, 0o600); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// runGenerate is `crun-ci generate`: a new key file, never over an existing one.
func runGenerate(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	fs := commandFlags("generate", &g, stderr, "")
	dir, path := keyFlags(fs, "written")
	if ok, err := parse(fs, &g, args, stderr); !ok || err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("generate takes no arguments, got %q", fs.Args())
	}
	key, err := secrets.GenerateKey()
	if err != nil {
		return err
	}
	file := secrets.KeyPath(*dir, *path)
	if err := secrets.WriteKeyFile(file, key); err != nil {
		if errors.Is(err, os.ErrExist) {
			return &exitError{code: 2, err: fmt.Errorf("generate: %s exists; crun-ci never overwrites a key", file)}
		}
		return fmt.Errorf("generate: %w", err)
	}
	fmt.Fprintf(stdout, "wrote a new key to %s\n", file)
	return nil
}
