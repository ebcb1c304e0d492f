package config

import (
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"strings"
	"testing"
	"time"
)

// Seeds besides these live in testdata/fuzz/<target>.

func FuzzParseServices(f *testing.F) {
	for _, s := range []string{
		seedPassingServices,
		seedPersistingServices,
		okServices,
		"version: '3'\nservices:\n  app:\n    image: alpine\n    command: true\n",
		`{"app": {"image": "alpine", "environment": {"A": null}, "user": 0}}`,
		"x: &x {image: a}\napp:\n  <<: *x\n  depends_on: {x: {condition: service_healthy}}\n",
		"app:\n  image: a\n  volumes_from: [b, 'b:ro']\n  links: ['b:c']\n  ports: [1]\n  build: .\n",
		"app:\n  image: a\n  entrypoint: \"sh -c 'a \\\\\" b'\"\n",
		"app:\n  build: {image: a, path: ., dockerfile: D, args: [A=1, B], encrypted_args: [x]}\n  dockerfile_path: E\n  cached: yes\n  dockercfg_service: app\n",
		"app:\n  image: a\n  mem_limit: 512m\n  memswap_limit: 1g\n  cpus: 1.5\n  ulimits: {nofile: 1024}\n  cap_add: [NET_ADMIN]\n  devices: [/dev/fuse]\n  security_opt: [no-new-privileges]\n",
		"app:\n  image: a\n  environment: {A: \"\\0\"}\n  build: {args: [\"B=\\0\"]}\n",
		bomb(),
		"a: &a [*a]\n",
		"",
		"---\n---\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		defer hangGuard(data)()
		services, order, err := ParseServices("s.yml", data)
		if err != nil {
			checkErrors(t, err)
			if services != nil || order != nil {
				t.Errorf("ParseServices returned services with an error")
			}
			return
		}
		if len(order) != len(services) || len(order) == 0 {
			t.Fatalf("%d names in order for %d services", len(order), len(services))
		}
		for _, name := range order {
			s := services[name]
			if s == nil || s.Name != name {
				t.Fatalf("service %q in order is %+v", name, s)
			}
			if !serviceName.MatchString(name) || (s.Image == "") == (s.Build == nil) {
				t.Errorf("service %q accepted without a valid name and either an image or a build", name)
			}
			if b := s.Build; b != nil && (b.Context == "" || b.Dockerfile == "") {
				t.Errorf("service %q accepted with build %+v", name, b)
			}
			checkResources(t, s)
		}
	})
}

func FuzzParseSteps(f *testing.F) {
	for _, s := range []string{
		seedPassingSteps,
		seedPersistingSteps,
		okSteps,
		"- name: 01\n  service: app\n  command: true\n  on_fail: [{command: x}]\n",
		"- type: parallel\n  services: [a, b]\n  steps:\n    - name: t\n      command: x\n    - type: serial\n      steps: [{command: y}]\n",
		"- type: serial\n  service: a\n  tag: ^v[0-9]+$\n  exclude: main\n  steps: [{service: b}, {type: push, image_name: x}]\n",
		`[{"service": "app", "command": "sh -c 'a && b'"}]`,
		"- &s {name: a, service: app}\n- <<: *s\n  name: b\n",
		stepBomb(),
		nestedServices(6),
		"- type: manual\n- steps: []\n- {}\n",
		"- name: \"\\e[31m\"\n  service: a\n  tag: \"a\\nb\"\n  exclude: \"\\t\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		defer hangGuard(data)()
		steps, err := ParseSteps("s.yml", data)
		if err != nil {
			checkErrors(t, err)
			if steps != nil {
				t.Errorf("ParseSteps returned steps with an error")
			}
			return
		}
		if len(steps) == 0 {
			t.Fatalf("no steps and no error")
		}
		// A control character in a service name (which Load refuses) reaches the names
		// of the copies that a `services:` group makes; none may come from elsewhere.
		controlService := false
		WalkSteps(steps, func(s *Step) {
			_, ok := controlChar(s.Service)
			controlService = controlService || ok
		})
		names := map[string]bool{}
		WalkSteps(steps, func(s *Step) {
			if s.Name == "" || names[s.Name] {
				t.Errorf("step name %q is empty or not unique", s.Name)
			}
			for _, text := range []string{s.Name, s.Tag, s.Exclude} {
				if r, ok := controlChar(text); ok && (text != s.Name || (s.NameGiven && !controlService)) {
					t.Errorf("step %q accepted with the control character %U in %q", s.Name, r, text)
				}
			}
			names[s.Name] = true
			switch s.Type {
			case Run, Push:
				if s.Service == "" || len(s.Steps) > 0 {
					t.Errorf("%s step %q has no service or has steps", s.Type, s.Name)
				}
			case Serial, Parallel:
				if len(s.Steps) == 0 || s.Command != nil {
					t.Errorf("%s group %q has no steps or has a command", s.Type, s.Name)
				}
			default:
				t.Errorf("step %q has type %v", s.Name, s.Type)
			}
		})
	})
}

