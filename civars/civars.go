package civars

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/containerd/log"
)

// Name is the value of CI_NAME and of the template's .CiName unless --ci-name changes
// it: Codeship's, which scripts and image tags ({{ .CiName }}-{{ .Branch }}) test.
const Name = "codeship"

// StringTimeLayout is the layout of CI_STRING_TIME, applied to the build time in UTC.
const StringTimeLayout = "2006-01-02T15:04:05-07:00"

// Values are the CI variables of a build, named as in Codeship's templates. The zero
// Values is a build outside any repository with no flags given.
type Values struct {
	Branch            string // CI_BRANCH: the branch, or the tag at a detached HEAD
	CommitID          string // CI_COMMIT_ID: the full commit hash
	CommitMessage     string // CI_COMMIT_MESSAGE: subject and body, without trailing newlines
	CommitDescription string // CI_COMMIT_DESCRIPTION: git describe --abbrev=1 --tags --always
	CommitterName     string // CI_COMMITTER_NAME
	CommitterEmail    string // CI_COMMITTER_EMAIL
	CommitterUsername string // CI_COMMITTER_USERNAME: only from --ci-committer-username
	RepoName          string // CI_REPO_NAME
	ProjectID         string // CI_PROJECT_ID: only from --ci-project-id
	BuildID           string // CI_BUILD_ID: set by the caller, or --ci-build-id
	PRNumber          string // CI_PR_NUMBER: only from --ci-pr-number
	PullRequest       string // CI_PULL_REQUEST: only from --ci-pull-request; empty means "false"
	Name              string // CI_NAME: only from --ci-name; empty means [Name]

	// Time is when the build started; the caller sets it. CI_TIMESTAMP and
	// CI_STRING_TIME are empty while it is zero.
	Time time.Time
}

// Timestamp is the build time in Unix seconds (CI_TIMESTAMP, {{ .Timestamp }}), or ""
// when Time is zero.
func (v Values) Timestamp() string {
	if v.Time.IsZero() {
		return ""
	}
	return strconv.FormatInt(v.Time.Unix(), 10)
}

// StringTime is the build time in UTC formatted with [StringTimeLayout]
// (CI_STRING_TIME, {{ .StringTime }}), or "" when Time is zero.
func (v Values) StringTime() string {
	if v.Time.IsZero() {
		return ""
	}
	return v.Time.UTC().Format(StringTimeLayout)
}

// Ci is "true", for Codeship's {{ .Ci }}.
func (Values) Ci() string { return "true" }

// CiName is CI_NAME, for Codeship's {{ .CiName }}: [Name] unless --ci-name says
// otherwise.
func (v Values) CiName() string {
	if v.Name != "" {
		return v.Name
	}
	return Name
}

// Env returns the CI variables as KEY=VALUE, always all of them and in this order: CI,
// CI_NAME, CI_BUILD_ID, CI_TIMESTAMP, CI_STRING_TIME, CI_BRANCH, CI_COMMIT_ID,
// CI_COMMIT_MESSAGE, CI_COMMIT_DESCRIPTION, CI_COMMITTER_NAME, CI_COMMITTER_EMAIL,
// CI_COMMITTER_USERNAME, CI_REPO_NAME, CI_PROJECT_ID, CI_PR_NUMBER, CI_PULL_REQUEST.
func (v Values) Env() []string {
	pr := v.PullRequest
	if pr == "" {
		pr = "false"
	}
	return []string{
		"CI=true",
		"CI_NAME=" + v.CiName(),
		"CI_BUILD_ID=" + v.BuildID,
		"CI_TIMESTAMP=" + v.Timestamp(),
		"CI_STRING_TIME=" + v.StringTime(),
		"CI_BRANCH=" + v.Branch,
		"CI_COMMIT_ID=" + v.CommitID,
		"CI_COMMIT_MESSAGE=" + v.CommitMessage,
		"CI_COMMIT_DESCRIPTION=" + v.CommitDescription,
		"CI_COMMITTER_NAME=" + v.CommitterName,
		"CI_COMMITTER_EMAIL=" + v.CommitterEmail,
		"CI_COMMITTER_USERNAME=" + v.CommitterUsername,
		"CI_REPO_NAME=" + v.RepoName,
		"CI_PROJECT_ID=" + v.ProjectID,
		"CI_PR_NUMBER=" + v.PRNumber,
		"CI_PULL_REQUEST=" + pr,
	}
}

