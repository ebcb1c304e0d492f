package remote

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
)

// scriptedStore is a content store whose ingests are what the test says.
type scriptedStore struct {
	content.Store
	mu       sync.Mutex
	statuses []content.Status
}

func (s *scriptedStore) set(st ...content.Status) {
	s.mu.Lock()
	s.statuses = st
	s.mu.Unlock()
}

func (s *scriptedStore) ListStatuses(context.Context, ...string) ([]content.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]content.Status(nil), s.statuses...), nil
}

// syncBuffer is a bytes.Buffer safe for the board's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until out holds sub.
func waitFor(t *testing.T, out *syncBuffer, sub string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), sub) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %q", sub, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTheBoardRedrawsALinePerLayerInPlace(t *testing.T) {
	cs := &scriptedStore{}
	var out syncBuffer
	b := newBoard(&out, cs)
	const l1, l2 = "layer-sha256:aaaaaaaaaaaa0000", "layer-sha256:bbbbbbbbbbbb0000"

	b.begin(context.Background())
	b.begin(context.Background()) // a second pull at the same time shares the board
	cs.set(content.Status{Ref: l1, Offset: 1 << 20, Total: 4 << 20}, content.Status{Ref: l2, Offset: 0, Total: 2 << 20})
	waitFor(t, &out, "layer aaaaaaaaaaaa 1.0 MiB of 4.0 MiB")
	waitFor(t, &out, "layer bbbbbbbbbbbb 0 B of 2.0 MiB")
	cs.set(content.Status{Ref: l1, Offset: 3 << 20, Total: 4 << 20}, content.Status{Ref: l2, Offset: 1 << 20, Total: 2 << 20})
	waitFor(t, &out, "layer aaaaaaaaaaaa 3.0 MiB of 4.0 MiB")
	// Redrawn in place: the cursor goes up over the two lines and clears them.
	if !strings.Contains(out.String(), "\x1b[2F\x1b[J") {
		t.Errorf("no redraw over 2 lines in %q", out.String())
	}
	cs.set(content.Status{Ref: l1, Offset: 3 << 20, Total: 4 << 20})
	waitFor(t, &out, "layer bbbbbbbbbbbb done (2.0 MiB)\n")

	b.end("pulled one")
	cs.set()
	b.end("pulled two")
	got := out.String()
	if !strings.Contains(got, "layer aaaaaaaaaaaa done (4.0 MiB)\n") {
		t.Errorf("the last layer's line is missing: %q", got)
	}
	if !strings.HasSuffix(got, "pulled two\n") || !strings.Contains(got, "pulled one\n") {
		t.Errorf("the pulls' lines are missing or not last: %q", got)
	}
	// Nothing of the block is left on screen after the last pull: the last line drawn
	// was cleared (its cursor-up and clear come after it).
	last := strings.LastIndex(got, "of 4.0 MiB")
	if clear := strings.LastIndex(got, "\x1b[J"); clear < last {
		t.Errorf("the block was not cleared at the end: %q", got)
	}
}
