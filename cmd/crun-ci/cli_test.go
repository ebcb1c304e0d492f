package main

import (
	"bytes"
	"context"
	"os/exec"
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

func TestCompletionAndManualAreMadeFromTheFlags(t *testing.T) {
	out := func(args ...string) string {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); err != nil {
			t.Fatalf("%q: %v\n%s", args, err, stderr.String())
		}
		return stdout.String()
	}
	bash := out("completion", "bash")
	for _, want := range []string{"complete -o filenames -F _crun_ci crun-ci", `steps) words="`, "--junit", "--dry-run", "--plan"} {
		if !strings.Contains(bash, want) {
			t.Errorf("bash completion without %q", want)
		}
	}
	if sh, err := exec.LookPath("bash"); err == nil {
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(bash)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("bash -n: %v: %s", err, b)
		}
	}
	if zsh := out("completion", "zsh"); !strings.HasPrefix(zsh, "#compdef crun-ci\n") {
		t.Errorf("zsh completion: %.40q", zsh)
	}
	if fish := out("completion", "fish"); !strings.Contains(fish, "complete -c crun-ci -n '__fish_seen_subcommand_from steps' -l junit -d ") {
		t.Errorf("fish completion without steps --junit")
	}
	man := out("man")
	for _, want := range []string{`.TH CRUN\-CI 1`, ".SS steps\n", ".SS run SERVICE [COMMAND [ARGS\\[u2026]]]\n", `\fB\-\-junit\fR \fIstring\fR`, ".SH EXIT STATUS"} {
		if !strings.Contains(man, want) {
			t.Errorf("manual page without %q", want)
		}
	}
	for _, r := range man {
		if r > 127 {
			t.Errorf("manual page with a raw %q (troff wants \\[uXXXX])", r)
			break
		}
	}
}
