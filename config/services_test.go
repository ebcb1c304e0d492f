package config

import (
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseServices(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        string
		want      map[string]*Service
		wantOrder []string // defaults to the keys of want in the order a, b, …: set when more than one
	}{
		{
			name: "services nested under services with a version are read and the version ignored",
			in: `version: "3.8"
services:
  app:
    image: alpine:3
`,
			want: map[string]*Service{"app": {Name: "app", Image: "alpine:3"}},
		},
		{
			name: "services keep the order of the file",
			in: `web:
  image: nginx
api:
  image: golang
db:
  image: postgres
`,
			want: map[string]*Service{
				"web": {Name: "web", Image: "nginx"},
				"api": {Name: "api", Image: "golang"},
				"db":  {Name: "db", Image: "postgres"},
			},
			wantOrder: []string{"web", "api", "db"},
		},
		{
			name: "a command that YAML reads as a boolean keeps its text",
			in:   "app:\n  image: alpine\n  command: true\n",
			want: map[string]*Service{"app": {Name: "app", Image: "alpine", Command: []string{"true"}}},
		},
		{
			name: "a command string is split with shell quoting but not run through a shell",
			in:   "app:\n  image: alpine\n  command: sh -c 'echo a && b' \"$HOME\"\n",
			want: map[string]*Service{"app": {Name: "app", Image: "alpine", Command: []string{"sh", "-c", "echo a && b", "$HOME"}}},
		},
		{
			name: "a command list is kept word for word",
			in:   "app:\n  image: alpine\n  command: [echo, 'a b', 01, true]\n",
			want: map[string]*Service{"app": {Name: "app", Image: "alpine", Command: []string{"echo", "a b", "01", "true"}}},
		},
		{
			name: "an empty entrypoint clears the image's entrypoint",
			in:   "app:\n  image: alpine\n  entrypoint: \"\"\n",
			want: map[string]*Service{"app": {Name: "app", Image: "alpine", Entrypoint: []string{}}},
		},
		{
			name: "an entrypoint list is kept word for word",
			in:   "app:\n  image: alpine\n  entrypoint: [/bin/sh, -c]\n",
			want: map[string]*Service{"app": {Name: "app", Image: "alpine", Entrypoint: []string{"/bin/sh", "-c"}}},
		},
		{
			name: "an environment mapping keeps values as written and null as unset",
			in: `app:
  image: alpine
  environment:
    A: 01
    B: "x y"
    C:
    D: null
    E: "null"
    F: ""
`,
			want: map[string]*Service{"app": {Name: "app", Image: "alpine", Environment: []EnvVar{
				{Key: "A", Value: ptr("01")},
				{Key: "B", Value: ptr("x y")},
				{Key: "C"},
				{Key: "D"},
				{Key: "E", Value: ptr("null")},
				{Key: "F", Value: ptr("")},
			}}},
		},
		{
			name: "an environment list splits at the first equals sign and a bare key is unset",
			in: `app:
  image: alpine
  environment:
    - A=1
    - B=x=y
    - C=
    - D
`,
			want: map[string]*Service{"app": {Name: "app", Image: "alpine", Environment: []EnvVar{
				{Key: "A", Value: ptr("1")},
				{Key: "B", Value: ptr("x=y")},
				{Key: "C", Value: ptr("")},
				{Key: "D"},
			}}},
		},
		{
			name: "volumes, volumes_from, working_dir and a numeric user keep their text",
			in: `data:
  image: busybox
  volumes: [/artifacts, "./tmp:/tmp/x:ro"]
app:
  image: busybox
  volumes_from: [data, "data:ro", "data:rw"]
  working_dir: /src
  user: 1000
`,
			want: map[string]*Service{
				"data": {Name: "data", Image: "busybox", Volumes: []Volume{{Spec: "/artifacts"}, {Spec: "./tmp:/tmp/x:ro"}}},
				"app": {
					Name: "app", Image: "busybox",
					VolumesFrom: []VolumeFrom{{Service: "data"}, {Service: "data", ReadOnly: true}, {Service: "data"}},
					WorkingDir:  "/src",
					User:        "1000",
				},
			},
			wantOrder: []string{"data", "app"},
		},
		{
			name: "depends_on in its long form gives the names",
			in: `app:
  image: alpine
  depends_on:
    db:
      condition: service_healthy
    cache:
      condition: service_started
    init: {condition: service_completed_successfully}
`,
			want: map[string]*Service{"app": {Name: "app", Image: "alpine", DependsOn: []Ref{
				{Service: "db", Condition: "service_healthy"}, {Service: "cache", Condition: "service_started"}, {Service: "init", Condition: "service_completed_successfully"},
			}}},
		},
		{
			name: "hostname and healthcheck in both forms",
			in: `app:
  image: alpine
  hostname: app.local
  healthcheck:
    test: nc -z localhost 80
    interval: 2s
    timeout: 1s
    retries: 5
    start_period: 10s
db:
  image: alpine
  healthcheck:
    test: [CMD, pg_isready]
cache:
  image: alpine
  healthcheck: {disable: true}
`,
			want: map[string]*Service{
				"app": {Name: "app", Image: "alpine", Hostname: "app.local", Healthcheck: &Healthcheck{
					Test: []string{"CMD-SHELL", "nc -z localhost 80"}, Interval: 2 * time.Second, Timeout: time.Second, Retries: 5, StartPeriod: 10 * time.Second,
				}},
				"db":    {Name: "db", Image: "alpine", Healthcheck: &Healthcheck{Test: []string{"CMD", "pg_isready"}}},
				"cache": {Name: "cache", Image: "alpine", Healthcheck: &Healthcheck{Disable: true}},
			},
			wantOrder: []string{"app", "db", "cache"},
		},
		{
			name: "depends_on as a list and links with aliases",
			in:   "app:\n  image: alpine\n  depends_on: [db]\n  links: [db, \"cache:redis\"]\n",
			want: map[string]*Service{"app": {
				Name: "app", Image: "alpine",
				DependsOn: []Ref{{Service: "db"}},
				Links:     []Link{{Service: "db"}, {Service: "cache", Alias: "redis"}},
			}},
		},
		{
			name: "anchors, aliases and merge keys are expanded, explicit keys winning",
			in: `x-base: &base
  image: alpine
  environment: &env
    A: "1"
app:
  <<: *base
  command: make
other:
  <<: *base
  image: debian
  environment: *env
`,
			want: map[string]*Service{
				"x-base": {Name: "x-base", Image: "alpine", Environment: []EnvVar{{Key: "A", Value: ptr("1")}}},
				"app":    {Name: "app", Image: "alpine", Environment: []EnvVar{{Key: "A", Value: ptr("1")}}, Command: []string{"make"}},
				"other":  {Name: "other", Image: "debian", Environment: []EnvVar{{Key: "A", Value: ptr("1")}}},
			},
			wantOrder: []string{"x-base", "app", "other"},
		},
		{
			name: "the JSON form is read as YAML",
			in: `{
	"app": {
		"image": "alpine",
		"command": ["echo", "hi"],
		"environment": {"A": "1", "B": null},
		"user": 0
	}
}`,
			want: map[string]*Service{"app": {
				Name: "app", Image: "alpine", Command: []string{"echo", "hi"},
				Environment: []EnvVar{{Key: "A", Value: ptr("1")}, {Key: "B"}},
				User:        "0",
			}},
		},
		{
			name: "the nested JSON form with a version is read",
			in:   `{"version": "2", "services": {"app": {"image": "alpine"}}}`,
			want: map[string]*Service{"app": {Name: "app", Image: "alpine"}},
		},
		{
			name: "a build written as a string is the context, with the default Dockerfile",
			in:   "app:\n  build: ./app\n",
			want: map[string]*Service{"app": {Name: "app", Build: &Build{Context: "./app", Dockerfile: "Dockerfile"}}},
		},
		{
			name: "a build mapping keeps every key as written, args in file order",
			in: `app:
  build:
    image: registry.example.com/team/app
    context: ./src
    dockerfile: ci/Dockerfile.test
    args:
      VERSION: "{{ .Branch }}"
      EMPTY: ""
      FROM_ENV:
    encrypted_args_file: args.encrypted
    encrypted_args: [abc, def]
`,
			want: map[string]*Service{"app": {Name: "app", Build: &Build{
				Image:      "registry.example.com/team/app",
				Context:    "./src",
				Dockerfile: "ci/Dockerfile.test",
				Args: []EnvVar{
					{Key: "VERSION", Value: ptr("{{ .Branch }}")},
					{Key: "EMPTY", Value: ptr("")},
					{Key: "FROM_ENV"},
				},
				EncryptedArgsFile: []Value{{Text: "args.encrypted"}},
				EncryptedArgs:     []Value{{Text: "abc"}, {Text: "def"}},
			}}},
		},
		{
			name: "encrypted_args and encrypted_environment as one string, as Codeship's pages write them",
			in:   "app:\n  build:\n    image: app\n    encrypted_args: abc\n  encrypted_environment: def\n",
			want: map[string]*Service{"app": {Name: "app", Build: &Build{Image: "app", Context: ".", Dockerfile: "Dockerfile", EncryptedArgs: []Value{{Text: "abc"}}}, EncryptedEnvironment: []Value{{Text: "def"}}}},
		},
		{
			name: "a build mapping takes the aliases path and dockerfile_path, and args as a list",
			in:   "app:\n  build:\n    path: .\n    dockerfile_path: Dockerfile.ci\n    args: [A=1, B=, C]\n    encrypted_args_file: [a.encrypted, b.encrypted]\n",
			want: map[string]*Service{"app": {Name: "app", Build: &Build{
				Context:           ".",
				Dockerfile:        "Dockerfile.ci",
				Args:              []EnvVar{{Key: "A", Value: ptr("1")}, {Key: "B", Value: ptr("")}, {Key: "C"}},
				EncryptedArgsFile: []Value{{Text: "a.encrypted"}, {Text: "b.encrypted"}},
			}}},
		},
		{
			name: "a build mapping without context or dockerfile gets the defaults",
			in:   "app:\n  build:\n    image: app\n",
			want: map[string]*Service{"app": {Name: "app", Build: &Build{Image: "app", Context: ".", Dockerfile: "Dockerfile"}}},
		},
		{
			// The services-and-databases page's example.
			name: "build.name names the built image, as build.image does",
			in:   "elasticsearch:\n  build:\n    name: my_project/elasticsearch\n    dockerfile: Dockerfile.elasticsearch\n",
			want: map[string]*Service{"elasticsearch": {Name: "elasticsearch", Build: &Build{Image: "my_project/elasticsearch", Context: ".", Dockerfile: "Dockerfile.elasticsearch"}}},
		},
		{
			// The deployment-container example: jet used the image; the Dockerfile is
			// not even there.
			name: "image with a dockerfile but no build is the image",
			in:   "app1:\n  image: 08testimage1\n  dockerfile: Dockerfile.app1\n",
			want: map[string]*Service{"app1": {Name: "app1", Image: "08testimage1"}},
		},
		{
			name: "a dockerfile next to build sets the build's Dockerfile",
			in:   "app:\n  build: ./\n  dockerfile: Dockerfile.test\nb:\n  dockerfile_path: b.Dockerfile\n  build:\n    image: b\n",
			want: map[string]*Service{
				"app": {Name: "app", Build: &Build{Context: "./", Dockerfile: "Dockerfile.test"}},
				"b":   {Name: "b", Build: &Build{Image: "b", Context: ".", Dockerfile: "b.Dockerfile"}},
			},
			wantOrder: []string{"app", "b"},
		},
		{
			name: "cache keys and registry credentials are kept",
			in:   "app:\n  build: .\n  cached: true\n  default_cache_branch: main\n  dockercfg_service: creds\ncreds:\n  image: creds\n  encrypted_dockercfg_path: dockercfg.encrypted\n  cached: false\n",
			want: map[string]*Service{
				"app": {
					Name: "app", Build: &Build{Context: ".", Dockerfile: "Dockerfile"},
					Cached: true, DefaultCacheBranch: "main", DockercfgService: Value{Text: "creds"},
				},
				"creds": {Name: "creds", Image: "creds", EncryptedDockercfgPath: Value{Text: "dockercfg.encrypted"}},
			},
			wantOrder: []string{"app", "creds"},
		},
		{
			name: "ignored keys leave no trace in the service",
			in:   "app:\n  image: alpine\n  tty: true\n  oom_score_adj: 500\n",
			want: map[string]*Service{"app": {Name: "app", Image: "alpine"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, order, err := ParseServices("codeship-services.yml", []byte(tc.in))
			if err != nil {
				t.Fatalf("ParseServices: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, ignorePos); diff != "" {
				t.Errorf("services (-want +got):\n%s", diff)
			}
			wantOrder := tc.wantOrder
			if wantOrder == nil {
				for name := range tc.want {
					wantOrder = append(wantOrder, name)
				}
			}
			if diff := cmp.Diff(wantOrder, order); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPositions(t *testing.T) {
	in := `services:
  app:
    image: alpine
    environment:
      A: "1"
    volumes:
      - ./x:/x
    depends_on: [db]
  db:
    image: postgres
`
	got, _, err := ParseServices("s.yml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &Service{
		Name:        "app",
		Pos:         Pos{"s.yml", 2, 3},
		Image:       "alpine",
		Environment: []EnvVar{{Key: "A", Value: ptr("1"), Pos: Pos{"s.yml", 5, 7}}},
		Volumes:     []Volume{{Spec: "./x:/x", Pos: Pos{"s.yml", 7, 9}}},
		DependsOn:   []Ref{{Service: "db", Pos: Pos{"s.yml", 8, 18}}},
	}
	if diff := cmp.Diff(want, got["app"]); diff != "" {
		t.Errorf("service (-want +got):\n%s", diff)
	}

	t.Run("of builds and credentials", func(t *testing.T) {
		in := `app:
  build:
    args: [A=1]
    encrypted_args: [abc]
  dockercfg_service: creds
b:
  build: .
`
		got, _, err := ParseServices("s.yml", []byte(in))
		if err != nil {
			t.Fatal(err)
		}
		want := &Service{
			Name: "app",
			Pos:  Pos{"s.yml", 1, 1},
			Build: &Build{
				Pos:           Pos{"s.yml", 3, 5},
				Context:       ".",
				Dockerfile:    "Dockerfile",
				Args:          []EnvVar{{Key: "A", Value: ptr("1"), Pos: Pos{"s.yml", 3, 12}}},
				EncryptedArgs: []Value{{Text: "abc", Pos: Pos{"s.yml", 4, 22}}},
			},
			DockercfgService: Value{Text: "creds", Pos: Pos{"s.yml", 5, 22}},
		}
		if diff := cmp.Diff(want, got["app"]); diff != "" {
			t.Errorf("service (-want +got):\n%s", diff)
		}
		if got, want := got["b"].Build.Pos, (Pos{"s.yml", 7, 10}); got != want {
			t.Errorf("build of b at %v, want %v", got, want)
		}
	})
}

func TestParseSignal(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    syscall.Signal
		wantErr string
	}{
		{in: "SIGINT", want: syscall.SIGINT},
		{in: "9", want: syscall.SIGKILL},
		{in: "TERM", want: syscall.SIGTERM},
		{in: "sigquit", want: syscall.SIGQUIT},
		{in: "SIGNOPE", wantErr: `"SIGNOPE" is not a signal`},
		{in: "0", wantErr: `"0" is not a signal`},
		{in: "65", wantErr: `"65" is not a signal`},
		{in: "-9", wantErr: `"-9" is not a signal`},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSignal(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseSignal(%q) = %v, %v; want error %s", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseSignal(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestStopSignalAndGracePeriod(t *testing.T) {
	for _, tt := range []struct {
		name, in  string
		sig       syscall.Signal
		grace     time.Duration
		wantError string
	}{
		{name: "a signal by name and a grace as a duration", in: "  stop_signal: SIGQUIT\n  stop_grace_period: 1m30s\n", sig: syscall.SIGQUIT, grace: 90 * time.Second},
		{name: "a signal without SIG and a grace in seconds", in: "  stop_signal: int\n  stop_grace_period: 5\n", sig: syscall.SIGINT, grace: 5 * time.Second},
		{name: "a signal by number and no grace", in: "  stop_signal: 9\n  stop_grace_period: 0s\n", sig: syscall.SIGKILL},
		{name: "an unknown signal", in: "  stop_signal: SIGNOPE\n", wantError: `codeship-services.yml:3: service "app": key "stop_signal": "SIGNOPE" is not a signal`},
		{name: "a grace that is no duration", in: "  stop_grace_period: soon\n", wantError: `codeship-services.yml:3: service "app": key "stop_grace_period": "soon" is not a duration (write e.g. 10s, 1m30s or 0)`},
		{name: "a negative grace", in: "  stop_grace_period: -1s\n", wantError: `codeship-services.yml:3: service "app": key "stop_grace_period": "-1s" is negative`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := ParseServices("codeship-services.yml", []byte("app:\n  image: busybox\n"+tt.in))
			if tt.wantError != "" {
				if err == nil || err.Error() != tt.wantError {
					t.Fatalf("error %v, want %s", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := got["app"]; s.StopSignal != tt.sig || s.StopGracePeriod != tt.grace {
				t.Errorf("stop signal %v, grace %s; want %v, %s", s.StopSignal, s.StopGracePeriod, tt.sig, tt.grace)
			}
		})
	}
}
