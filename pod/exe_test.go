package pod

import (
	"os"
	"slices"
	"testing"

	"github.com/crun-ci/crun-ci/secrets"
)

func TestParseLibList(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd4b9e5000)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0c1e000000)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f0c1e2b0000)\n"
	libs, err := parseLibList([]byte(out))
	if err != nil || len(libs) != 1 || libs["libc.so.6"] != "/lib/x86_64-linux-gnu/libc.so.6" {
		t.Errorf("libs %v, %v: want libc.so.6 alone", libs, err)
	}
	for _, bad := range []string{"\tlibfoo.so.1 => not found\n", "\tlibc.so.6 => relative/libc.so.6 (0x1)\n", "\t../x => /lib/x (0x1)\n"} {
		if libs, err := parseLibList([]byte(bad)); err == nil {
			t.Errorf("%q: read %v, want an error", bad, libs)
		}
	}
}

// A dynamically linked executable brings its interpreter and libraries, and the
// interpreter runs it; a static one runs as it is.
func TestExeRunsThroughItsInterpreterWhenDynamic(t *testing.T) {
	static := &Exe{Path: "/usr/bin/crun-ci"}
	if got, want := static.Command("init", "--"), []string{secrets.HandoffExe, "init", "--"}; !slices.Equal(got, want) {
		t.Errorf("static: %q, want %q", got, want)
	}
	if ms := static.Mounts(); len(ms) != 1 || ms[0].Source != "/usr/bin/crun-ci" || ms[0].Destination != secrets.HandoffExe {
		t.Errorf("static mounts %+v", ms)
	}
	dyn := &Exe{Path: "/root/go/bin/crun-ci", Interp: "/lib64/ld-linux-x86-64.so.2", Libs: map[string]string{"libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6"}}
	if got, want := dyn.Command("init", "--"), []string{"/.crun-ci/lib/ld.so", "--library-path", "/.crun-ci/lib", secrets.HandoffExe, "init", "--"}; !slices.Equal(got, want) {
		t.Errorf("dynamic: %q, want %q", got, want)
	}
	var dests []string
	for _, m := range dyn.Mounts() {
		dests = append(dests, m.Source+" "+m.Destination+" "+m.Options[len(m.Options)-1])
	}
	want := []string{"/root/go/bin/crun-ci " + secrets.HandoffExe + " ro", "/lib64/ld-linux-x86-64.so.2 /.crun-ci/lib/ld.so ro", "/lib/x86_64-linux-gnu/libc.so.6 /.crun-ci/lib/libc.so.6 ro"}
	if !slices.Equal(dests, want) {
		t.Errorf("dynamic mounts %q, want %q", dests, want)
	}
}

// The test binary itself, whichever way it was linked.
func TestExeAtTheTestBinary(t *testing.T) {
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e, err := exeAt(p)
	if err != nil {
		t.Fatal(err)
	}
	if e.Interp != "" && e.Libs["libc.so.6"] == "" {
		t.Errorf("dynamically linked (%s) but no libc in %v", e.Interp, e.Libs)
	}
	t.Logf("interpreter %q, libraries %v", e.Interp, e.Libs)
}
