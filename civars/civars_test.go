package civars

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var full = Values{
	Branch:            "main",
	CommitID:          "0123456789abcdef0123456789abcdef01234567",
	CommitMessage:     "Fix it\n\nReally.",
	CommitDescription: "v1.0.0-3-g0123",
	CommitterName:     "Cy Committer",
	CommitterEmail:    "cy@example.com",
	CommitterUsername: "cy",
	RepoName:          "shop",
	ProjectID:         "p-1",
	BuildID:           "b-42",
	PRNumber:          "7",
	PullRequest:       "true",
	Time:              time.Date(2017, 10, 13, 12, 14, 23, 500, time.FixedZone("CEST", 2*60*60)),
}

func TestEnv(t *testing.T) {
	tests := []struct {
		name   string
		values Values
		want   []string
	}{
		{"every value", full, []string{
			"CI=true",
			"CI_NAME=codeship",
			"CI_BUILD_ID=b-42",
			"CI_TIMESTAMP=1507889663",
			"CI_STRING_TIME=2017-10-13T10:14:23+00:00",
			"CI_BRANCH=main",
			"CI_COMMIT_ID=0123456789abcdef0123456789abcdef01234567",
			"CI_COMMIT_MESSAGE=Fix it\n\nReally.",
			"CI_COMMIT_DESCRIPTION=v1.0.0-3-g0123",
			"CI_COMMITTER_NAME=Cy Committer",
			"CI_COMMITTER_EMAIL=cy@example.com",
			"CI_COMMITTER_USERNAME=cy",
			"CI_REPO_NAME=shop",
			"CI_PROJECT_ID=p-1",
			"CI_PR_NUMBER=7",
			"CI_PULL_REQUEST=true",
		}},
		{"no values", Values{}, []string{
			"CI=true",
			"CI_NAME=codeship",
			"CI_BUILD_ID=",
			"CI_TIMESTAMP=",
			"CI_STRING_TIME=",
			"CI_BRANCH=",
			"CI_COMMIT_ID=",
			"CI_COMMIT_MESSAGE=",
			"CI_COMMIT_DESCRIPTION=",
			"CI_COMMITTER_NAME=",
			"CI_COMMITTER_EMAIL=",
			"CI_COMMITTER_USERNAME=",
			"CI_REPO_NAME=",
			"CI_PROJECT_ID=",
			"CI_PR_NUMBER=",
			"CI_PULL_REQUEST=false",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.values.Env()); diff != "" {
				t.Errorf("Env (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOverride(t *testing.T) {
	fromGit := Values{Branch: "main", CommitID: "abc", RepoName: "shop", CommitterName: "Cy"}
	tests := []struct {
		name    string
		flags   map[string]string
		want    Values
		wantErr string
	}{
		{"no flags", nil, fromGit, ""},
		{"set flags win", map[string]string{"branch": "release", "commit-id": "def", "build-id": "9"},
			Values{Branch: "release", CommitID: "def", RepoName: "shop", CommitterName: "Cy", BuildID: "9"}, ""},
		{"empty flags keep git's values", map[string]string{"branch": "", "repo-name": "", "project-id": "p"},
			Values{Branch: "main", CommitID: "abc", RepoName: "shop", CommitterName: "Cy", ProjectID: "p"}, ""},
		{"every flag", map[string]string{
			"branch": "b", "build-id": "bi", "commit-id": "ci", "commit-message": "cm",
			"commit-description": "cd", "committer-name": "cn", "committer-email": "ce",
			"committer-username": "cu", "project-id": "pi", "repo-name": "rn",
			"pr-number": "7", "pull-request": "true",
		}, Values{
			Branch: "b", BuildID: "bi", CommitID: "ci", CommitMessage: "cm",
			CommitDescription: "cd", CommitterName: "cn", CommitterEmail: "ce",
			CommitterUsername: "cu", ProjectID: "pi", RepoName: "rn",
			PRNumber: "7", PullRequest: "true",
		}, ""},
		{"unknown names change nothing", map[string]string{"branch": "x", "brnach": "y", "--ci-tag": "z"}, fromGit,
			`unknown CI flag "--ci---ci-tag" (known: --ci-branch, --ci-build-id, --ci-commit-description, --ci-commit-id, --ci-commit-message, --ci-committer-email, --ci-committer-name, --ci-committer-username, --ci-name, --ci-pr-number, --ci-project-id, --ci-pull-request, --ci-repo-name)` + "\n" +
				`unknown CI flag "--ci-brnach" (known: --ci-branch, --ci-build-id, --ci-commit-description, --ci-commit-id, --ci-commit-message, --ci-committer-email, --ci-committer-name, --ci-committer-username, --ci-name, --ci-pr-number, --ci-project-id, --ci-pull-request, --ci-repo-name)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fromGit
			err := got.Override(tt.flags)
			if diff := cmp.Diff(tt.wantErr, errText(err)); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Values (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTemplateDataExpand(t *testing.T) {
	data := TemplateData{Values: full, StepName: "push", ServiceName: "app", ImageName: "acme/app"}
	tests := []struct {
		name, text, want, wantErr string
	}{
		{"plain text", "latest", "latest", ""},
		{"Codeship's example", "{{ .CiName }}-{{ .Branch }}", "codeship-main", ""},
		{"every value", strings.Join([]string{
			"{{ .Branch }}", "{{ .CommitID }}", "{{ .CommitMessage }}", "{{ .CommitDescription }}",
			"{{ .CommitterName }}", "{{ .CommitterEmail }}", "{{ .CommitterUsername }}",
			"{{ .RepoName }}", "{{ .ProjectID }}", "{{ .BuildID }}", "{{ .Timestamp }}",
			"{{ .StringTime }}", "{{ .Time.UTC.Year }}", "{{ .Ci }}", "{{ .CiName }}",
			"{{ .StepName }}", "{{ .ServiceName }}", "{{ .ImageName }}", "{{ .PRNumber }}", "{{ .PullRequest }}",
		}, "|"), strings.Join([]string{
			"main", "0123456789abcdef0123456789abcdef01234567", "Fix it\n\nReally.", "v1.0.0-3-g0123",
			"Cy Committer", "cy@example.com", "cy", "shop", "p-1", "b-42", "1507889663",
			"2017-10-13T10:14:23+00:00", "2017", "true", "codeship", "push", "app", "acme/app", "7", "true",
		}, "|"), ""},
		{"Go template functions", `{{ printf "%.7s" .CommitID }}-{{ .BuildID }}`, "0123456-b-42", ""},
		{"an unknown name", "{{ .Commit }}", "", `template "{{ .Commit }}": template: :1:3: executing "" at <.Commit>: can't evaluate field Commit in type civars.TemplateData`},
		{"a syntax error", "{{ .Branch", "", `template "{{ .Branch": template: :1: unclosed action`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := data.Expand(tt.text)
			if diff := cmp.Diff(tt.wantErr, errText(err)); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Expand (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRepoNameFromURL(t *testing.T) {
	for url, want := range map[string]string{
		"https://github.com/acme/shop.git": "shop",
		"https://github.com/acme/shop":     "shop",
		"git@github.com:acme/shop.git":     "shop",
		"ssh://git@host:22/acme/shop.git/": "shop",
		"host:shop.git":                    "shop",
		"../shop":                          "shop",
		"/srv/shop/.git":                   "shop",
		"shop":                             "shop",
		"/":                                "",
		"":                                 "",
	} {
		if got := repoNameFromURL(url); got != want {
			t.Errorf("repoNameFromURL(%q) = %q, want %q", url, got, want)
		}
	}
}

// errText is err's message, or "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// --ci-name replaces CI_NAME and {{ .CiName }}; without it they are Codeship's.
func TestCIName(t *testing.T) {
	var v Values
	if v.CiName() != "codeship" || !slices.Contains(v.Env(), "CI_NAME=codeship") {
		t.Errorf("default CI_NAME: %q, %q", v.CiName(), v.Env())
	}
	if err := v.Override(map[string]string{"name": "jenkins"}); err != nil {
		t.Fatal(err)
	}
	if v.CiName() != "jenkins" || !slices.Contains(v.Env(), "CI_NAME=jenkins") {
		t.Errorf("--ci-name jenkins: %q, %q", v.CiName(), v.Env())
	}
}

func TestCheckTemplate(t *testing.T) {
	if err := CheckTemplate("{{ .Branch }}-{{ .CommitID }}-{{ .ServiceName }}"); err != nil {
		t.Errorf("a good template: %v", err)
	}
	err := CheckTemplate("{{ .Brnch }}")
	if err == nil || !strings.Contains(err.Error(), `template "{{ .Brnch }}": unknown name .Brnch (known: .Branch, .BuildID, .Ci, .CiName, .CommitDescription,`) {
		t.Errorf("an unknown name: %v", err)
	}
	if err := CheckTemplate("{{ .Branch "); err == nil || !strings.Contains(err.Error(), "unclosed action") {
		t.Errorf("a syntax error: %v", err)
	}
}

// --ci-build-id wins over the build's own id; without it, CI_BUILD_ID is that id.
func TestResolveBuildID(t *testing.T) {
	dir := t.TempDir() // not a git repository: empty git values, a warning
	for _, tc := range []struct{ flag, want string }{{"", "own-id"}, {"pipeline-77", "pipeline-77"}} {
		v, err := Resolve(context.Background(), dir, map[string]string{"build-id": tc.flag}, "own-id", "")
		if err != nil {
			t.Fatal(err)
		}
		if v.BuildID != tc.want {
			t.Errorf("--ci-build-id %q: CI_BUILD_ID %q, want %q", tc.flag, v.BuildID, tc.want)
		}
	}
}
