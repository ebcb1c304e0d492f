// Package civars computes the CI variables of a build: the `CI_*` environment every step
// container gets, and the data of the Go templates in `build.args` and push steps'
// `image_tag`.
//
// # Words
//
//   - The values ([Values]) describe one build: its branch (or tag), commit, committer,
//     repository, project, build id and start time. Their names are Codeship's:
//     `{{ .Branch }}` in a template is `CI_BRANCH` in a container.
//   - [FromGit] fills the values it can from the build directory's git repository, with the
//     `git` command and without network: branch, commit id, message and description,
//     committer name and email, repository name. The caller sets the build id and time.
//   - The `--ci-*` flags of `crun-ci steps` override single values ([Values.Override]); a
//     flag that is set wins over git.
//   - [Values.Env] turns the values into `CI_*` variables for a container, and
//     [TemplateData] is what `build.args` and `image_tag` templates see.
//
// # Defaults
//
//   - Outside a git repository every value from git is empty; that is not an error.
//   - `CI_BRANCH` is the checked-out branch; on a detached HEAD it is the tag at HEAD (the
//     highest in version order when several tags point there), else empty.
//   - `CI_COMMIT_DESCRIPTION` is `git describe --abbrev=1 --tags --always` (git never
//     abbreviates to fewer than 4 hex digits).
//   - `CI_REPO_NAME` is the last path element of the `origin` remote's URL without `.git`,
//     or, without an origin, the base name of the repository's top-level directory.
//   - `CI_COMMITTER_USERNAME`, `CI_PROJECT_ID` and `CI_PR_NUMBER` are empty unless given;
//     `CI_PULL_REQUEST` is `false` unless given.
//   - `CI_NAME` is `crun-ci` (Codeship's was `codeship`), `CI_TIMESTAMP` the build's start
//     in Unix seconds and `CI_STRING_TIME` the same instant in UTC as
//     `2006-01-02T15:04:05+00:00`.
package civars
