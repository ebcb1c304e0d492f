package secrets

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// Seeds besides these live in testdata/fuzz/<target>.

func FuzzDecrypt(f *testing.F) {
	for _, name := range []string{"env.v1.encrypted", "env.v2.encrypted", "env.v2-crlf.encrypted"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, plain := range []string{"", "A=1\n", strings.Repeat("x", 100)} {
		data, err := Encrypt(testKey, []byte(plain))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{"", "codeship:v2", "codeship:v2\n", "codeship:v2\r\n====", "codeship:", "codeship:v3\nAAAA",
		"AAAAAAAAAAAAAAAAAAAAAA==", "QQ==QQ==", "A", "A=1\n", "\xff\xfe", "codeship:v2\n" + strings.Repeat("A", 64)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		plain, err := Decrypt(testKey, data)
		if err != nil {
			if plain != nil {
				t.Errorf("Decrypt returned data with error %v", err)
			}
			if errors.Is(err, ErrWrongKey) == errors.Is(err, ErrMalformed) {
				t.Errorf("error %v is not exactly one of ErrWrongKey and ErrMalformed", err)
			}
			return
		}
		// Whatever decrypted must survive a round trip.
		again, err := Encrypt(testKey, plain)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decrypt(testKey, again)
		if err != nil || !bytes.Equal(back, plain) {
			t.Errorf("round trip of %d decrypted bytes = %d bytes, %v", len(plain), len(back), err)
		}
	})
}

func FuzzParseEnv(f *testing.F) {
	for _, s := range []string{"", "A=1\n", "# c\n\nexport A=\"b c\" \r\nB==\n", "\uFEFFA=1", "A\n=1\nA B=1\nexport\n", "A=\x00", "\r\n\r\n", "export  =x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		vars, err := ParseEnv(data)
		if err != nil {
			if vars != nil {
				t.Error("ParseEnv returned variables with an error")
			}
			return
		}
		lines := bytes.Count(data, []byte{'\n'}) + 1
		last := 0
		for _, v := range vars {
			if v.Key == "" || strings.ContainsFunc(v.Key, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				t.Errorf("line %d: bad key %q accepted", v.Line, v.Key)
			}
			if strings.ContainsRune(v.Value, 0) || strings.ContainsRune(v.Value, '\n') {
				t.Errorf("line %d: value %q holds a NUL or a newline", v.Line, v.Value)
			}
			if v.Line <= last || v.Line > lines {
				t.Errorf("line numbers out of order: %d after %d (of %d lines)", v.Line, last, lines)
			}
			last = v.Line
		}
	})
}

func FuzzMasker(f *testing.F) {
	f.Add("hunter2", "swordfish", "my hunter2 and swordfish", uint8(3))
	f.Add("abc", "abcdef", "abcdeabcdef", uint8(1))
	f.Add("password1", "1234", "password1234", uint8(5))
	f.Add("aa", "", "aaaaa", uint8(0))
	f.Add("秘密", "密", "秘密密秘", uint8(2))
	f.Fuzz(func(t *testing.T, s1, s2, input string, step uint8) {
		secrets := []string{s1, s2}
		want := maskAll(input, secrets)
		var chunks []string
		n := int(step%16) + 1
		for rest := input; len(rest) > 0; {
			k := min(n, len(rest))
			chunks, rest = append(chunks, rest[:k]), rest[k:]
			n = n*7%16 + 1
		}
		if got := maskChunks(t, secrets, chunks); got != want {
			t.Errorf("Masker(%q) writes %q = %q, want %q", secrets, chunks, got, want)
		}
		// No secret survives, unless it could be made of the mask itself.
		for _, s := range secrets {
			if s != "" && !strings.Contains(s, "*") && strings.Contains(want, s) {
				t.Errorf("output %q still holds secret %q", want, s)
			}
		}
	})
}
