package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// writeFiles writes files (name → contents) into a new temporary directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func ptr(s string) *string { return &s }

// ignorePos leaves positions out of comparisons of structure; TestPositions checks them.
var ignorePos = cmpopts.IgnoreTypes(Pos{})

// The two configurations of the seed document "Using Docker Volumes In CI/CD", each with
// a steps file that uses them.
const (
	seedPassingServices = `data:
  image: busybox
  volumes:
    - /artifacts
myapp:
  image: busybox
  volumes_from:
    - data
`
	seedPassingSteps = `- name: write
  service: myapp
  command: sh -c 'echo hello > /artifacts/hello'
- name: read
  service: myapp
  command: cat /artifacts/hello
`
	seedPersistingServices = `data:
  image: busybox
  volumes:
    - ./tmp/artifacts:/artifacts
`
	seedPersistingSteps = `- service: data
  command: sh -c 'date > /artifacts/stamp'
- service: data
  command: cat /artifacts/stamp
`
)

func TestLoadSeed(t *testing.T) {
	const sf, tf = "codeship-services.yml", "codeship-steps.yml"
	for _, tc := range []struct {
		name      string
		services  string
		steps     string
		want      map[string]*Service
		wantOrder []string
		wantSteps []*Step
	}{
		{
			name:     "passing data between containers shares an anonymous volume through volumes_from",
			services: seedPassingServices,
			steps:    seedPassingSteps,
			want: map[string]*Service{
				"data": {
					Name:    "data",
					Pos:     Pos{sf, 1, 1},
					Image:   "busybox",
					Volumes: []Volume{{Spec: "/artifacts", Pos: Pos{sf, 4, 7}}},
				},
				"myapp": {
					Name:        "myapp",
					Pos:         Pos{sf, 5, 1},
					Image:       "busybox",
					VolumesFrom: []VolumeFrom{{Service: "data", Pos: Pos{sf, 8, 7}}},
				},
			},
			wantOrder: []string{"data", "myapp"},
			wantSteps: []*Step{
				{
					Name: "write", NameGiven: true, Pos: Pos{tf, 1, 3}, Type: Run, Service: "myapp",
					Command:     []string{"sh", "-c", "echo hello > /artifacts/hello"},
					CommandText: "sh -c 'echo hello > /artifacts/hello'",
				},
				{
					Name: "read", NameGiven: true, Pos: Pos{tf, 4, 3}, Type: Run, Service: "myapp",
					Command:     []string{"cat", "/artifacts/hello"},
					CommandText: "cat /artifacts/hello",
				},
			},
		},
		{
			name:     "passing data between steps mounts a host directory",
			services: seedPersistingServices,
			steps:    seedPersistingSteps,
			want: map[string]*Service{
				"data": {
					Name:    "data",
					Pos:     Pos{sf, 1, 1},
					Image:   "busybox",
					Volumes: []Volume{{Spec: "./tmp/artifacts:/artifacts", Pos: Pos{sf, 4, 7}}},
				},
			},
			wantOrder: []string{"data"},
			wantSteps: []*Step{
				{
					Name: "data_1", Pos: Pos{tf, 1, 3}, Type: Run, Service: "data",
					Command:     []string{"sh", "-c", "date > /artifacts/stamp"},
					CommandText: "sh -c 'date > /artifacts/stamp'",
				},
				{
					Name: "data_2", Pos: Pos{tf, 3, 3}, Type: Run, Service: "data",
					Command:     []string{"cat", "/artifacts/stamp"},
					CommandText: "cat /artifacts/stamp",
				},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{sf: tc.services, tf: tc.steps})
			got, err := Load(dir, "", "")
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := &Project{
				Dir:          dir,
				ServicesFile: filepath.Join(dir, sf),
				StepsFile:    filepath.Join(dir, tf),
				Services:     tc.want,
				Order:        tc.wantOrder,
				Steps:        tc.wantSteps,
			}
			// The graph is derived from the services; TestGraph checks it.
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Project{}, "Graph")); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadFiles(t *testing.T) {
	const svcYAML = "app:\n  image: alpine\n"
	const stepsYAML = "- service: app\n  command: \"true\"\n"
	for _, tc := range []struct {
		name                   string
		files                  map[string]string
		servicesPath           string
		stepsPath              string
		wantDir                string // relative to the temporary directory
		wantServices, wantStep string // file names, relative to the temporary directory
	}{
		{
			name:         "the yml files are found in the directory",
			files:        map[string]string{"codeship-services.yml": svcYAML, "codeship-steps.yml": stepsYAML},
			wantServices: "codeship-services.yml",
			wantStep:     "codeship-steps.yml",
		},
		{
			name: "the json files are found when there is no yml file",
			files: map[string]string{
				"codeship-services.json": `{"app": {"image": "alpine"}}`,
				"codeship-steps.json":    `[{"service": "app", "command": "true"}]`,
			},
			wantServices: "codeship-services.json",
			wantStep:     "codeship-steps.json",
		},
		{
			name: "yml wins over json",
			files: map[string]string{
				"codeship-services.yml":  svcYAML,
				"codeship-services.json": `{`,
				"codeship-steps.yml":     stepsYAML,
				"codeship-steps.json":    `[`,
			},
			wantServices: "codeship-services.yml",
			wantStep:     "codeship-steps.yml",
		},
		{
			name:         "docker-compose.yml is the last services file looked for",
			files:        map[string]string{"docker-compose.yml": "services:\n  app:\n    image: alpine\n", "codeship-steps.yml": stepsYAML},
			wantServices: "docker-compose.yml",
			wantStep:     "codeship-steps.yml",
		},
		{
			name:         "explicit paths replace discovery and the services file's directory is the build directory",
			files:        map[string]string{"ci/services.yml": svcYAML, "ci/steps.yml": stepsYAML, "codeship-services.yml": "{"},
			servicesPath: "ci/services.yml",
			stepsPath:    "ci/steps.yml",
			wantDir:      "ci",
			wantServices: "ci/services.yml",
			wantStep:     "ci/steps.yml",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			got, err := Load(dir, tc.servicesPath, tc.stepsPath)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := &Project{
				Dir:          filepath.Join(dir, tc.wantDir),
				ServicesFile: filepath.Join(dir, tc.wantServices),
				StepsFile:    filepath.Join(dir, tc.wantStep),
				Services:     map[string]*Service{"app": {Name: "app", Image: "alpine"}},
				Order:        []string{"app"},
				Steps: []*Step{{
					Name: "app_1", Type: Run, Service: "app",
					Command: []string{"true"}, CommandText: "true",
				}},
			}
			// The graph is derived from the services; TestGraph checks it.
			if diff := cmp.Diff(want, got, ignorePos, cmpopts.IgnoreFields(Project{}, "Graph")); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
			if got.Graph == nil {
				t.Error("Load made no graph")
			}
		})
	}
}

