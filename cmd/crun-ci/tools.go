package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/crun-ci/crun-ci/secrets"
	"github.com/crun-ci/crun-ci/session"
)

func runValidate(ctx context.Context, c *cli, args []string) error {
	var b buildFlags
	fs := c.flags("validate", "")
	b.addProject(fs, true)
	addKeyPath(fs, &b.keyPath)
	b.checkFiles = true
	if ok, err := c.parse(fs, args); !ok || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("validate takes no arguments, got %q", fs.Args())
	}
	proj, _, err := b.load(c.stderr, true, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s and %s are valid: %d services, %d steps\n", rel(proj.Dir, proj.ServicesFile), rel(proj.Dir, proj.StepsFile), len(proj.Services), proj.StepCount())
	return nil
}

// rel is p relative to dir when it is inside it.
func rel(dir, p string) string {
	if r, err := filepath.Rel(dir, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

func runImport(ctx context.Context, c *cli, args []string) (retErr error) {
	fs := c.flags("import", " FILE…")
	if ok, err := c.parse(fs, args); !ok || err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError("import: no archive given")
	}
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, s.Close()) }()
	for _, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("import %s: %w", name, err)}
		}
		names, err := s.Import(ctx, f)
		f.Close()
		if err == nil && len(names) == 0 {
			err = errors.New("the archive holds no named image")
		}
		if err != nil {
			return fmt.Errorf("import %s: %w", name, err)
		}
		fmt.Fprintln(c.stdout, strings.Join(names, "\n"))
	}
	return nil
}

func runCleanup(ctx context.Context, c *cli, args []string) (retErr error) {
	fs := c.flags("cleanup", "")
	dryRun := fs.Bool("dry-run", false, "list what would be removed, remove nothing")
	layerCache := fs.Bool("layer-cache", false, "also empty the layer cache of built images")
	rules := fs.Bool("network", false, "also remove the iptables rules of the step networks (which builds keep for the next), when no build runs")
	if ok, err := c.parse(fs, args); !ok || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("cleanup takes no arguments, got %q", fs.Args())
	}
	o, err := c.options()
	if err != nil {
		return err
	}
	o.KeepLeftovers = true // cleaned up here, and said on stdout
	s, err := open(ctx, o)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, s.Close()) }()
	return s.Tidy(ctx, *dryRun, *layerCache, *rules, c.stdout)
}

// open opens a session of the global flags.
func (c *cli) open(ctx context.Context) (*session.Session, error) {
	o, err := c.options()
	if err != nil {
		return nil, err
	}
	return open(ctx, o)
}

// addKeyPath adds --key-path, the key file of every command that uses the key.
func addKeyPath(fs *pflag.FlagSet, path *string) {
	fs.StringVar(path, "key-path", "", "key file of encrypted files (default: codeship.aes in the build directory; env "+session.KeyEnv+" may hold the key's base64 instead)")
}

// keyFlags are where the commands of the key look for it.
func keyFlags(fs *pflag.FlagSet, what string) (dir, path *string) {
	dir, path = new(string), new(string)
	fs.StringVar(dir, "dir", ".", "build directory (where codeship.aes is "+what+")")
	addKeyPath(fs, path)
	return dir, path
}

// runCrypt is `crun-ci encrypt IN OUT` or `crun-ci decrypt IN OUT`.
func runCrypt(encrypt bool) func(context.Context, *cli, []string) error {
	name, crypt := "decrypt", secrets.Decrypt
	if encrypt {
		name, crypt = "encrypt", secrets.Encrypt
	}
	return func(ctx context.Context, c *cli, args []string) error {
		fs := c.flags(name, " IN OUT")
		dir, path := keyFlags(fs, "looked for")
		if ok, err := c.parse(fs, args); !ok || err != nil {
			return err
		}
		if fs.NArg() != 2 {
			return usageError("%s: want IN and OUT, got %d arguments", name, fs.NArg())
		}
		in, out := fs.Arg(0), fs.Arg(1)
		key, where, err := secrets.FindKey(os.Getenv(session.KeyEnv), session.KeyEnv, secrets.KeyPath(*dir, *path))
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
		result, err := crypt(*key, data)
		if err != nil {
			return fmt.Errorf("%s %s: %w", name, in, err)
		}
		// Decrypted files hold secrets: readable by their owner only.
		if err := os.WriteFile(out, result, 0o600); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
}

// runGenerate is `crun-ci generate`: a new key file, never over an existing one.
func runGenerate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("generate", "")
	dir, path := keyFlags(fs, "written")
	if ok, err := c.parse(fs, args); !ok || err != nil {
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
	fmt.Fprintf(c.stdout, "wrote a new key to %s\n", file)
	return nil
}

// execEnv is `crun-ci exec-env FIFO -- COMMAND [ARGS…]`, run inside a container as its
// process (see secrets.ExecEnv). Not for people.
func execEnv(args []string, stderr io.Writer) error {
	err := secrets.ExecEnv(args)
	if ee := (*secrets.ExecError)(nil); errors.As(err, &ee) {
		if ee.Code == 2 {
			return usageError("%v", ee.Err)
		}
		fmt.Fprintln(stderr, ee.Error())
		return &exitError{code: ee.Code, err: fmt.Errorf("%w: %v", errReported, ee)}
	}
	return err
}
