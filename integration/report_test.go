package integration

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The JUnit report as GitLab's unit test reports and Jenkins' JUnit plugin read it:
// testsuites > testsuite > testcase (classname, name, time), a failure with its message
// and the step's last output lines, skipped steps with the reason.
type junitReport struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Skipped  int      `xml:"skipped,attr"`
	Suites   []struct {
		Name  string `xml:"name,attr"`
		Tests int    `xml:"tests,attr"`
		Cases []struct {
			Classname string `xml:"classname,attr"`
			Name      string `xml:"name,attr"`
			Time      string `xml:"time,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Skipped *struct {
				Message string `xml:"message,attr"`
			} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func TestJUnitReport(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml": `
- {name: deploy, service: app, command: "true", tag: master}
- name: tests
  type: parallel
  steps:
  - {name: unit, service: app, command: "true"}
  - {name: lint, service: app, command: "sh -c 'for i in $(seq 1 150); do echo line $i; done; echo oops; exit 3'"}
`,
	})
	report := filepath.Join(t.TempDir(), "junit.xml")
	r := runSteps(t, dir, "--junit", report)
	wantCode(t, r, 1)
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var got junitReport
	if err := xml.Unmarshal(data, &got); err != nil {
		t.Fatalf("the report does not parse: %v\n%s", err, data)
	}
	if got.Tests != 3 || got.Failures != 1 || got.Skipped != 1 || len(got.Suites) != 1 || len(got.Suites[0].Cases) != 3 {
		t.Fatalf("report:\n%s", data)
	}
	cases := got.Suites[0].Cases
	if c := cases[0]; c.Classname != "steps" || c.Name != "deploy" || c.Skipped == nil || !strings.Contains(c.Skipped.Message, "pass --tag to run it") {
		t.Errorf("deploy: %+v", c)
	}
	if c := cases[1]; c.Classname != "tests" || c.Name != "unit" || c.Time == "" || c.Failure != nil || c.Skipped != nil {
		t.Errorf("unit: %+v", c)
	}
	lint := cases[2]
	if lint.Classname != "tests" || lint.Name != "lint" || lint.Failure == nil || lint.Failure.Message != "exit code 3" || lint.Failure.Type != "exit code" {
		t.Fatalf("lint: %+v", lint)
	}
	// The last 100 lines.
	lines := strings.Split(lint.Failure.Text, "\n")
	if len(lines) != 100 || lines[0] != "line 52" || lines[98] != "line 150" || lines[99] != "oops" {
		t.Errorf("lint's output in the report: %d lines, %q … %q", len(lines), lines[0], lines[len(lines)-1])
	}
}

// --events: a line of JSON per event, each with the format's version, for the build,
// every step (with its phases), its dependencies and its teardown.
func TestEventsFollowTheBuild(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "db:\n  image: busybox\n  command: sleep 3600\napp:\n  image: busybox\n  depends_on: [db]\n",
		"codeship-steps.yml": `
- type: serial
  name: all
  steps:
  - {name: one, service: app, command: "true"}
  - {name: two, service: app, command: "false"}
`,
	})
	file := filepath.Join(t.TempDir(), "events.jsonl")
	r := runSteps(t, dir, "--events", file)
	wantCode(t, r, 1)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	type event struct {
		Version    int                `json:"version"`
		Time       time.Time          `json:"time"`
		Type       string             `json:"type"`
		Build      string             `json:"build"`
		Step       string             `json:"step"`
		Service    string             `json:"service"`
		Group      []string           `json:"group"`
		Status     string             `json:"status"`
		ExitCode   *int               `json:"exit_code"`
		DurationMS *float64           `json:"duration_ms"`
		Phases     map[string]float64 `json:"phases_ms"`
	}
	var events []event
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		if e.Version != 1 || e.Build == "" || e.Time.IsZero() {
			t.Errorf("event without version, build or time: %q", line)
		}
		events = append(events, e)
		seen[e.Type+" "+e.Step+" "+e.Service]++
	}
	if first, last := events[0], events[len(events)-1]; first.Type != "build-start" || last.Type != "build-end" || last.Status != "failed" || last.DurationMS == nil {
		t.Errorf("first %+v, last %+v", first, last)
	}
	for _, k := range []string{"step-start one app", "step-end one app", "step-start two app", "step-end two app", "dependency-ready one db", "dependency-ready two db", "step-removed one app", "step-removed two app"} {
		if seen[k] != 1 {
			t.Errorf("%q: %d events, want 1 (all: %v)", k, seen[k], seen)
		}
	}
	for _, e := range events {
		if e.Type != "step-end" || e.Step == "all" {
			continue
		}
		if len(e.Group) != 1 || e.Group[0] != "all" || e.DurationMS == nil || len(e.Phases) != 6 || e.Phases["run"] <= 0 || e.Phases["start"] <= 0 {
			t.Errorf("step-end %+v", e)
		}
		if want := map[string]string{"one": "passed", "two": "failed"}[e.Step]; e.Status != want || (e.Step == "two") != (e.ExitCode != nil && *e.ExitCode == 1) {
			t.Errorf("step-end of %s: status %s, exit code %v", e.Step, e.Status, e.ExitCode)
		}
	}
}

// --log-format json: everything crun-ci says on stderr is a JSON entry (warnings,
// errors, progress), and the summary is a JSON object; the containers' lines stay as
// they are.
func TestLogFormatJSONCoversWhatCrunCISays(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  container_name: ignored\n",
		"codeship-steps.yml":    "- {name: ok, service: app, command: echo hello}\n- {name: bad, service: app, command: 'false'}\n",
	})
	r := runSteps(t, dir, "--log-format", "json")
	wantCode(t, r, 1)
	levels := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		var e struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Msg == "" {
			t.Errorf("stderr line not a JSON log entry: %q", line)
			continue
		}
		levels[e.Level]++
	}
	if levels["warning"] == 0 {
		t.Errorf("no warning entry for the ignored key: %s", r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	wantContains(t, "stdout", r.stdout, "ok/app | hello\n")
	var sum struct {
		Version int            `json:"version"`
		Type    string         `json:"type"`
		Passed  bool           `json:"passed"`
		Counts  map[string]int `json:"counts"`
		Results []struct {
			Step     string `json:"step"`
			Status   string `json:"status"`
			ExitCode *int   `json:"exit_code"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatalf("the last line of stdout is not the JSON summary: %q: %v", lines[len(lines)-1], err)
	}
	if sum.Version != 1 || sum.Type != "summary" || sum.Passed || sum.Counts["passed"] != 1 || sum.Counts["failed"] != 1 || len(sum.Results) != 2 || sum.Results[1].ExitCode == nil || *sum.Results[1].ExitCode != 1 {
		t.Errorf("summary: %+v", sum)
	}
	wantNotContains(t, "stdout", r.stdout, "PASSED")

	// A pipeline that cannot start: its errors are entries too.
	os.WriteFile(filepath.Join(dir, "codeship-services.yml"), []byte("app:\n  image: busybox\n  volumes: [./missing:/m, ./gone:/n]\n"), 0o644)
	r = runSteps(t, dir, "--log-format", "json")
	wantCode(t, r, 2)
	errs := 0
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		var e struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Errorf("stderr line not a JSON log entry: %q", line)
		} else if e.Level == "error" {
			errs++
		}
	}
	if errs < 2 {
		t.Errorf("%d error entries, want one per problem:\n%s", errs, r.stderr)
	}
}
