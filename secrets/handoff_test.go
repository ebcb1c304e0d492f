package secrets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTheHandOffEncodingRoundTrips(t *testing.T) {
	for _, entries := range [][]string{
		nil,
		{"A=1"},
		{"TOKEN=a b\nc", "EMPTY=", "EQ=x=y"},
	} {
		data := EncodeEnv(entries)
		// The writer keeps the FIFO open: whatever follows must not be read.
		got, err := DecodeEnv(bytes.NewReader(append(data, "trailing"...)))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(entries, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	}
	for _, bad := range []string{"", "x\n", "-1\n", "10\nshort"} {
		if _, err := DecodeEnv(bytes.NewReader([]byte(bad))); err == nil {
			t.Errorf("DecodeEnv(%q) succeeded", bad)
		}
	}
}

func TestHandoffHandsTheVariablesOverOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "env")
	h, err := NewHandoff(path, os.Getuid(), os.Getgid(), []string{"TOKEN=s3cret", "B=2"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadEnvFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"TOKEN=s3cret", "B=2"}; !slices.Equal(got, want) {
		t.Errorf("read %q, want %q", got, want)
	}
	if err := h.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the FIFO is still there: %v", err)
	}
	// A second Close (a member deleted, then its failed Create undone) returns at once.
	closed := make(chan error, 1)
	go func() { closed <- h.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("second Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second Close hangs")
	}
	// Nobody read a large hand-off: closing it is no error.
	h, err = NewHandoff(filepath.Join(t.TempDir(), "env"), os.Getuid(), os.Getgid(), []string{"BIG=" + strings.Repeat("x", 1<<20)})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("Close of an unread hand-off: %v", err)
	}
}
