package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/spf13/pflag"

	"github.com/crun-ci/crun-ci/civars"
	"github.com/crun-ci/crun-ci/hostfs"
	"github.com/crun-ci/crun-ci/secrets"
)

// keyEnv may hold the key's base64 instead of a key file, for CI hosts.
const keyEnv = "CRUNCI_AES_KEY"

// keyFlags say where the key of encrypted files is.
type keyFlags struct {
	path string
}

func (k *keyFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&k.path, "key-path", "", "key file of encrypted files (default: codeship.aes in the build directory; env "+keyEnv+" may hold the key's base64 instead)")
}

// file is the key file: --key-path, else codeship.aes in dir.
func (k *keyFlags) file(dir string) string {
	if k.path != "" {
		return k.path
	}
	return filepath.Join(dir, "codeship.aes")
}

// load returns the key from $CRUNCI_AES_KEY or the key file, and nil (with where it was
// looked for) when there is none. A key that is there but bad is an error.
func (k *keyFlags) load(dir string) (*secrets.Key, string, error) {
	if text := os.Getenv(keyEnv); text != "" {
		key, err := secrets.ParseKey([]byte(text))
		if err != nil {
			return nil, "", &exitError{code: 2, err: fmt.Errorf("%s: %w", keyEnv, err)}
		}
		return &key, keyEnv, nil
	}
	path := k.file(dir)
	data, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Sprintf("no key file %s and %s is not set", path, keyEnv), nil
	}
	if err != nil {
		return nil, "", &exitError{code: 2, err: fmt.Errorf("read key: %w", err)}
	}
	key, err := secrets.ParseKey(data)
	if err != nil {
		return nil, "", &exitError{code: 2, err: fmt.Errorf("key file %s: %w", path, err)}
	}
	return &key, path, nil
}

// maxKeyFile bounds a key file: a key is 44 bytes of base64.
const maxKeyFile = 64 << 10

// readKeyFile reads the key file at path: a regular file in its directory (codeship.aes
// of the build directory, which a pipeline could have replaced), not a symlink out of it,
// a FIFO or a device, of at most maxKeyFile bytes.
func readKeyFile(path string) ([]byte, error) {
	d, err := hostfs.Open(filepath.Dir(path), hostfs.Beneath, "its directory")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadFile(filepath.Base(path), maxKeyFile)
}

// runCrypt is `crun-ci encrypt IN OUT` and `crun-ci decrypt IN OUT`.
func runCrypt(ctx context.Context, g globals, encrypt bool, args []string, stdout, stderr io.Writer) error {
	name := "decrypt"
	if encrypt {
		name = "encrypt"
	}
	var k keyFlags
	var dir string
	fs := commandFlags(name, &g, stderr, " IN OUT")
	fs.StringVar(&dir, "dir", ".", "build directory (where codeship.aes is looked for)")
	k.add(fs)
	if err := parse(fs, &g, args, stderr); err != nil {
		return quietHelp(err)
	}
	if fs.NArg() != 2 {
		return usageError("%s: want IN and OUT, got %d arguments", name, fs.NArg())
	}
	in, out := fs.Arg(0), fs.Arg(1)
	key, where, err := k.load(dir)
	if err != nil {
		return err
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
	var k keyFlags
	var dir string
	fs := commandFlags("generate", &g, stderr, "")
	fs.StringVar(&dir, "dir", ".", "build directory (where codeship.aes is written)")
	k.add(fs)
	if err := parse(fs, &g, args, stderr); err != nil {
		return quietHelp(err)
	}
	if fs.NArg() != 0 {
		return usageError("generate takes no arguments, got %q", fs.Args())
	}
	key, err := secrets.GenerateKey()
	if err != nil {
		return err
	}
	path := k.file(dir)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		return &exitError{code: 2, err: fmt.Errorf("generate: %s exists; crun-ci never overwrites a key", path)}
	}
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	if _, err := fmt.Fprintln(f, key.Base64()); err != nil {
		f.Close()
		return fmt.Errorf("generate: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	fmt.Fprintf(stdout, "wrote a new key to %s\n", path)
	return nil
}

// ciFlags are the --ci-* flags.
type ciFlags map[string]*string

func (c ciFlags) add(fs *pflag.FlagSet) {
	for _, name := range civars.FlagNames() {
		c[name] = fs.String("ci-"+name, "", "CI_"+envName(name)+" for the containers (default: from the build directory's git repository)")
	}
}

func envName(flag string) string {
	out := []byte(flag)
	for i, c := range out {
		switch {
		case c == '-':
			out[i] = '_'
		case c >= 'a' && c <= 'z':
			out[i] = c - 'a' + 'A'
		}
	}
	return string(out)
}

// values are the build's CI variables: the git repository's, then the flags'.
func (c ciFlags) values(ctx context.Context, dir, buildID, tag string) (civars.Values, error) {
	v, err := civars.FromGit(ctx, dir)
	if err != nil {
		log.G(ctx).WithError(err).Warn("could not read the git repository of the build directory; CI_* variables from git are empty")
		v = civars.Values{}
	}
	flags := map[string]string{}
	for name, p := range c {
		flags[name] = *p
	}
	if flags["branch"] == "" && tag != "" {
		flags["branch"] = tag // the build's tag is what CI_BRANCH names, unless --ci-branch says otherwise
	}
	if err := v.Override(flags); err != nil {
		return civars.Values{}, usageError("%w", err)
	}
	v.BuildID = buildID
	v.Time = time.Now()
	return v, nil
}

// execEnv is `crun-ci exec-env FIFO -- COMMAND [ARGS…]`, run inside a container as its
// process: it reads the secret variables from the hand-off FIFO, adds them to its
// environment and becomes COMMAND. Not for people: steps set it up (see
// secrets.EncodeEnv).
func execEnv(args []string, stderr io.Writer) error {
	if len(args) < 3 || args[1] != "--" {
		return usageError("exec-env: want FIFO -- COMMAND [ARGS…]")
	}
	env, err := secrets.ReadEnvFile(args[0])
	if err != nil {
		return err
	}
	environ := os.Environ()
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		environ = slices.DeleteFunc(environ, func(x string) bool { return strings.HasPrefix(x, k+"=") })
		environ = append(environ, e)
	}
	path := args[2]
	if !strings.Contains(path, "/") {
		if path, err = exec.LookPath(path); err != nil {
			fmt.Fprintf(stderr, "%s: not found\n", args[2])
			return &exitError{code: 127, err: fmt.Errorf("%w: not found", errReported)}
		}
	}
	err = syscall.Exec(path, args[2:], environ)
	fmt.Fprintf(stderr, "%s: %v\n", args[2], err)
	return &exitError{code: 126, err: fmt.Errorf("%w: exec failed", errReported)}
}
