package secrets

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testKey is the key of testdata/codeship.aes.
var testKey = mustParseKey("O6wC0DvBifTH3LKVrvgwRudqlll4VX9XGL8Eg/jfcKw=")

func mustParseKey(s string) Key {
	k, err := ParseKey([]byte(s))
	if err != nil {
		panic(err)
	}
	return k
}

// plaintexts covers empty input, partial and whole AES blocks, every byte value, lines
// with CRLF, and a large file.
func plaintexts() map[string][]byte {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	return map[string][]byte{
		"empty":         {},
		"one byte":      []byte("x"),
		"one block":     []byte("0123456789abcdef"),
		"env file":      []byte("# deploy\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG\r\nexport TOKEN=\"a b\" \n"),
		"every byte":    all,
		"large and odd": bytes.Repeat([]byte("secret line\n"), 10007),
	}
}

// shell runs a bash script in dir with the openssl and coreutils of the host: the
// independent implementation the tests compare against.
func shell(t *testing.T, dir, script string, env ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("shell: %v\n%s", err, stderr.Bytes())
	}
	return out
}

// Both scripts take the key as KEY_HEX and the plaintext in the file plain. The IV comes
// from `openssl rand`; coreutils base64 wraps at 76 columns, openssl's at 64.
const (
	opensslV1 = `
openssl rand 16 > iv
openssl enc -aes-256-cfb -K "$KEY_HEX" -iv "$(od -An -v -tx1 iv | tr -d ' \n')" -in plain -out ct
cat iv ct | base64
`
	opensslV2 = `
printf '%s' "$(md5sum < plain | cut -c1-32)" > payload
cat plain >> payload
openssl rand 16 > iv
openssl enc -aes-256-cfb -K "$KEY_HEX" -iv "$(od -An -v -tx1 iv | tr -d ' \n')" -in payload -out ct
printf 'codeship:v2\n'
cat iv ct | openssl enc -base64
`
	// opensslDecryptV2 reads the file enc, checks its header and digest, and prints the
	// plaintext.
	opensslDecryptV2 = `
[ "$(head -n 1 enc)" = codeship:v2 ] || { echo "bad header" >&2; exit 2; }
tail -n +2 enc | base64 -d > raw
head -c 16 raw > iv
tail -c +17 raw > ct
openssl enc -d -aes-256-cfb -K "$KEY_HEX" -iv "$(od -An -v -tx1 iv | tr -d ' \n')" -in ct -out payload
head -c 32 payload > digest
tail -c +33 payload > plain
[ "$(md5sum < plain | cut -c1-32)" = "$(cat digest)" ] || { echo "digest mismatch" >&2; exit 3; }
cat plain
`
)

func TestDecryptReadsOpenSSLFiles(t *testing.T) {
	for name, plain := range plaintexts() {
		for _, format := range []struct{ name, script string }{{"v1", opensslV1}, {"v2", opensslV2}} {
			t.Run(format.name+" "+name, func(t *testing.T) {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "plain"), plain, 0o600); err != nil {
					t.Fatal(err)
				}
				file := shell(t, dir, format.script, "KEY_HEX="+hex.EncodeToString(testKey[:]))
				got, err := Decrypt(testKey, file)
				if err != nil {
					t.Fatalf("Decrypt: %v", err)
				}
				if !bytes.Equal(plain, got) {
					t.Errorf("Decrypt returned %d bytes, want the %d of the plaintext", len(got), len(plain))
				}
			})
		}
	}
}

func TestEncryptIsReadByOpenSSL(t *testing.T) {
	for name, plain := range plaintexts() {
		t.Run(name, func(t *testing.T) {
			file, err := Encrypt(testKey, plain)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "enc"), file, 0o600); err != nil {
				t.Fatal(err)
			}
			got := shell(t, dir, opensslDecryptV2, "KEY_HEX="+hex.EncodeToString(testKey[:]))
			if !bytes.Equal(plain, got) {
				t.Errorf("openssl decrypted %d bytes, want the %d of the plaintext", len(got), len(plain))
			}
		})
	}
}

func TestParseKeyReadsOpenSSLKey(t *testing.T) {
	dir := t.TempDir()
	text := shell(t, dir, "openssl rand -base64 32")
	k, err := ParseKey(text)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(strings.TrimSpace(string(text)), k.Base64()); diff != "" {
		t.Errorf("Base64 (-want +got):\n%s", diff)
	}
}

// The files in testdata were written once by the scripts above (see testdata/README), so
// compatibility is checked even where openssl is missing.
func TestDecryptTestdata(t *testing.T) {
	keyText, err := os.ReadFile("testdata/codeship.aes")
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKey(keyText)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/env")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"env.v1.encrypted", "env.v2.encrypted", "env.v2-crlf.encrypted"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decrypt(k, data)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("Decrypt (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEncryptFormat(t *testing.T) {
	plain := []byte("A=1\n")
	a, err := Encrypt(testKey, plain)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encrypt(testKey, plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Error("two encryptions of the same plaintext are equal: the IV is not random")
	}
	lines := strings.Split(string(a), "\n")
	if len(lines) != 3 || lines[0] != "codeship:v2" || lines[2] != "" {
		t.Errorf("Encrypt wrote %q, want the header, one base64 line and a final newline", a)
	}
	if want := (16 + 32 + len(plain) + 2) / 3 * 4; len(lines[1]) != want {
		t.Errorf("base64 line has %d characters, want %d", len(lines[1]), want)
	}
}

func TestDecryptWrongKey(t *testing.T) {
	plain := []byte("TOKEN=hunter2\n")
	file, err := Encrypt(testKey, plain)
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decrypt(other, file)
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Decrypt with another key = %q, %v; want ErrWrongKey", got, err)
	}
	if diff := cmp.Diff("wrong key or corrupt file", err.Error()); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}

	// Version 1 has no digest: a wrong key decrypts to garbage.
	v1 := v1File(t, testKey, plain)
	got, err = Decrypt(other, v1)
	if err != nil || bytes.Equal(got, plain) || len(got) != len(plain) {
		t.Errorf("Decrypt of v1 with another key = %q, %v; want garbage of the same length", got, err)
	}
}

