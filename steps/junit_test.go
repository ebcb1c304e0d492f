package steps

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWriteJUnit(t *testing.T) {
	start := time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC)
	sum := &Summary{BuildID: "abc", Results: []Result{
		{Step: "unit", Service: "app", Status: Passed, Duration: 1500 * time.Millisecond, Group: []string{"tests", "fast"}, Start: start},
		{Step: "lint", Service: "app", Status: Failed, ExitCode: 3, Duration: time.Second, Tail: []string{"bad <code> & \x1b[31mred"}, Start: start.Add(time.Second)},
		{Step: "slow", Service: "app", Status: TimedOut, Duration: 2 * time.Second, Group: []string{"tests"}},
		{Step: "pull", Service: "db", Status: Failed, Err: errors.New("pull image x: not found")},
		{Step: "deploy", Service: "app", Status: Skipped, Note: "tag master; pass --tag to run it"},
		{Step: "after", Service: "app", Status: NotRun, Note: "an earlier step failed"},
	}}
	var buf bytes.Buffer
	if err := sum.WriteJUnit(&buf); err != nil {
		t.Fatal(err)
	}
	var got junitSuites
	if err := xml.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not XML: %v\n%s", err, buf.String())
	}
	if got.Tests != 6 || got.Failures != 2 || got.Errors != 1 || got.Skipped != 2 || len(got.Suites) != 1 {
		t.Errorf("counts: %+v", got)
	}
	s := got.Suites[0]
	if s.Name != "crun-ci build abc" || s.Timestamp != "2026-12-02T03:04:05" || s.Time != "4.500" {
		t.Errorf("suite: %q %q %q", s.Name, s.Timestamp, s.Time)
	}
	var lines []string
	for _, c := range s.Cases {
		line := fmt.Sprintf("%s %s %s", c.Classname, c.Name, c.Time)
		for _, p := range []*junitProblem{c.Failure, c.Error, c.Skipped} {
			if p != nil {
				line += fmt.Sprintf(" [%s: %s: %q]", p.Type, p.Message, p.Text)
			}
		}
		lines = append(lines, line)
	}
	want := []string{
		`tests/fast unit 1.500`,
		"steps lint 1.000 [exit code: exit code 3: \"bad <code> & \ufffd[31mred\"]",
		`tests slow 2.000 [timeout: stopped after 2s: a timeout passed: ""]`,
		`steps pull 0.000 [error: pull image x: not found: ""]`,
		`steps deploy 0.000 [: tag master; pass --tag to run it: ""]`,
		`steps after 0.000 [: an earlier step failed: ""]`,
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("test cases (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(buf.String(), xml.Header) {
		t.Errorf("no XML header:\n%s", buf.String())
	}
}

func TestTailKeepsTheLastLines(t *testing.T) {
	var tail Tail
	o := NewOutput(&bytes.Buffer{})
	st := o.Stream("p | ")
	st.tail = &tail
	for i := range TailLines + 5 {
		fmt.Fprintf(st, "line %d\n", i)
	}
	fmt.Fprint(st, "unterminated")
	st.Close()
	got := tail.Lines()
	if len(got) != TailLines || got[0] != "line 6" || got[TailLines-2] != fmt.Sprintf("line %d", TailLines+4) || got[TailLines-1] != "unterminated" {
		t.Errorf("%d lines: first %q, last %q", len(got), got[0], got[len(got)-1])
	}
}

func TestTheSummaryShowsTheGroups(t *testing.T) {
	sum := &Summary{BuildID: "abc", Duration: 3210 * time.Millisecond, Results: []Result{
		{Step: "deploy", Service: "app", Status: Skipped, Note: "tag master; pass --tag to run it"},
		{Step: "unit", Service: "app", Status: Passed, Duration: time.Second, Group: []string{"tests", "fast"}},
		{Step: "lint", Service: "app", Status: Passed, Duration: time.Second, Group: []string{"tests", "fast"}},
		{Step: "e2e", Service: "web", Status: Failed, ExitCode: 2, Duration: time.Second, Group: []string{"tests"}},
		{Step: "after", Service: "app", Status: NotRun, Note: "an earlier step failed"},
	}}
	var buf bytes.Buffer
	sum.Print(&buf)
	want := `
build abc:
  SKIPPED     deploy (app): tag master; pass --tag to run it
  tests:
    fast:
      PASSED      unit (app) 1.00s
      PASSED      lint (app) 1.00s
    FAILED      e2e (web) 1.00s: exit code 2
  NOT RUN     after (app): an earlier step failed
2 passed, 1 failed, 1 skipped, 1 not run in 3.21s
`
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
}

func TestAFailingHealthChecksOutputIsIndentedAndCut(t *testing.T) {
	if got := checkOutput("not ready"); got != ": not ready" {
		t.Errorf("one line: %q", got)
	}
	if got := checkOutput(""); got != "" {
		t.Errorf("none: %q", got)
	}
	var long []string
	for i := 1; i <= 8; i++ {
		long = append(long, fmt.Sprintf("line %d", i))
	}
	want := ", it said:\n      (3 lines before)\n      | line 4\n      | line 5\n      | line 6\n      | line 7\n      | line 8"
	if got := checkOutput(strings.Join(long, "\n")); got != want {
		t.Errorf("eight lines:\n%s\nwant\n%s", got, want)
	}
	if got := checkOutput("a\n\x1b[2Jb"); strings.Contains(got, "\x1b") {
		t.Errorf("a control character printed raw: %q", got)
	}
}

func TestPrefixesOnATerminalAreAlignedAndColouredByService(t *testing.T) {
	var buf bytes.Buffer
	o := NewOutput(&buf)
	o.width, o.color = 12, true
	for _, p := range []string{"test/app | ", "lint/app | ", "a-long-step/db | ", "x/app build | "} {
		s := o.Stream(p)
		fmt.Fprintln(s, "line")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	app := colorOf("app")
	want := []string{
		app + "test/app    \x1b[0m | line",
		app + "lint/app    \x1b[0m | line",
		colorOf("db") + "a-long-step/db\x1b[0m | line",
		app + "x/app build \x1b[0m | line",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	// Not a terminal: as written.
	buf.Reset()
	fmt.Fprintln(NewOutput(&buf).Stream("test/app | "), "line")
	if buf.String() != "test/app | line\n" {
		t.Errorf("plain: %q", buf.String())
	}
}