// flagFields maps the names of the --ci-* flags, without "--ci-", to their values.
// The first ten are jet's; pr-number, pull-request and name are crun-ci's.
var flagFields = map[string]func(*Values) *string{
	"branch":             func(v *Values) *string { return &v.Branch },
	"build-id":           func(v *Values) *string { return &v.BuildID },
	"commit-id":          func(v *Values) *string { return &v.CommitID },
	"commit-message":     func(v *Values) *string { return &v.CommitMessage },
	"commit-description": func(v *Values) *string { return &v.CommitDescription },
	"committer-name":     func(v *Values) *string { return &v.CommitterName },
	"committer-email":    func(v *Values) *string { return &v.CommitterEmail },
	"committer-username": func(v *Values) *string { return &v.CommitterUsername },
	"project-id":         func(v *Values) *string { return &v.ProjectID },
	"repo-name":          func(v *Values) *string { return &v.RepoName },
	"pr-number":          func(v *Values) *string { return &v.PRNumber },
	"pull-request":       func(v *Values) *string { return &v.PullRequest },
	"name":               func(v *Values) *string { return &v.Name },
}

// FlagNames returns the names Override accepts, sorted: the --ci-* flags without "--ci-".
func FlagNames() []string {
	names := make([]string, 0, len(flagFields))
	for name := range flagFields {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Override sets the values given by --ci-* flags: flags maps a flag's name without
// "--ci-" ("branch", "commit-id", …, see [FlagNames]) to its value. Empty values are
// ignored, so an unset flag keeps what git said. An unknown name is an error, and then
// nothing is changed.
func (v *Values) Override(flags map[string]string) error {
	var unknown []string
	for name := range flags {
		if _, ok := flagFields[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		errs := make([]error, len(unknown))
		for i, name := range unknown {
			errs[i] = fmt.Errorf("unknown CI flag %q (known: --ci-%s)", "--ci-"+name, strings.Join(FlagNames(), ", --ci-"))
		}
		return errors.Join(errs...)
	}
	for name, value := range flags {
		if value != "" {
			*flagFields[name](v) = value
		}
	}
	return nil
}

// TemplateData is what the Go templates of `build.args` and push steps' `image_tag` see:
// every field and method of [Values] ({{ .Branch }}, {{ .CommitID }}, {{ .CommitMessage }},
// {{ .CommitDescription }}, {{ .CommitterName }}, {{ .CommitterEmail }},
// {{ .CommitterUsername }}, {{ .RepoName }}, {{ .ProjectID }}, {{ .BuildID }},
// {{ .Time }}, {{ .Timestamp }}, {{ .StringTime }}, {{ .Ci }}, {{ .CiName }}, and
// crun-ci's {{ .PRNumber }} and {{ .PullRequest }}), and, in push steps, the step's,
// service's and image's names.
type TemplateData struct {
	Values
	StepName    string
	ServiceName string
	ImageName   string
}

// Expand executes text as a Go template on d. A name that d lacks ({{ .Nope }}) is an
// error, not an empty string. Expand does not strip characters that are invalid in an
// image tag; that is the caller's job.
func (d TemplateData) Expand(text string) (string, error) {
	t, err := template.New("").Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("template %q: %w", text, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("template %q: %w", text, err)
	}
	return b.String(), nil
}

// CheckTemplate reports what keeps text from expanding for any build: a syntax error, or
// a name that TemplateData lacks, said with the names it has.
func CheckTemplate(text string) error {
	_, err := TemplateData{}.Expand(text)
	if err == nil {
		return nil
	}
	if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("template %q: unknown name .%s (known: %s)", text, m[1], strings.Join(TemplateNames(), ", "))
	}
	return err
}

var unknownField = regexp.MustCompile(`can't evaluate field (\w+) in type`)

// TemplateNames are the names a template may use, sorted: .Branch, .BuildID, ….
func TemplateNames() []string {
	var names []string
	t := reflect.TypeOf(TemplateData{})
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); !f.Anonymous {
			names = append(names, "."+f.Name)
		}
	}
	v := reflect.TypeOf(Values{})
	for i := 0; i < v.NumField(); i++ {
		if n := v.Field(i).Name; n != "Name" { // .CiName says it
			names = append(names, "."+n)
		}
	}
	for i := 0; i < t.NumMethod(); i++ {
		if m := t.Method(i); m.Name != "Expand" && m.Name != "Env" {
			names = append(names, "."+m.Name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Resolve returns a build's CI values: its git repository's (FromGit; a repository that
// cannot be read gives empty values and a warning on the context's logger), then the
// --ci-* flags' (see Override), the build id and the time now. tag, when not empty, is
// CI_BRANCH unless the branch flag says otherwise: the build's tag is what jet named so.
func Resolve(ctx context.Context, dir string, flags map[string]string, buildID, tag string) (Values, error) {
	v, err := FromGit(ctx, dir)
	if err != nil {
		log.G(ctx).WithError(err).Warn("could not read the git repository of the build directory; CI_* variables from git are empty")
		v = Values{}
	}
	flags = maps.Clone(flags)
	if flags == nil {
		flags = map[string]string{}
	}
	if flags["branch"] == "" && tag != "" {
		flags["branch"] = tag
	}
	if err := v.Override(flags); err != nil {
		return Values{}, err
	}
	if v.BuildID == "" {
		v.BuildID = buildID // no --ci-build-id: crun-ci's own id of the build
	}
	v.Time = time.Now()
	return v, nil
}
