package builds

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestAKeptRecordReadsBackAndABadOneIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "abc123")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if k, err := ReadKept(dir); k != nil || err != nil {
		t.Fatalf("no record: got %v, %v; want nil, nil", k, err)
	}
	want := Kept{Build: "abc123", Project: "/src", Network: "bridge", Created: time.Now().UTC().Round(0), Steps: []KeptStep{{Name: "a", Container: "crunci-abc123-1-app"}, {Name: "a", Container: "crunci-abc123-2-app"}}}
	if err := WriteKept(dir, want); err != nil {
		t.Fatal(err)
	}
	k, err := ReadKept(dir)
	if err != nil || k.Project != "/src" || len(k.Steps) != 2 || !k.Created.Equal(want.Created) {
		t.Fatalf("read %+v, %v", k, err)
	}
	if s := k.Step("a"); s == nil || s.Container != "crunci-abc123-2-app" {
		t.Errorf("Step(a) = %+v, want the last run of it", s)
	}
	for name, data := range map[string]string{
		"not JSON":          "{",
		"another build's":   `{"build": "other"}`,
		"larger than bound": `{"build": "abc123", "project": "` + strings.Repeat("x", maxKept) + `"}`,
	} {
		if err := os.WriteFile(keptPath(dir), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if k, err := ReadKept(dir); err == nil {
			t.Errorf("%s: read %+v, want an error", name, k)
		}
	}
	// A FIFO in its place is refused, not waited on.
	os.Remove(keptPath(dir))
	if err := unix.Mkfifo(keptPath(dir), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := ReadKept(dir); err == nil {
		t.Errorf("read %+v from a FIFO", k)
	}
	// A symlink planted in its place is not followed.
	os.Remove(keptPath(dir))
	target := filepath.Join(t.TempDir(), "k.json")
	os.WriteFile(target, []byte(`{"build": "abc123"}`), 0o600)
	os.Symlink(target, keptPath(dir))
	if k, err := ReadKept(dir); err == nil {
		t.Errorf("read %+v through a symlink", k)
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{"b92d80711d": true, "a.b-c_d": true, "": false, "..": false, ".x": false, "a/b": false, "-x": false, strings.Repeat("a", 65): false} {
		if got := ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}
