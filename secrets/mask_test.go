package secrets

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// maskAll is the reference of Masker: hide every byte of every occurrence of every
// secret, one Mask per run of hidden bytes, with the whole input at hand.
func maskAll(input string, secrets []string) string {
	hidden := make([]bool, len(input))
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for i := 0; i+len(s) <= len(input); i++ {
			if input[i:i+len(s)] == s {
				for j := i; j < i+len(s); j++ {
					hidden[j] = true
				}
			}
		}
	}
	var b strings.Builder
	for i := range len(input) {
		switch {
		case !hidden[i]:
			b.WriteByte(input[i])
		case i == 0 || !hidden[i-1]:
			b.WriteString(Mask)
		}
	}
	return b.String()
}

func maxLen(secrets []string) int {
	n := 0
	for _, s := range secrets {
		n = max(n, len(s))
	}
	return n
}

// maskChunks writes chunks to a new Masker, checking after each write that it holds back
// less than the longest secret, and closes it.
func maskChunks(t *testing.T, secrets []string, chunks []string) string {
	t.Helper()
	var out bytes.Buffer
	m := NewMasker(&out, secrets)
	for _, c := range chunks {
		n, err := m.Write([]byte(c))
		if err != nil || n != len(c) {
			t.Fatalf("Write(%q) = %d, %v", c, n, err)
		}
		if held := len(m.pending); held > 0 && held >= maxLen(secrets) {
			t.Fatalf("after Write(%q) the Masker holds back %d bytes, want < %d", c, held, maxLen(secrets))
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestMasker(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		input   string
		want    string
	}{
		{"no secrets", nil, "hello hunter2\n", "hello hunter2\n"},
		{"only empty secrets", []string{"", ""}, "hello\n", "hello\n"},
		{"empty input", []string{"hunter2"}, "", ""},
		{"a secret in a line", []string{"hunter2"}, "password: hunter2!\n", "password: ***!\n"},
		{"a secret at both ends", []string{"hunter2"}, "hunter2 and hunter2", "*** and ***"},
		{"a secret alone", []string{"hunter2"}, "hunter2", "***"},
		{"repeated occurrences merge", []string{"ab"}, "xababx ab", "x***x ***"},
		{"two secrets side by side merge", []string{"foo", "bar"}, "foobar foo-bar", "*** ***-***"},
		{"overlapping secrets", []string{"abc", "bcd"}, "xabcdx bcd abc", "x***x *** ***"},
		{"overlap reveals no part of the second secret", []string{"password1", "1234"}, "password1234", "***"},
		{"a secret that is a prefix of another", []string{"abc", "abcdef"}, "abcdef abcdeX abc", "*** ***deX ***"},
		{"the longer secret listed first", []string{"abcdef", "abc"}, "abcdef abcde", "*** ***de"},
		{"a secret inside another", []string{"cd", "abcdef"}, "abcdef cd", "*** ***"},
		{"a secret that overlaps itself", []string{"aa"}, "aaa baab", "*** b***b"},
		{"partial occurrences stay", []string{"hunter2"}, "hunter hunte2 huhunter2", "hunter hunte2 hu***"},
		{"a partial occurrence at the end", []string{"hunter2"}, "a hunter", "a hunter"},
		{"a one-byte secret", []string{"x"}, "axbxx", "a***b***"},
		{"a secret with a newline", []string{"line1\nline2"}, "-----\nline1\nline2\n", "-----\n***\n"},
		{"UTF-8 secrets", []string{"pässwörd", "秘密"}, "a pässwörd 秘密!", "a *** ***!"},
		{"duplicate secrets", []string{"ab", "ab"}, "ab", "***"},
		{"stars in the input", []string{"ab"}, "***ab**", "********"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ref := maskAll(tt.input, tt.secrets); ref != tt.want {
				t.Fatalf("reference masks %q as %q, test wants %q", tt.input, ref, tt.want)
			}
			if diff := cmp.Diff(tt.want, maskChunks(t, tt.secrets, []string{tt.input})); diff != "" {
				t.Errorf("one write (-want +got):\n%s", diff)
			}
			bytewise := make([]string, len(tt.input))
			for i := 0; i < len(tt.input); i++ {
				bytewise[i] = tt.input[i : i+1]
			}
			if diff := cmp.Diff(tt.want, maskChunks(t, tt.secrets, bytewise)); diff != "" {
				t.Errorf("a write per byte (-want +got):\n%s", diff)
			}
			for i := 0; i <= len(tt.input); i++ {
				for j := i; j <= len(tt.input); j++ {
					chunks := []string{tt.input[:i], tt.input[i:j], tt.input[j:]}
					if diff := cmp.Diff(tt.want, maskChunks(t, tt.secrets, chunks)); diff != "" {
						t.Errorf("writes %q (-want +got):\n%s", chunks, diff)
					}
				}
			}
		})
	}
}

func TestMaskerHoldsBackOnlyPossibleSecrets(t *testing.T) {
	var out bytes.Buffer
	m := NewMasker(&out, []string{"hunter2", "swordfish"})
	steps := []struct{ write, want string }{
		{"hello ", "hello "},
		{"hun", "hello "},
		{"t", "hello "},
		{"x ", "hello huntx "},
		{"sword", "hello huntx "},
		{"fish", "hello huntx ***"},
		{"\nhunter", "hello huntx ***\n"},
		{"2", "hello huntx ***\n***"},
		{" swo", "hello huntx ***\n*** "},
	}
	for _, s := range steps {
		if _, err := m.Write([]byte(s.write)); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(s.want, out.String()); diff != "" {
			t.Errorf("after Write(%q) (-want +got):\n%s", s.write, diff)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("hello huntx ***\n*** swo", out.String()); diff != "" {
		t.Errorf("after Close (-want +got):\n%s", diff)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := m.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
}

type failWriter struct{ err error }

func (w failWriter) Write(p []byte) (int, error) { return 0, w.err }

func TestMaskerWriteError(t *testing.T) {
	boom := errors.New("boom")
	m := NewMasker(failWriter{boom}, []string{"hunter2"})
	if _, err := m.Write([]byte("hunt")); err != nil {
		t.Fatalf("Write of a held-back prefix: %v", err)
	}
	if _, err := m.Write([]byte("er")); err != nil {
		t.Fatalf("Write of a held-back prefix: %v", err)
	}
	if _, err := m.Write([]byte("3 ")); !errors.Is(err, boom) {
		t.Fatalf("Write = %v, want %v", err, boom)
	}
	if _, err := m.Write([]byte("more")); !errors.Is(err, boom) {
		t.Errorf("Write after a failure = %v, want %v", err, boom)
	}
	if err := m.Close(); !errors.Is(err, boom) {
		t.Errorf("Close after a failure = %v, want %v", err, boom)
	}
}
