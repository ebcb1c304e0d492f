package config

import (
	"errors"
	"fmt"
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
		names := map[string]bool{}
		walkSteps(steps, func(s *Step) {
			if s.Name == "" || names[s.Name] {
				t.Errorf("step name %q is empty or not unique", s.Name)
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
