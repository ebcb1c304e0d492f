package civars

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// gitEnvDrop are variables that would point git at another repository than dir's, as
// they are set inside git hooks (from which crun-ci may well be run).
var gitEnvDrop = []string{
	"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
	"GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX",
	"GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM",
}

// FromGit reads the CI values of dir's git repository with the `git` command, without
// network: Branch, CommitID, CommitMessage, CommitDescription, CommitterName,
// CommitterEmail and RepoName (see the package documentation for each). A repository
// without commits yet gives its branch and repository name only.
//
// When neither dir nor any of its parents holds `.git`, FromGit returns the zero Values
// and no error. When git is not installed the error wraps exec.ErrNotFound; when git
// fails (a damaged repository, or one owned by another user that git refuses to read) the
// error carries git's message.
func FromGit(ctx context.Context, dir string) (Values, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Values{}, fmt.Errorf("read git repository of %q: %w", dir, err)
	}
	found, err := hasGitParent(abs)
	if err != nil {
		return Values{}, fmt.Errorf("read git repository of %q: %w", dir, err)
	}
	if !found {
		return Values{}, nil
	}
	g := &gitCmd{dir: abs}
	if g.path, err = exec.LookPath("git"); err != nil {
		return Values{}, fmt.Errorf("read git repository of %q: %w", dir, err)
	}
	v, err := g.values(ctx)
	if err != nil {
		return Values{}, fmt.Errorf("read git repository of %q: %w", dir, err)
	}
	return v, nil
}

// hasGitParent reports whether dir or a parent holds a `.git` directory or file (a
// worktree or submodule), which is where git looks too.
func hasGitParent(dir string) (bool, error) {
	for {
		_, err := os.Lstat(filepath.Join(dir, ".git"))
		switch {
		case err == nil:
			return true, nil
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission):
			return false, err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return false, nil
		}
		dir = parent
	}
}

type gitCmd struct {
	path, dir string
}

func (g *gitCmd) values(ctx context.Context) (Values, error) {
	var v Values
	top, err := g.output(ctx, "rev-parse", "--show-toplevel")
	if err != nil {
		return Values{}, err
	}
	v.RepoName = filepath.Base(strings.TrimSpace(top))
	// config --get exits with 1 when the key is not set.
	if url, err := g.output(ctx, "config", "--get", "remote.origin.url"); err == nil {
		if name := repoNameFromURL(strings.TrimSpace(url)); name != "" {
			v.RepoName = name
		}
	} else if !exitCode(err, 1) {
		return Values{}, err
	}

	// symbolic-ref --quiet exits with 1 on a detached HEAD.
	branch, err := g.output(ctx, "symbolic-ref", "--quiet", "--short", "HEAD")
	detached := exitCode(err, 1)
	if err != nil && !detached {
		return Values{}, err
	}
	v.Branch = strings.TrimSpace(branch)

	// rev-parse --verify --quiet exits with 1 when HEAD has no commit yet.
	head, err := g.output(ctx, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
	if exitCode(err, 1) {
		return v, nil
	}
	if err != nil {
		return Values{}, err
	}
	v.CommitID = strings.TrimSpace(head)

	if detached {
		tags, err := g.output(ctx, "tag", "--points-at", v.CommitID, "--sort=-version:refname")
		if err != nil {
			return Values{}, err
		}
		v.Branch, _, _ = strings.Cut(tags, "\n")
	}

	show, err := g.output(ctx, "show", "--no-patch", "--no-show-signature", "--no-color",
		"--format=%cn%x00%ce%x00%B", v.CommitID, "--")
	if err != nil {
		return Values{}, err
	}
	fields := strings.SplitN(show, "\x00", 3)
	if len(fields) != 3 {
		return Values{}, fmt.Errorf("git show %s: unexpected output", v.CommitID)
	}
	v.CommitterName, v.CommitterEmail = fields[0], fields[1]
	v.CommitMessage = strings.TrimRight(fields[2], "\n")

	desc, err := g.output(ctx, "describe", "--abbrev=1", "--tags", "--always", v.CommitID)
	if err != nil {
		return Values{}, err
	}
	v.CommitDescription = strings.TrimSpace(desc)
	return v, nil
}

// output runs git with args in g.dir and returns its standard output. Errors name the
// command and carry git's standard error.
func (g *gitCmd) output(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, g.path, append([]string{"-C", g.dir}, args...)...)
	cmd.Env = append(cleanEnv(os.Environ()),
		"LC_ALL=C", "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0", "GIT_PAGER=cat")
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, msg)
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

func cleanEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(gitEnvDrop, name) && name != "LC_ALL" {
			out = append(out, kv)
		}
	}
	return out
}

// exitCode reports whether err is git's exit with the given code.
func exitCode(err error, code int) bool {
	var exit *exec.ExitError
	return errors.As(err, &exit) && exit.ExitCode() == code
}

// repoNameFromURL returns the last path element of a remote URL without ".git":
// "https://host/org/app.git", "git@host:org/app.git", "host:app", "/srv/app/.git" and
// "file:///srv/app/" all give "app".
func repoNameFromURL(url string) string {
	s := strings.TrimRight(url, "/")
	s = strings.TrimSuffix(s, ".git")
	s = strings.TrimRight(s, "/")
	if i := strings.LastIndexAny(s, "/:"); i >= 0 {
		s = s[i+1:]
	}
	return s
}
