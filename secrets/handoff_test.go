package secrets

import (
	"bytes"
	"testing"

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