// checkResources checks what ParseServices promises of the resource and privilege keys
// and of the environment of a service it accepted.
func checkResources(t *testing.T, s *Service) {
	t.Helper()
	for _, b := range []*Bytes{s.MemLimit, s.ShmSize} {
		if b != nil && b.N <= 0 {
			t.Errorf("service %q accepted with size %d", s.Name, b.N)
		}
	}
	if m := s.MemswapLimit; m != nil && (s.MemLimit == nil || (m.N != -1 && m.N < s.MemLimit.N)) {
		t.Errorf("service %q accepted with memswap_limit %d and mem_limit %+v", s.Name, m.N, s.MemLimit)
	}
	if p := s.PidsLimit; p != nil && p.N < 1 && p.N != -1 {
		t.Errorf("service %q accepted with pids_limit %d", s.Name, p.N)
	}
	if c := s.CPUs; c != nil && !(c.F >= minCPUs && c.F <= math.MaxFloat64) {
		t.Errorf("service %q accepted with cpus %v", s.Name, c.F)
	}
	if c := s.CPUShares; c != nil && (c.N < minCPUShares || c.N > maxCPUShares) {
		t.Errorf("service %q accepted with cpu_shares %d", s.Name, c.N)
	}
	for _, u := range s.Ulimits {
		if !slices.Contains(ulimitNames, u.Name) || u.Soft < -1 || u.Hard < -1 || (u.Hard != -1 && (u.Soft == -1 || u.Soft > u.Hard)) {
			t.Errorf("service %q accepted with ulimit %+v", s.Name, u)
		}
	}
	for _, c := range append(slices.Clone(s.CapAdd), s.CapDrop...) {
		if c.Text != "ALL" && !capabilities[c.Text] {
			t.Errorf("service %q accepted with capability %q", s.Name, c.Text)
		}
	}
	for _, d := range s.Devices {
		if !path.IsAbs(d.Host) || !path.IsAbs(d.Container) || !devicePermissions(d.Permissions) {
			t.Errorf("service %q accepted with device %+v", s.Name, d)
		}
	}
	for _, o := range s.SecurityOpt {
		if _, err := parseSecurityOpt(o.Key + "=" + o.Value); err != nil {
			t.Errorf("service %q accepted with security option %+v: %v", s.Name, o, err)
		}
	}
	env := s.Environment
	if s.Build != nil {
		env = append(slices.Clone(env), s.Build.Args...)
	}
	for _, e := range env {
		if e.Value != nil && strings.ContainsRune(*e.Value, 0) {
			t.Errorf("service %q accepted with a NUL byte in %q", s.Name, e.Key)
		}
	}
}

// hangGuard crashes the fuzzing worker, so that the input is kept as a failure, when one
// call takes far longer than any input should; go test's fuzzer has no per-input limit.
// Use as `defer hangGuard(data)()`.
func hangGuard(data []byte) (stop func()) {
	t := time.AfterFunc(10*time.Second, func() {
		panic(fmt.Sprintf("input took more than 10s: %q", data))
	})
	return func() { t.Stop() }
}

// checkErrors checks that err is a join of positioned *Error values.
func checkErrors(t *testing.T, err error) {
	t.Helper()
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %v (%T) is not a join", err, err)
	}
	for _, e := range joined.Unwrap() {
		var ce *Error
		if !errors.As(e, &ce) || ce.Err == nil || ce.Pos.File != "s.yml" {
			t.Errorf("error %q is not an *Error of s.yml", e)
		}
	}
}

func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{
		"", "a b c", `sh -c 'echo a && b'`, `"a \" \\ \$ \x" 'b'c\ d`, "a\\\nb", `'`, `"`, `\`,
		"\t\n", `a''b""c`, `echo $HOME`, "héllo 'wörld'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		defer hangGuard([]byte(s))()
		words, err := splitCommand(s)
		if err != nil {
			if words != nil {
				t.Errorf("words %q with error %v", words, err)
			}
			return
		}
		if words == nil {
			t.Fatalf("nil words without an error")
		}
		// Quoting every word and splitting again gives the same words.
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
		again, err := splitCommand(strings.Join(quoted, " "))
		if err != nil {
			t.Fatalf("splitting the quoted words %q: %v", quoted, err)
		}
		if strings.Join(again, "\x00") != strings.Join(words, "\x00") || len(again) != len(words) {
			t.Errorf("split(%q) = %q, but split of its quoted words = %q", s, words, again)
		}
	})
}