func TestLoadIgnored(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"codeship-services.yml": `version: "3"
services:
  app:
    image: alpine
    container_name: x
    oom_score_adj: 500
    logging:
      driver: none
  deploy:
    image: deploy
    dockerfile: Dockerfile.deploy
volumes:
  data: {}
networks:
  default: {}
`,
		// Both credentials on a run step and a group: the encrypted file wins.
		"codeship-steps.yml": "- service: app\n- name: t\n  service: app\n  dockercfg_service: app\n  encrypted_dockercfg_path: d.encrypted\n" +
			"- type: serial\n  encrypted_dockercfg_path: d.encrypted\n  dockercfg_service: app\n  steps:\n    - service: app\n",
	})
	got, err := Load(dir, "", "")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	f := "codeship-services.yml"
	want := []Ignored{
		{Pos: Pos{f, 5, 5}, Service: "app", Key: "container_name"},
		{Pos: Pos{f, 6, 5}, Service: "app", Key: "oom_score_adj"},
		{Pos: Pos{f, 7, 5}, Service: "app", Key: "logging"},
		{Pos: Pos{f, 11, 5}, Service: "deploy", Key: "dockerfile"},
		{Pos: Pos{f, 12, 1}, Key: "volumes"},
		{Pos: Pos{f, 14, 1}, Key: "networks"},
		{Pos: Pos{"codeship-steps.yml", 4, 22}, Step: "t", Key: "dockercfg_service"},
		{Pos: Pos{"codeship-steps.yml", 8, 22}, Key: "dockercfg_service"},
	}
	if diff := cmp.Diff(want, got.Ignored); diff != "" {
		t.Errorf("Ignored (-want +got):\n%s", diff)
	}
}

func TestLoadFileNames(t *testing.T) {
	t.Run("a steps file outside the build directory is named as given", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{
			"ci/codeship-services.yml": "app:\n  image: alpine\n",
			"codeship-steps.yml":       "- service: nope\n",
		})
		_, err := Load(dir, "ci/codeship-services.yml", "")
		want := filepath.Join(dir, "codeship-steps.yml") + `:1: unknown service "nope"`
		if err == nil || err.Error() != want {
			t.Errorf("Load error = %v, want %s", err, want)
		}
	})
	t.Run("missing files are errors naming what was looked for", func(t *testing.T) {
		dir := t.TempDir()
		_, err := Load(dir, "", "")
		want := "no services file in " + dir + ": looked for codeship-services.yml, codeship-services.json, docker-compose.yml\n" +
			"no steps file in " + dir + ": looked for codeship-steps.yml, codeship-steps.json"
		if err == nil || err.Error() != want {
			t.Errorf("Load error = %v, want %s", err, want)
		}
	})
	t.Run("a missing explicit file is a not-exist error", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"codeship-services.yml": "app:\n  image: alpine\n"})
		_, err := Load(dir, "", "nope.yml")
		if want := "nope.yml: no such file or directory"; err == nil || err.Error() != want {
			t.Errorf("Load error = %v, want %s", err, want)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("errors.Is(%v, fs.ErrNotExist) = false, want true", err)
		}
	})
	t.Run("a file larger than 10 MiB is refused", func(t *testing.T) {
		big := "# " + strings.Repeat("x", maxFileSize) + "\napp:\n  image: alpine\n"
		dir := writeFiles(t, map[string]string{"codeship-services.yml": big, "codeship-steps.yml": "- service: app\n"})
		_, err := Load(dir, "", "")
		if want := "codeship-services.yml: file is larger than 10 MiB"; err == nil || err.Error() != want {
			t.Errorf("Load error = %v, want %s", err, want)
		}
	})
}

func TestLoadErrorsAreTyped(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"codeship-services.yml": "app:\n  image: alpine\n  volumes:\n    - type: bind\n      source: .\n",
		"codeship-steps.yml":    "- service: app\n",
	})
	_, err := Load(dir, "", "")
	if !errors.Is(err, ErrNotSupported) {
		t.Errorf("errors.Is(%v, ErrNotSupported) = false, want true", err)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(%v, *Error) = false, want true", err)
	}
	if want := (Pos{"codeship-services.yml", 4, 7}); e.Pos != want || e.Service != "app" {
		t.Errorf("Error at %v of service %q, want at %v of service \"app\"", e.Pos, e.Service, want)
	}
	if got, want := e.Error(), `codeship-services.yml:4: service "app": key "volumes": the long syntax (a mapping): not supported yet`; got != want {
		t.Errorf("Error() = %s, want %s", got, want)
	}
}