// v1File converts a v2 file of Encrypt to version 1, with the independent tool when
// possible.
func v1File(t *testing.T, k Key, plain []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "plain"), plain, 0o600); err != nil {
		t.Fatal(err)
	}
	return shell(t, dir, opensslV1, "KEY_HEX="+hex.EncodeToString(k[:]))
}

func TestDecryptDamaged(t *testing.T) {
	good, err := Encrypt(testKey, []byte("TOKEN=hunter2\nOTHER=swordfish\n"))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.TrimSuffix(strings.TrimPrefix(string(good), "codeship:v2\n"), "\n")
	flip := func(s string, i int) string {
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	tests := []struct {
		name      string
		data      string
		wrongKey  bool // else malformed
		wantError string
	}{
		{"an empty file", "", false, "malformed encrypted file: no data"},
		{"a header alone", "codeship:v2\n", false, "malformed encrypted file: no data"},
		{"a header without newline", "codeship:v2", false, "malformed encrypted file: no data"},
		{"an unknown version", "codeship:v3\n" + body, false, `malformed encrypted file: unsupported version header "codeship:v3" (want "codeship:v2")`},
		{"a plaintext env file", "# env\nA=1\n", false, "malformed encrypted file: line 1, column 1: not base64"},
		{"a bad byte on line 3", "codeship:v2\n" + body[:8] + "\n" + body[8:12] + "*" + body[13:], false, "malformed encrypted file: line 3, column 5: not base64"},
		{"base64 after padding", "QQ==QQ==", false, "malformed encrypted file: line 1, column 5: base64 data after padding"},
		{"too much padding", "QQ===", false, "malformed encrypted file: line 1, column 5: too much base64 padding"},
		{"wrong padding", "QUJD=", false, "malformed encrypted file: wrong base64 padding"},
		{"truncated mid-character", "codeship:v2\n" + body[:len(body)-3], false, "malformed encrypted file: truncated base64 (101 characters)"},
		{"truncated within the IV", body[:12], false, "malformed encrypted file: truncated: 9 bytes after base64 decoding, want at least 16 for the IV"},
		{"v2 truncated within the digest", "codeship:v2\n" + body[:40], false, "malformed encrypted file: truncated: 30 bytes after base64 decoding, want at least 48 for the IV and the MD5 digest"},
		{"v2 truncated within the plaintext", "codeship:v2\n" + body[:len(body)-8], true, "wrong key or corrupt file"},
		{"v2 with a tampered IV", "codeship:v2\n" + flip(body, 3), true, "wrong key or corrupt file"},
		{"v2 with a tampered digest", "codeship:v2\n" + flip(body, 30), true, "wrong key or corrupt file"},
		{"v2 with a tampered plaintext", "codeship:v2\n" + flip(body, len(body)-5), true, "wrong key or corrupt file"},
		{"v2 with a byte appended", "codeship:v2\n" + body[:len(body)-4] + "AAAAAA==", true, "wrong key or corrupt file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decrypt(testKey, []byte(tt.data))
			if err == nil {
				t.Fatalf("Decrypt = %q, want an error", got)
			}
			if tt.wrongKey != errors.Is(err, ErrWrongKey) || tt.wrongKey == errors.Is(err, ErrMalformed) {
				t.Errorf("Decrypt error %v: errors.Is(ErrWrongKey) = %v, want %v", err, !tt.wrongKey, tt.wrongKey)
			}
			if diff := cmp.Diff(tt.wantError, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q contains the plaintext", err)
			}
		})
	}
}

func TestDecryptAcceptsLayouts(t *testing.T) {
	plain := []byte("TOKEN=hunter2\n")
	good, err := Encrypt(testKey, plain)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.TrimSpace(strings.TrimPrefix(string(good), "codeship:v2\n"))
	wrap := func(s string, n int) string {
		var b strings.Builder
		for len(s) > n {
			b.WriteString(s[:n] + "\n")
			s = s[n:]
		}
		return b.String() + s + "\n"
	}
	for _, tt := range []struct{ name, data string }{
		{"no final newline", "codeship:v2\n" + body},
		{"CRLF line ends", "codeship:v2\r\n" + strings.ReplaceAll(wrap(body, 16), "\n", "\r\n")},
		{"wrapped at 64 columns", "codeship:v2\n" + wrap(body, 64)},
		{"wrapped at 4 columns with blank lines", "codeship:v2\n\n" + wrap(body, 4) + "\n\n"},
		{"no padding", "codeship:v2\n" + strings.TrimRight(body, "=")},
		{"surrounding blanks", "codeship:v2\n  \t" + body + " \n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decrypt(testKey, []byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(plain), string(got)); diff != "" {
				t.Errorf("Decrypt (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	for name, plain := range plaintexts() {
		t.Run(name, func(t *testing.T) {
			file, err := Encrypt(testKey, plain)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decrypt(testKey, file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(plain, got) {
				t.Errorf("round trip returned %d bytes, want %d", len(got), len(plain))
			}
		})
	}
}
