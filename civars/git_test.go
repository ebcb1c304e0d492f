package civars

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// repo is a git repository made in a test, with fixed identities and dates.
type repo struct {
	t   *testing.T
	dir string
}

func newRepo(t *testing.T, name string) *repo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	// Keep the user's and the system's git configuration out of the repository.
	t.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	r := &repo{t: t, dir: filepath.Join(t.TempDir(), name)}
	if err := os.Mkdir(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r.git("init", "--quiet", "--initial-branch=main")
	return r
}

func (r *repo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-C", r.dir}, args...)...)
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=Ada Author", "GIT_AUTHOR_EMAIL=ada@example.com",
		"GIT_AUTHOR_DATE=2024-01-02T03:04:05Z",
		"GIT_COMMITTER_NAME=Cy Committer", "GIT_COMMITTER_EMAIL=cy@example.com",
		"GIT_COMMITTER_DATE=2024-01-02T03:04:05Z",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *repo) commit(message string) string {
	r.t.Helper()
	r.git("commit", "--quiet", "--allow-empty", "--cleanup=verbatim", "-m", message)
	return r.git("rev-parse", "HEAD")
}

func fromGit(t *testing.T, dir string) Values {
	t.Helper()
	v, err := FromGit(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestFromGit(t *testing.T) {
	r := newRepo(t, "my-app")
	first := r.commit("First commit")
	r.git("tag", "v1.0.0")
	r.git("checkout", "--quiet", "-b", "feature/login")
	second := r.commit("Add login\n\nWith a body.\n")

	got := fromGit(t, r.dir)
	desc := got.CommitDescription
	got.CommitDescription = ""
	want := Values{
		Branch:         "feature/login",
		CommitID:       second,
		CommitMessage:  "Add login\n\nWith a body.",
		CommitterName:  "Cy Committer",
		CommitterEmail: "cy@example.com",
		RepoName:       "my-app",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FromGit (-want +got):\n%s", diff)
	}
	// git describe: the tag, the number of commits since, "g" and at least 4 hex digits.
	m := regexp.MustCompile(`^v1\.0\.0-1-g([0-9a-f]{4,})$`).FindStringSubmatch(desc)
	if m == nil || !strings.HasPrefix(second, m[1]) {
		t.Errorf("CommitDescription = %q, want v1.0.0-1-g and a prefix of %s", desc, second)
	}

	t.Run("from a subdirectory", func(t *testing.T) {
		sub := filepath.Join(r.dir, "a", "b")
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(got.CommitID, fromGit(t, sub).CommitID); diff != "" {
			t.Errorf("CommitID (-want +got):\n%s", diff)
		}
	})

	t.Run("detached at a tag", func(t *testing.T) {
		r.git("checkout", "--quiet", "--detach", "v1.0.0")
		defer r.git("checkout", "--quiet", "feature/login")
		v := fromGit(t, r.dir)
		if diff := cmp.Diff([]string{"v1.0.0", first, "v1.0.0"}, []string{v.Branch, v.CommitID, v.CommitDescription}); diff != "" {
			t.Errorf("Branch, CommitID, CommitDescription (-want +got):\n%s", diff)
		}
	})

	t.Run("detached at several tags, one annotated", func(t *testing.T) {
		r.git("tag", "-a", "-m", "release", "v1.10.0", first)
		r.git("tag", "latest", first)
		defer r.git("tag", "-d", "v1.10.0", "latest")
		r.git("checkout", "--quiet", "--detach", first)
		defer r.git("checkout", "--quiet", "feature/login")
		if diff := cmp.Diff("v1.10.0", fromGit(t, r.dir).Branch); diff != "" {
			t.Errorf("Branch (-want +got):\n%s", diff)
		}
	})

	t.Run("detached without a tag", func(t *testing.T) {
		r.git("checkout", "--quiet", "--detach", second)
		defer r.git("checkout", "--quiet", "feature/login")
		v := fromGit(t, r.dir)
		if v.Branch != "" || v.CommitID != second {
			t.Errorf("Branch, CommitID = %q, %q; want \"\", %q", v.Branch, v.CommitID, second)
		}
	})

	t.Run("origin names the repository", func(t *testing.T) {
		for _, url := range []string{
			"https://github.com/acme/shop.git",
			"https://user:token@example.com:8443/acme/shop/",
			"git@github.com:acme/shop.git",
			"example.com:shop",
			"/srv/git/shop/.git",
			"file:///srv/git/shop.git/",
		} {
			r.git("remote", "add", "origin", url)
			if diff := cmp.Diff("shop", fromGit(t, r.dir).RepoName); diff != "" {
				t.Errorf("RepoName with origin %q (-want +got):\n%s", url, diff)
			}
			r.git("remote", "remove", "origin")
		}
	})

	t.Run("GIT_DIR of a hook is ignored", func(t *testing.T) {
		other := newRepo(t, "other")
		other.commit("other")
		t.Setenv("GIT_DIR", filepath.Join(other.dir, ".git"))
		t.Setenv("GIT_WORK_TREE", other.dir)
		if diff := cmp.Diff(second, fromGit(t, r.dir).CommitID); diff != "" {
			t.Errorf("CommitID (-want +got):\n%s", diff)
		}
	})
}

func TestFromGitWithoutCommits(t *testing.T) {
	r := newRepo(t, "empty")
	want := Values{Branch: "main", RepoName: "empty"}
	if diff := cmp.Diff(want, fromGit(t, r.dir)); diff != "" {
		t.Errorf("FromGit (-want +got):\n%s", diff)
	}
}

func TestFromGitNotARepository(t *testing.T) {
	dir := t.TempDir()
	if found, err := hasGitParent(dir); err != nil || found {
		t.Skipf("%s is inside a git repository (%v)", dir, err)
	}
	// Without git too: outside a repository, git is not needed.
	t.Setenv("PATH", t.TempDir())
	v, err := FromGit(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Values{}, v); diff != "" {
		t.Errorf("FromGit (-want +got):\n%s", diff)
	}
}

func TestFromGitWithoutGit(t *testing.T) {
	r := newRepo(t, "app")
	r.commit("x")
	t.Setenv("PATH", t.TempDir())
	_, err := FromGit(context.Background(), r.dir)
	if !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("FromGit without git = %v, want exec.ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), `read git repository of "`+r.dir+`"`) {
		t.Errorf("error %q does not name the directory", err)
	}
}

func TestFromGitBrokenRepository(t *testing.T) {
	r := newRepo(t, "app")
	r.commit("x")
	if err := os.WriteFile(filepath.Join(r.dir, ".git", "HEAD"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := FromGit(context.Background(), r.dir)
	if err == nil {
		t.Fatal("FromGit of a broken repository succeeded")
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Errorf("error %v does not wrap git's exit", err)
	}
}

func TestFromGitCancelled(t *testing.T) {
	r := newRepo(t, "app")
	r.commit("x")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := FromGit(ctx, r.dir); !errors.Is(err, context.Canceled) {
		t.Errorf("FromGit with a cancelled context = %v, want context.Canceled", err)
	}
}
