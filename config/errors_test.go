package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const (
	okServices = "app:\n  image: alpine\ndb:\n  image: postgres\n"
	okSteps    = "- service: app\n"
)

// aliasLevels writes levels lines: first, then lines that each alias the previous one
// ten times (line(i, "*l<i-1>, *l<i-1>, …")), so that the document grows tenfold a line.
func aliasLevels(levels int, first string, line func(i int, aliases string) string) string {
	var b strings.Builder
	b.WriteString(first + "\n")
	for i := 1; i < levels; i++ {
		aliases := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", ")
		b.WriteString(line(i, aliases) + "\n")
	}
	return b.String()
}

// bomb is a "billion laughs" document: ten levels of ten aliases each.
func bomb() string {
	return aliasLevels(10, "l0: &l0 [x, x, x, x, x, x, x, x, x, x]", func(i int, aliases string) string {
		return fmt.Sprintf("l%d: &l%d [%s]", i, i, aliases)
	})
}

// stepBomb nests groups of aliased groups, growing tenfold per level.
func stepBomb() string {
	return aliasLevels(8, "- &l0 {service: app}", func(i int, aliases string) string {
		return fmt.Sprintf("- &l%d {type: serial, steps: [%s]}", i, aliases)
	})
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		services string // okServices when empty
		steps    string // okSteps when empty
		want     string
	}{
		// Services file: syntax and shape.
		{
			name:  "an unquoted \": \" in a command",
			steps: "- service: app\n  command: echo a: b\n",
			want:  `codeship-steps.yml:2: yaml: mapping values are not allowed in this context (a value that holds ": " must be quoted: command: "echo a: b")`,
		},
		{
			name:     "an empty services file",
			services: "# nothing here\n",
			want:     "codeship-services.yml: empty file",
		},
		{
			name:     "a services file of null",
			services: "~\n",
			want:     "codeship-services.yml: empty file",
		},
		{
			name:     "a YAML syntax error has its line",
			services: "app:\n  image: alpine\n command: x\n",
			want:     "codeship-services.yml:3: yaml: did not find expected key",
		},
		{
			name:     "a YAML error in a block list names the line of the problem",
			services: "app:\n  image: alpine\n  volumes:\n    - /a\n    - /b\n  x\n",
			want:     "codeship-services.yml:6: yaml: could not find expected ':'",
		},
		{
			name:     "a JSON syntax error names the line of the problem",
			services: "{\"app\": {\"image\": \"alpine\"}\n \"db\": {\"image\": \"postgres\"}}\n",
			want:     "codeship-services.yml:2: yaml: did not find expected ',' or '}'",
		},
		{
			name:     "an unclosed flow list is reported where the file ends",
			services: "app: [\n",
			want:     "codeship-services.yml:2: yaml: did not find expected node content",
		},
		{
			name:     "two YAML documents",
			services: "app:\n  image: alpine\n---\ndb:\n  image: postgres\n",
			want:     "codeship-services.yml:3: more than one YAML document (a second one starts here)",
		},
		{
			name:     "a services file that is a list",
			services: "- app\n",
			want:     "codeship-services.yml:1: want a mapping of services, got a list",
		},
		{
			name:     "a services file with only a version",
			services: "version: '3'\n",
			steps:    "- service: app\n",
			want:     "codeship-services.yml:1: no services\ncodeship-steps.yml:1: unknown service \"app\"",
		},
		{
			name:     "an unknown top-level key next to services",
			services: "services:\n  app:\n    image: alpine\nsecrets: {}\n",
			want:     `codeship-services.yml:4: unknown top-level key "secrets" (services go under "services")`,
		},
		{
			name:     "a duplicate service",
			services: "app:\n  image: alpine\napp:\n  image: debian\n",
			want:     `codeship-services.yml:3: duplicate key "app" (first at line 1)`,
		},
		{
			name:     "an invalid service name",
			services: "_app:\n  image: alpine\napp:\n  image: alpine\n",
			want:     `codeship-services.yml:1: service "_app": invalid service name: want letters, digits, '_', '.' and '-', starting with a letter or digit`,
		},
		{
			name:     "a service that is not a mapping",
			services: "app: alpine\n",
			want:     `codeship-services.yml:1: service "app": want a mapping of service keys, got a string`,
		},
		// Services file: keys.
		{
			name:     "an unknown key",
			services: "app:\n  image: alpine\n  imgae: alpine\n",
			want:     `codeship-services.yml:3: service "app": unknown key "imgae" (did you mean "image"?)`,
		},
		{
			name:     "a duplicate key",
			services: "app:\n  image: alpine\n  image: debian\n",
			want:     `codeship-services.yml:3: service "app": duplicate key "image" (first at line 2)`,
		},
		{
			name:     "no image",
			services: "app:\n  command: x\n",
			want:     `codeship-services.yml:1: service "app": no image`,
		},
		{
			name:     "volumes of the wrong type",
			services: "app:\n  image: alpine\n  volumes: 3\n",
			want:     `codeship-services.yml:3: service "app": key "volumes": want a list, got a number`,
		},
		{
			name:     "a command of the wrong type",
			services: "app:\n  image: alpine\n  command: {a: b}\n",
			want:     `codeship-services.yml:3: service "app": key "command": want a string or a list, got a mapping`,
		},
		{
			name:     "a command with an unterminated quote",
			services: "app:\n  image: alpine\n  command: echo 'hi\n",
			want:     `codeship-services.yml:3: service "app": key "command": unterminated single quote`,
		},
		{
			name:     "an image that is a list",
			services: "app:\n  image: [alpine]\n",
			want:     `codeship-services.yml:2: service "app": key "image": want a string, got a list`,
		},
		{
			name:     "an environment list entry that is a mapping",
			services: "app:\n  image: alpine\n  environment:\n    - A: 1\n",
			want:     `codeship-services.yml:4: service "app": key "environment": want a string, got a mapping`,
		},
		{
			name:     "an environment value that is a list",
			services: "app:\n  image: alpine\n  environment:\n    A: [1]\n",
			want:     `codeship-services.yml:4: service "app": environment "A": want a string, got a list`,
		},
		{
			name:     "volumes_from with an unknown mode",
			services: "app:\n  image: alpine\n  volumes_from: [\"db:zz\"]\ndb:\n  image: postgres\n",
			want:     `codeship-services.yml:3: service "app": volumes_from "db:zz": want "service", "service:ro" or "service:rw"`,
		},
		{
			name:     "depends_on with an unknown condition",
			services: "app:\n  image: alpine\n  depends_on:\n    db:\n      condition: started\ndb:\n  image: postgres\n",
			want:     `codeship-services.yml:5: service "app": depends_on "db": unknown condition "started" (want service_started, service_healthy or service_completed_successfully)`,
		},
		{
			name:     "the long volume syntax",
			services: "app:\n  image: alpine\n  volumes:\n    - type: bind\n      source: .\n",
			want:     `codeship-services.yml:4: service "app": key "volumes": the long syntax (a mapping): not supported yet`,
		},
		// Services file: builds and registry credentials.
		{
			name:     "a build of the wrong type",
			services: "app:\n  build: [.]\ndb:\n  build:\n",
			want: `codeship-services.yml:2: service "app": key "build": want a string or a mapping, got a list` + "\n" +
				`codeship-services.yml:4: service "db": key "build": want a string or a mapping, got null`,
		},
		{
			name:     "an empty build context",
			services: "app:\n  build: ''\n",
			want:     `codeship-services.yml:2: service "app": key "build": empty`,
		},
		{
			name:     "an unknown key inside build",
			services: "app:\n  build:\n    context: .\n    dockerfil: Dockerfile.ci\n",
			want:     `codeship-services.yml:4: service "app": unknown key "build.dockerfil"`,
		},
		{
			name:     "a build key and its alias together",
			services: "app:\n  build:\n    context: .\n    path: ./app\n    dockerfile_path: a\n    dockerfile: b\n",
			want: `codeship-services.yml:4: service "app": keys "build.context" and "build.path" cannot be used together` + "\n" +
				`codeship-services.yml:6: service "app": keys "build.dockerfile_path" and "build.dockerfile" cannot be used together`,
		},
		{
			name:     "empty and non-string build values",
			services: "app:\n  build:\n    image: ''\n    context: [a]\n    dockerfile: ''\n    path: {a: b}\n",
			want: `codeship-services.yml:3: service "app": key "build.image": empty` + "\n" +
				`codeship-services.yml:4: service "app": key "build.context": want a string, got a list` + "\n" +
				`codeship-services.yml:5: service "app": key "build.dockerfile": empty` + "\n" +
				`codeship-services.yml:6: service "app": keys "build.context" and "build.path" cannot be used together` + "\n" +
				`codeship-services.yml:6: service "app": key "build.path": want a string, got a mapping`,
		},
		{
			name:     "build args of the wrong shape",
			services: "app:\n  build:\n    args: A=1\nb:\n  build:\n    args:\n      A: [1]\n      \"\": x\nc:\n  build:\n    args: [\"=x\", {A: 1}]\n",
			want: `codeship-services.yml:3: service "app": key "build.args": want a mapping or a list, got a string` + "\n" +
				`codeship-services.yml:7: service "b": build.args "A": want a string, got a list` + "\n" +
				`codeship-services.yml:8: service "b": build.args: empty variable name` + "\n" +
				`codeship-services.yml:11: service "c": build.args "=x": empty variable name` + "\n" +
				`codeship-services.yml:11: service "c": key "build.args": want a string, got a mapping`,
		},
		{
			name:     "encrypted build args of the wrong shape",
			services: "app:\n  build:\n    encrypted_args: {a: b}\n    encrypted_args_file: ''\nb:\n  build:\n    encrypted_args: [abc, '']\n    encrypted_args_file: [a.encrypted, [b]]\n",
			want: `codeship-services.yml:3: service "app": key "build.encrypted_args": want an encrypted string or a list of them, got a mapping` + "\n" +
				`codeship-services.yml:4: service "app": key "build.encrypted_args_file": empty` + "\n" +
				`codeship-services.yml:7: service "b": key "build.encrypted_args": empty entry` + "\n" +
				`codeship-services.yml:8: service "b": key "build.encrypted_args_file": want a string, got a list`,
		},
		{
			name:     "a build image that is not an image name",
			services: "app:\n  build:\n    image: App\nb:\n  build:\n    image: app:a:b\n",
			want: `codeship-services.yml:3: service "app": key "build.image": "App" is not an image name: invalid reference format: repository name (library/App) must be lowercase` + "\n" +
				`codeship-services.yml:6: service "b": key "build.image": "app:a:b" is not an image name: invalid reference format`,
		},
		{
			name:     "build.image and build.name together",
			services: "app:\n  build:\n    image: a\n    name: b\n",
			want:     `codeship-services.yml:4: service "app": keys "build.image" and "build.name" cannot be used together`,
		},
		{
			name:     "image and build together",
			services: "app:\n  image: alpine\n  build: .\nb:\n  build: .\n  image: alpine\n",
			want: `codeship-services.yml:3: service "app": keys "image" and "build" cannot be used together ("build.image" names the built image)` + "\n" +
				`codeship-services.yml:6: service "b": keys "build" and "image" cannot be used together ("build.image" names the built image)`,
		},
		{
			name:     "a service-level dockerfile without build or image",
			services: "app:\n  environment: {A: b}\n  dockerfile: Dockerfile\n",
			want: `codeship-services.yml:1: service "app": no image` + "\n" +
				`codeship-services.yml:3: service "app": key "dockerfile" needs "build"`,
		},
		{
			name:     "a service-level dockerfile that build sets too",
			services: "app:\n  build:\n    dockerfile_path: a\n  dockerfile: b\nc:\n  build: .\n  dockerfile_path: a\n  dockerfile: ''\n",
			want: `codeship-services.yml:4: service "app": keys "dockerfile" and "build.dockerfile_path" cannot be used together` + "\n" +
				`codeship-services.yml:8: service "c": keys "dockerfile_path" and "dockerfile" cannot be used together` + "\n" +
				`codeship-services.yml:8: service "c": key "dockerfile": empty`,
		},
		{
			name:     "cache keys of the wrong shape",
			services: "app:\n  build: .\n  cached: sometimes\n  default_cache_branch: ''\n",
			want: `codeship-services.yml:3: service "app": key "cached": "sometimes" is not true or false` + "\n" +
				`codeship-services.yml:4: service "app": key "default_cache_branch": empty`,
		},
		{
			name:     "add_docker of the wrong shape",
			services: "app:\n  build: .\n  add_docker: always\n",
			want:     `codeship-services.yml:3: service "app": key "add_docker": "always" is not true or false`,
		},
		{
			name:     "a dockercfg service that is missing, the service itself or empty",
			services: "app:\n  image: alpine\n  dockercfg_service: creds\nb:\n  image: alpine\n  dockercfg_service: b\nc:\n  image: alpine\n  dockercfg_service: ''\n",
			want: `codeship-services.yml:3: service "app": key "dockercfg_service": unknown service "creds"` + "\n" +
				`codeship-services.yml:6: service "b": key "dockercfg_service": "b" is the service itself` + "\n" +
				`codeship-services.yml:9: service "c": key "dockercfg_service": empty`,
		},
		{
			name:     "a dockercfg service in a dependency cycle",
			services: "app:\n  image: registry.example.com/app\n  dockercfg_service: creds\ncreds:\n  image: creds\n  depends_on: [app]\n",
			want:     `codeship-services.yml:1: service "app": dependency cycle: app -> creds -> app`,
		},
		{
			name:     "env files and encrypted environment of the wrong shape",
			services: "app:\n  image: alpine\n  env_file: ''\n  encrypted_env_file: [a.encrypted, '']\n  encrypted_environment: {a: b}\n",
			want: `codeship-services.yml:3: service "app": key "env_file": empty` + "\n" +
				`codeship-services.yml:4: service "app": key "encrypted_env_file": empty entry` + "\n" +
				`codeship-services.yml:5: service "app": key "encrypted_environment": want an encrypted string or a list of them, got a mapping`,
		},
		{
			name:     "a hostname that is not a host name",
			services: "app:\n  image: alpine\n  hostname: under_score\n",
			want:     `codeship-services.yml:3: service "app": key "hostname": "under_score" is not a host name`,
		},
		{
			name:     "a healthcheck without a test",
			services: "app:\n  image: alpine\n  healthcheck:\n    interval: 1s\n",
			want:     `codeship-services.yml:4: service "app": key "healthcheck": no "test"`,
		},
		{
			name:     "a healthcheck with odd values",
			services: "app:\n  image: alpine\n  healthcheck:\n    test: [RUN, x]\n    interval: soon\n    retries: many\n    colour: red\n",
			want: `codeship-services.yml:4: service "app": key "healthcheck.test": a list must start with "CMD", "CMD-SHELL" or "NONE"` + "\n" +
				`codeship-services.yml:5: service "app": key "healthcheck.interval": "soon" is not a duration (write e.g. 1s or 1m30s)` + "\n" +
				`codeship-services.yml:6: service "app": key "healthcheck.retries": "many" is not a whole number` + "\n" +
				`codeship-services.yml:7: service "app": unknown key "healthcheck.colour"`,
		},
		{
			name:     "labels crun-ci keeps for itself",
			services: "app:\n  image: alpine\n  labels: {crun-ci.build: x, team: ci}\n",
			want:     `codeship-services.yml:3: service "app": key "labels": "crun-ci.build": crun-ci's and containerd's own labels cannot be set`,
		},
		// Services file: references.
		{
			name:     "volumes_from, depends_on and links name a missing service",
			services: "app:\n  image: alpine\n  volumes_from: [data]\n  depends_on: [db2]\n  links: [\"cache:c\"]\ndb:\n  image: postgres\n",
			want: `codeship-services.yml:3: service "app": key "volumes_from": unknown service "data"` + "\n" +
				`codeship-services.yml:4: service "app": key "depends_on": unknown service "db2" (did you mean "db"?)` + "\n" +
				`codeship-services.yml:5: service "app": key "links": unknown service "cache"`,
		},
		{
			name:     "a service that depends on itself",
			services: "app:\n  image: alpine\n  depends_on: [app]\n",
			want:     `codeship-services.yml:3: service "app": key "depends_on": "app" is the service itself`,
		},
		{
			name: "a cycle through volumes_from, depends_on and links",
			services: `app:
  image: alpine
  depends_on: [db]
db:
  image: postgres
  volumes_from: [cache]
cache:
  image: redis
  links: [app]
`,
			want: `codeship-services.yml:1: service "app": dependency cycle: app -> db -> cache -> app`,
		},
		// Services file: aliases.
		{
			name:     "an alias bomb is refused quickly",
			services: bomb(),
			want:     "codeship-services.yml: more than 1000000 nodes once aliases are expanded",
		},
		{
			name:     "an alias that contains itself is refused",
			services: "app: &a\n  image: alpine\n  x: [*a]\n",
			want:     "codeship-services.yml:3: alias *a refers to a node that contains it",
		},
		{
			name:     "an unknown alias",
			services: "app:\n  image: *nope\n",
			want:     "codeship-services.yml: yaml: unknown anchor 'nope' referenced",
		},
		// Steps file.
		{
			name:  "an empty steps file",
			steps: "\n",
			want:  "codeship-steps.yml: empty file",
		},
		{
			name:  "a steps file that is a mapping",
			steps: "service: app\n",
			want:  "codeship-steps.yml:1: want a list of steps, got a mapping",
		},
		{
			name:  "a step that is a string",
			steps: "- app\n",
			want:  "codeship-steps.yml:1: want a step (a mapping), got a string",
		},
		{
			name:  "an unknown step key",
			steps: "- name: t\n  service: app\n  retries: 10\n",
			want:  `codeship-steps.yml:3: step "t": unknown key "retries"`,
		},
		{
			name:  "a step command of the wrong type",
			steps: "- service: app\n  command: [a, b]\n",
			want:  `codeship-steps.yml:2: key "command": want a string, got a list`,
		},
		{
			name:  "a step naming a missing service",
			steps: "- name: t\n  service: nope\n",
			want:  `codeship-steps.yml:2: step "t": unknown service "nope"`,
		},
		{
			name:  "a run step without a service",
			steps: "- command: make\n",
			want:  `codeship-steps.yml:1: a run step needs a service: set "service" on it or on a group around it`,
		},
		{
			name:  "a services list naming a missing service",
			steps: "- type: parallel\n  services: [app, nope]\n  steps:\n    - command: x\n",
			want:  `codeship-steps.yml:2: unknown service "nope"`,
		},
		{
			name:  "service and services together",
			steps: "- type: parallel\n  service: app\n  services: [db]\n  steps:\n    - command: x\n",
			want:  `codeship-steps.yml:3: keys "service" and "services" cannot be used together`,
		},
		{
			name:  "duplicate step names",
			steps: "- name: test\n  service: app\n- type: serial\n  steps:\n    - name: test\n      service: app\n",
			want:  `codeship-steps.yml:5: step "test": name already used at line 1`,
		},
		{
			name:  "a name made by services expansion that is already used",
			steps: "- name: t-app\n  service: app\n- type: serial\n  services: [app]\n  steps:\n    - name: t\n",
			want:  `codeship-steps.yml:6: step "t-app": name already used at line 1`,
		},
		{
			name:  "a manual step",
			steps: "- type: manual\n  service: app\n",
			want:  `codeship-steps.yml:1: type "manual" is not supported: it waits for an approval in Codeship's web interface`,
		},
		{
			name:  "a matrix group without services",
			steps: "- name: m\n  type: matrix\n  service: app\n  steps: [{command: x}]\n",
			want:  `codeship-steps.yml:2: step "m": type "matrix" needs "services", the services its steps run in`,
		},
		{
			name:  "an unknown step type",
			steps: "- type: paralel\n  steps: [{service: app}]\n",
			want:  `codeship-steps.yml:1: unknown type "paralel" (want serial, parallel, matrix or push)`,
		},
		{
			name:  "steps without a type",
			steps: "- steps:\n    - service: app\n",
			want:  `codeship-steps.yml:1: key "steps" needs "type: serial" or "type: parallel"`,
		},
		{
			name:  "a group without steps",
			steps: "- type: serial\n  service: app\n",
			want:  `codeship-steps.yml:1: a serial group needs steps`,
		},
		{
			name:  "a group with a command",
			steps: "- type: parallel\n  service: app\n  command: make\n  steps: [{command: x}]\n",
			want:  `codeship-steps.yml:3: key "command" is not allowed in a parallel group`,
		},
		{
			name:  "services on a run step",
			steps: "- services: [app]\n  command: x\n",
			want: `codeship-steps.yml:1: key "services" is not allowed in a run step (only in groups)` + "\n" +
				`codeship-steps.yml:1: a run step needs a service: set "service" on it or on a group around it`,
		},
		{
			name:  "a push step without image_name and with a missing dockercfg service",
			steps: "- type: push\n  service: app\n  dockercfg_service: creds\n",
			want: `codeship-steps.yml:1: a push step needs "image_name"` + "\n" +
				`codeship-steps.yml:3: key "dockercfg_service": unknown service "creds"`,
		},
		{
			name:  "push step credentials of the wrong shape",
			steps: "- name: a\n  type: push\n  service: app\n  image_name: app\n  encrypted_dockercfg_path: ''\n  dockercfg_service: [db]\n- name: b\n  type: push\n  service: app\n  image_name: app\n  dockercfg_service: db\n  encrypted_dockercfg_path: d.encrypted\n",
			want: `codeship-steps.yml:5: step "a": key "encrypted_dockercfg_path": empty` + "\n" +
				`codeship-steps.yml:6: step "a": key "dockercfg_service": want a string, got a list` + "\n" +
				`codeship-steps.yml:12: step "b": keys "dockercfg_service" and "encrypted_dockercfg_path" cannot be used together`,
		},
		{
			name:  "a credential service on a run step that is not a service",
			steps: "- service: app\n  dockercfg_service: creds\n",
			want:  `codeship-steps.yml:2: key "dockercfg_service": unknown service "creds"`,
		},
		{
			name:  "a tag that is a bad regular expression",
			steps: "- service: app\n  tag: ^(master\n",
			want:  "codeship-steps.yml:2: key \"tag\": error parsing regexp: missing closing ): `^(master`",
		},
		{
			name:  "an exclude that is a bad regular expression",
			steps: "- service: app\n  exclude: \"[a-$\"\n",
			want:  "codeship-steps.yml:2: key \"exclude\": error parsing regexp: invalid character class range: `a-$`",
		},
		{
			name:  "a steps alias bomb is refused quickly",
			steps: stepBomb(),
			want:  "codeship-steps.yml: more than 1000000 nodes once aliases are expanded",
		},
		{
			name:  "deep nesting is refused",
			steps: strings.Repeat("[", 150) + strings.Repeat("]", 150) + "\n",
			want:  "codeship-steps.yml:1: nested more than 100 levels deep (counting expanded aliases)",
		},
		{
			name:     "services expansion that grows too large is refused",
			services: "a: {image: x}\nb: {image: x}\nc: {image: x}\nd: {image: x}\ne: {image: x}\nf: {image: x}\ng: {image: x}\nh: {image: x}\ni: {image: x}\nj: {image: x}\n",
			steps:    nestedServices(6),
			want:     `codeship-steps.yml: more than 100000 steps once aliases and "services" groups are expanded`,
		},
		// Both files at once.
		{
			name:     "every problem of both files is reported, in file order",
			services: "app:\n  imgae: alpine\n  volumes: 3\ndb:\n  image: postgres\n  add_docker: on\n",
			steps:    "- name: a\n  service: app\n  retries: 3\n- name: a\n  service: nope\n",
			want: `codeship-services.yml:1: service "app": no image` + "\n" +
				`codeship-services.yml:2: service "app": unknown key "imgae" (did you mean "image"?)` + "\n" +
				`codeship-services.yml:3: service "app": key "volumes": want a list, got a number` + "\n" +
				`codeship-services.yml:6: service "db": key "add_docker": "on" is not true or false` + "\n" +
				`codeship-steps.yml:3: step "a": unknown key "retries"` + "\n" +
				`codeship-steps.yml:4: step "a": name already used at line 1` + "\n" +
				`codeship-steps.yml:5: step "a": unknown service "nope"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			services, steps := tc.services, tc.steps
			if services == "" {
				services = okServices
			}
			if steps == "" {
				steps = okSteps
			}
			dir := writeFiles(t, map[string]string{
				"codeship-services.yml": services,
				"codeship-steps.yml":    steps,
			})
			start := time.Now()
			p, err := Load(dir, "", "")
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Load took %v", d)
			}
			if err == nil {
				t.Fatalf("Load succeeded with %+v, want error:\n%s", p, tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("Load error:\n%s\nwant:\n%s", got, tc.want)
			}
			if p != nil {
				t.Errorf("Load returned a project with an error")
			}
		})
	}
}

// nestedServices is a steps list of depth levels of parallel groups over ten services.
func nestedServices(depth int) string {
	var b strings.Builder
	indent := ""
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "%s- type: parallel\n%s  services: [a, b, c, d, e, f, g, h, i, j]\n%s  steps:\n", indent, indent, indent)
		indent += "    "
	}
	fmt.Fprintf(&b, "%s- command: x\n", indent)
	return b.String()
}
