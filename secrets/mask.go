package secrets

import (
	"errors"
	"io"
	"slices"
	"sync"
)

// Mask is what a [Masker] writes in place of a secret.
const Mask = "***"

// Masker is an io.WriteCloser that copies a stream to another writer with every
// occurrence of the given secrets replaced, even when an occurrence is split across Write
// calls.
//
// Every byte that belongs to an occurrence of any secret is hidden, and each run of
// hidden bytes becomes one `***`: overlapping or adjacent occurrences ("password1" and
// "1234" in "password1234") show as a single `***` and reveal no part of either secret.
// The output does not depend on how the input is split into writes.
//
// To see a whole occurrence, a Masker holds back the end of what it was given while that
// end could still start or continue a secret: never more than the length of the longest
// secret minus one byte, and nothing when no secret starts with it. Close writes what is
// held back. A Masker is safe for concurrent use; Close does not close the underlying
// writer.
type Masker struct {
	mu      sync.Mutex
	w       io.Writer
	byFirst [256][]string // secrets by first byte, longest first
	pending []byte        // input not yet written
	// covered is how many bytes of pending, from its start, lie in an occurrence found
	// earlier.
	covered int
	inMask  bool // the last byte written was hidden, so Mask is already out
	out     []byte
	err     error
}

var _ io.WriteCloser = (*Masker)(nil)

var errClosed = errors.New("secrets: write to a closed Masker")

// NewMasker returns a Masker writing to w. Empty secrets and duplicates are ignored; with
// no secrets left, the Masker copies its input unchanged. Very short secrets mask every
// occurrence of their bytes, wanted or not.
func NewMasker(w io.Writer, secrets []string) *Masker {
	m := &Masker{w: w}
	for _, s := range secrets {
		if s == "" || slices.Contains(m.byFirst[s[0]], s) {
			continue
		}
		m.byFirst[s[0]] = append(m.byFirst[s[0]], s)
	}
	for i := range m.byFirst {
		slices.SortFunc(m.byFirst[i], func(a, b string) int { return len(b) - len(a) })
	}
	return m
}

// Write masks p and writes what can be decided to the underlying writer. It returns
// len(p) unless the underlying writer failed; after a failure, or after Close, every
// Write fails.
func (m *Masker) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return 0, m.err
	}
	m.pending = append(m.pending, p...)
	if err := m.flush(false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close writes what the Masker held back, masked, and stops it. It does not close the
// underlying writer. Closing twice is not an error.
func (m *Masker) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if errors.Is(m.err, errClosed) {
		return nil
	}
	if m.err != nil {
		return m.err
	}
	err := m.flush(true)
	clear(m.pending)
	m.pending = nil
	if err != nil {
		return err
	}
	m.err = errClosed
	return nil
}

// flush writes every byte of pending whose fate is known. A byte is hidden when an
// occurrence starting at or before it covers it; occurrences are found at each start
// position in turn, and scanning stops at the first position where the rest of the input
// is a proper prefix of a secret, unless final.
func (m *Masker) flush(final bool) error {
	out := m.out[:0]
	i := 0
scan:
	for ; i < len(m.pending); i++ {
		rest := m.pending[i:]
		for _, s := range m.byFirst[rest[0]] {
			switch {
			case len(s) <= len(rest):
				if string(rest[:len(s)]) == s {
					m.covered = max(m.covered, i+len(s))
				}
			case !final && s[:len(rest)] == string(rest):
				break scan
			}
		}
		if i < m.covered {
			if !m.inMask {
				out = append(out, Mask...)
				m.inMask = true
			}
			continue
		}
		out = append(out, rest[0])
		m.inMask = false
	}
	// Keep the undecided tail at the start of pending.
	n := copy(m.pending, m.pending[i:])
	clear(m.pending[n:])
	m.pending = m.pending[:n]
	m.covered = max(0, m.covered-i)
	m.out = out[:0]
	if len(out) == 0 {
		return nil
	}
	_, err := m.w.Write(out)
	clear(out)
	if err != nil {
		m.err = err
	}
	return err
}
