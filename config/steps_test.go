package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// run is a run step as the tests expect it, with Command split from text.
func run(name string, given bool, service, text string) *Step {
	s := &Step{Name: name, NameGiven: given, Type: Run, Service: service, CommandText: text}
	if text != "" {
		w, err := splitCommand(text)
		if err != nil {
			panic(err)
		}
		s.Command = w
	}
	return s
}

func group(typ StepType, name string, given bool, service string, steps ...*Step) *Step {
	return &Step{Name: name, NameGiven: given, Type: typ, Service: service, Steps: steps}
}

func withOnFail(s *Step, onFail ...*Step) *Step {
	s.OnFail = onFail
	return s
}

func TestParseSteps(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []*Step
	}{
		{
			name: "a name that YAML reads as a number keeps its text",
			in:   "- name: 01\n  service: app\n  command: true\n",
			want: []*Step{run("01", true, "app", "true")},
		},
		{
			name: "a run step without command runs the service's own command",
			in:   "- service: app\n",
			want: []*Step{run("app_1", false, "app", "")},
		},
		{
			name: "a command is split with shell quoting",
			in:   "- service: app\n  command: sh -c 'echo a && b'\n",
			want: []*Step{run("app_1", false, "app", "sh -c 'echo a && b'")},
		},
		{
			name: "generated names skip the names written in the file",
			in: `- service: app
- name: app_1
  service: app
- service: app
- service: db
- type: serial
  steps:
    - service: app
- name: serial_2
  type: parallel
  steps:
    - service: db
- type: parallel
  steps:
    - service: db
`,
			want: []*Step{
				run("app_2", false, "app", ""),
				run("app_1", true, "app", ""),
				run("app_3", false, "app", ""),
				run("db_1", false, "db", ""),
				group(Serial, "serial_1", false, "", run("app_4", false, "app", "")),
				group(Parallel, "serial_2", true, "", run("db_2", false, "db", "")),
				group(Parallel, "parallel_1", false, "", run("db_3", false, "db", "")),
			},
		},
		{
			name: "a group's service is the default of the steps inside it",
			in: `- type: serial
  service: app
  steps:
    - command: make
    - service: db
      command: psql
    - type: parallel
      steps:
        - command: make test
`,
			want: []*Step{group(Serial, "serial_1", false, "app",
				run("app_1", false, "app", "make"),
				run("db_1", false, "db", "psql"),
				group(Parallel, "parallel_1", false, "app", run("app_2", false, "app", "make test")),
			)},
		},
		{
			name: "on_fail steps inherit the service of the step they hang from",
			in: `- name: test
  service: app
  command: make test
  on_fail:
    - command: cat log
    - service: db
      command: dump
- type: serial
  service: web
  steps:
    - service: app
      command: a
      on_fail:
        - command: b
  on_fail:
    - command: c
`,
			want: []*Step{
				withOnFail(run("test", true, "app", "make test"),
					run("app_1", false, "app", "cat log"),
					run("db_1", false, "db", "dump"),
				),
				withOnFail(
					group(Serial, "serial_1", false, "web",
						withOnFail(run("app_2", false, "app", "a"), run("app_3", false, "app", "b")),
					),
					run("web_1", false, "web", "c"),
				),
			},
		},
		{
			name: "services on a parallel group make one serial chain per service",
			in: `- name: tests
  type: parallel
  services: [py2, py3]
  steps:
    - name: unit
      command: make unit
    - command: make lint
`,
			want: []*Step{group(Parallel, "tests", true, "",
				group(Serial, "tests-py2", true, "py2",
					run("unit-py2", true, "py2", "make unit"),
					run("py2_1", false, "py2", "make lint"),
				),
				group(Serial, "tests-py3", true, "py3",
					run("unit-py3", true, "py3", "make unit"),
					run("py3_1", false, "py3", "make lint"),
				),
			)},
		},
		{
			name: "a matrix group runs its steps once per service, the copies in parallel, nested groups keeping their type",
			in: `- name: versions
  type: matrix
  services: [ruby2, ruby3]
  steps:
    - command: bundle install
    - type: parallel
      steps:
        - {name: unit, command: rspec}
        - command: rubocop
`,
			want: []*Step{group(Parallel, "versions", true, "",
				group(Serial, "versions-ruby2", true, "ruby2",
					run("ruby2_1", false, "ruby2", "bundle install"),
					group(Parallel, "parallel_1", false, "ruby2", run("unit-ruby2", true, "ruby2", "rspec"), run("ruby2_2", false, "ruby2", "rubocop")),
				),
				group(Serial, "versions-ruby3", true, "ruby3",
					run("ruby3_1", false, "ruby3", "bundle install"),
					group(Parallel, "parallel_2", false, "ruby3", run("unit-ruby3", true, "ruby3", "rspec"), run("ruby3_2", false, "ruby3", "rubocop")),
				),
			)},
		},
		{
			name: "services on an unnamed serial group make serial chains run one after another",
			in: `- type: serial
  services: [a, b]
  steps:
    - command: one
    - command: two
`,
			want: []*Step{group(Serial, "serial_1", false, "",
				group(Serial, "serial_2", false, "a", run("a_1", false, "a", "one"), run("a_2", false, "a", "two")),
				group(Serial, "serial_3", false, "b", run("b_1", false, "b", "one"), run("b_2", false, "b", "two")),
			)},
		},
		{
			name: "nested services groups suffix names once per level",
			in: `- name: outer
  type: parallel
  services: [a, b]
  steps:
    - name: inner
      type: serial
      steps:
        - name: t
          command: x
          on_fail:
            - name: f
              command: y
`,
			want: []*Step{group(Parallel, "outer", true, "",
				group(Serial, "outer-a", true, "a",
					group(Serial, "inner-a", true, "a",
						withOnFail(run("t-a", true, "a", "x"), run("f-a", true, "a", "y")))),
				group(Serial, "outer-b", true, "b",
					group(Serial, "inner-b", true, "b",
						withOnFail(run("t-b", true, "b", "x"), run("f-b", true, "b", "y")))),
			)},
		},
		{
			name: "tag, exclude and push keys are kept as written",
			in: `- service: app
  tag: master
  exclude: ^(dev|feature/.*)$
  command: deploy
- type: push
  service: app
  image_name: registry.example.com/me/app
  image_tag: "{{ .Branch }}"
  registry: registry.example.com
`,
			want: []*Step{
				func() *Step {
					s := run("app_1", false, "app", "deploy")
					s.Tag, s.Exclude = "master", "^(dev|feature/.*)$"
					return s
				}(),
				{
					Name: "app_2", Type: Push, Service: "app",
					ImageName: "registry.example.com/me/app", ImageTag: "{{ .Branch }}", Registry: "registry.example.com",
				},
			},
		},
		{
			name: "push steps keep their registry credentials",
			in: `- type: push
  service: app
  image_name: registry.example.com/app
  dockercfg_service: creds
- type: push
  service: app
  image_name: registry.example.com/app
  encrypted_dockercfg_path: dockercfg.encrypted
`,
			want: []*Step{
				{
					Name: "app_1", Type: Push, Service: "app",
					ImageName: "registry.example.com/app", DockercfgService: Value{Text: "creds"},
				},
				{
					Name: "app_2", Type: Push, Service: "app",
					ImageName: "registry.example.com/app", EncryptedDockercfgPath: Value{Text: "dockercfg.encrypted"},
				},
			},
		},
		{
			name: "run steps and groups take credentials for the images they pull",
			in: `- service: app
  dockercfg_service: creds
- type: parallel
  dockercfg_service: creds
  steps:
    - service: app
      encrypted_dockercfg_path: dockercfg.encrypted
- service: app
  dockercfg_service: creds
  encrypted_dockercfg_path: dockercfg.encrypted
`,
			want: func() []*Step {
				a := run("app_1", false, "app", "")
				a.DockercfgService = Value{Text: "creds"}
				inner := run("app_2", false, "app", "")
				inner.EncryptedDockercfgPath = Value{Text: "dockercfg.encrypted"}
				g := group(Parallel, "parallel_1", false, "", inner)
				g.DockercfgService = Value{Text: "creds"}
				// Both: the encrypted file wins (Load lists the other as ignored).
				c := run("app_3", false, "app", "")
				c.EncryptedDockercfgPath = Value{Text: "dockercfg.encrypted"}
				return []*Step{a, g, c}
			}(),
		},
		{
			name: "the JSON form is read as YAML",
			in:   `[{"name": "t", "service": "app", "command": "true"}, {"type": "parallel", "steps": [{"service": "app"}]}]`,
			want: []*Step{
				run("t", true, "app", "true"),
				group(Parallel, "parallel_1", false, "", run("app_1", false, "app", "")),
			},
		},
		{
			name: "an anchored step may be reused under another name",
			in: `- &t
  name: a
  service: app
  command: make
- <<: *t
  name: b
`,
			want: []*Step{run("a", true, "app", "make"), run("b", true, "app", "make")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSteps("codeship-steps.yml", []byte(tc.in))
			if err != nil {
				t.Fatalf("ParseSteps: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, ignorePos); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseStepsCopiesShareNothing(t *testing.T) {
	got, err := ParseSteps("s.yml", []byte("- type: parallel\n  services: [a, b]\n  steps:\n    - command: x y\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := got[0].Steps[0].Steps[0], got[0].Steps[1].Steps[0]
	a.Command[0] = "changed"
	if b.Command[0] != "x" {
		t.Errorf("changing one copy's command changed the other: %q", b.Command)
	}
	if want := (Pos{"s.yml", 4, 7}); a.Pos != want || b.Pos != want {
		t.Errorf("copies' positions = %v, %v, want both %v", a.Pos, b.Pos, want)
	}
}
