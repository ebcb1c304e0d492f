package session

import (
	"testing"

	"github.com/spf13/pflag"
)

func TestGlobalFlagsComeFromTheEnvironmentUnlessGiven(t *testing.T) {
	t.Setenv("CONTAINERD_ADDRESS", "/run/other/containerd.sock")
	t.Setenv("CRUNCI_ADDRESS", "")
	t.Setenv("CRUNCI_NAMESPACE", "ci-ns")
	t.Setenv("CRUNCI_STATE_DIR", "/var/lib/crun-ci-ci")
	parse := func(args ...string) Options {
		t.Helper()
		var f Flags
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		f.AddGlobal(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		o, err := f.Options()
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	if o := parse(); o.Address != "/run/other/containerd.sock" || o.Namespace != "ci-ns" || o.StateDir != "/var/lib/crun-ci-ci" {
		t.Errorf("from the environment: %+v", o)
	}
	t.Setenv("CRUNCI_ADDRESS", "/run/crun-ci.sock")
	if o := parse(); o.Address != "/run/crun-ci.sock" {
		t.Errorf("CRUNCI_ADDRESS beside CONTAINERD_ADDRESS: %q", o.Address)
	}
	if o := parse("--namespace", "flag-ns", "--state-dir", "/tmp/s", "--address", "/a.sock"); o.Address != "/a.sock" || o.Namespace != "flag-ns" || o.StateDir != "/tmp/s" {
		t.Errorf("flags win: %+v", o)
	}
}

func TestApplyTakesDashEKeyFromCrunCIsEnvironment(t *testing.T) {
	t.Setenv("FROM_HOST", "yes")
	var f Flags
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	f.AddContainers(fs, "every container")
	if err := fs.Parse([]string{"-e", "A=1", "-e", "FROM_HOST", "-e", "NOT_SET_ANYWHERE_42"}); err != nil {
		t.Fatal(err)
	}
	var b Build
	if err := f.Apply(&b); err != nil {
		t.Fatal(err)
	}
	if got := b.Env; len(got) != 2 || got[0] != "A=1" || got[1] != "FROM_HOST=yes" {
		t.Errorf("Env = %q", got)
	}
	if err := fs.Parse([]string{"-e", "=x"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(&Build{}); err == nil {
		t.Error("-e =x: no error")
	}
}
