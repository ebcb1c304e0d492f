package steps

import (
	"cmp"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/crun-ci/crun-ci/config"
)

// The JUnit XML that GitLab, Jenkins and Buildkite read: testsuites > testsuite >
// testcase, with failure, error and skipped children and system-out, times in seconds.
// GitLab's unit test reports take a testcase's classname and name, time, failure or
// error (message, type and text) and skipped; Jenkins' JUnit plugin the same, with the
// classname as a class path.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Skipped   int         `xml:"skipped,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr,omitempty"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Classname string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitProblem `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the summary as JUnit XML: one testsuite for the build, one testcase
// per run and push step (classname the groups around it joined by "/", or "steps" at
// the top level; name the step), with its time; a failed step's failure carries its exit
// code (or "timeout", "interrupted", an out-of-memory note) and the last TailLines lines
// of its output; a step that did not run is an error when the build could not run it
// (its image, containerd), skipped when it was skipped or not run (with the reason).
func (s *Summary) WriteJUnit(w io.Writer) error {
	suite := junitSuite{Name: "crun-ci build " + s.BuildID}
	var total time.Duration
	var first time.Time
	for _, r := range s.Results {
		c := junitCase{Classname: strings.Join(r.Group, "/"), Name: config.Printable(r.Step), Time: seconds(r.Duration)}
		if c.Classname == "" {
			c.Classname = "steps"
		}
		output := strings.Join(r.Tail, "\n")
		switch r.Status {
		case Passed:
		case Failed:
			if r.Err != nil {
				c.Error = &junitProblem{Message: r.Err.Error(), Type: "error", Text: output}
				suite.Errors++
				break
			}
			msg := fmt.Sprintf("exit code %d", r.ExitCode)
			if r.Note != "" {
				msg += " (" + r.Note + ")"
			}
			c.Failure = &junitProblem{Message: msg, Type: "exit code", Text: output}
			suite.Failures++
		case TimedOut:
			c.Failure = &junitProblem{Message: "stopped after " + r.Duration.Round(time.Millisecond).String() + ": a timeout passed", Type: "timeout", Text: output}
			suite.Failures++
		case Interrupted:
			c.Failure = &junitProblem{Message: "the build was interrupted", Type: "interrupted", Text: output}
			suite.Failures++
		case Skipped, NotRun:
			c.Skipped = &junitProblem{Message: cmp.Or(r.Note, string(r.Status))}
			suite.Skipped++
		}
		suite.Tests++
		total += r.Duration
		if !r.Start.IsZero() && (first.IsZero() || r.Start.Before(first)) {
			first = r.Start
		}
		suite.Cases = append(suite.Cases, c)
	}
	suite.Time = seconds(total)
	if !first.IsZero() {
		suite.Timestamp = first.UTC().Format("2006-01-02T15:04:05")
	}
	doc := junitSuites{Name: "crun-ci", Tests: suite.Tests, Failures: suite.Failures, Errors: suite.Errors, Skipped: suite.Skipped, Time: suite.Time, Suites: []junitSuite{suite}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }
