package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestTheCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args         []string
		code         int
		stdout, err  string
		stderrPrefix string
	}{
		{args: []string{"stpes"}, code: 2, err: `unknown command "stpes" (did you mean "steps"?) (want steps, run,`},
		{args: []string{"steps", "--max-paralel", "2"}, code: 2, err: `unknown flag: --max-paralel (did you mean "--max-parallel"?)`},
		{args: []string{"steps", "--no-such-flag"}, code: 2, err: `unknown flag: --no-such-flag`},
		{args: []string{"--version"}, stdout: "crun-ci "},
		{args: []string{"version"}, stdout: "crun-ci "},
		{args: []string{"help", "steps"}, stderrPrefix: "usage: crun-ci steps [flags]"},
		{args: []string{"help", "nope"}, code: 2, err: `unknown command "nope"`},
		{args: []string{"encrypt", "a"}, code: 2, err: "encrypt: want IN and OUT, got 1 arguments"},
		{args: []string{"validate", "x"}, code: 2, err: `validate takes no arguments, got ["x"]`},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), tc.args, &stdout, &stderr)
		if code := exitCode(err); code != tc.code {
			t.Errorf("%q: exit %d (%v), want %d", tc.args, code, err, tc.code)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.err)
		}
		if !strings.HasPrefix(stdout.String(), tc.stdout) {
			t.Errorf("%q: stdout %q, want %q…", tc.args, stdout.String(), tc.stdout)
		}
		if !strings.HasPrefix(stderr.String(), tc.stderrPrefix) || tc.stderrPrefix != "" && !strings.Contains(stderr.String(), "--junit") {
			t.Errorf("%q: stderr %q, want %q…", tc.args, stderr.String(), tc.stderrPrefix)
		}
	}
}
