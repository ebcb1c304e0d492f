package secrets

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseKey(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    string // hex
		wantErr string
	}{
		{"a key file with a final newline", "O6wC0DvBifTH3LKVrvgwRudqlll4VX9XGL8Eg/jfcKw=\n", "3bac02d03bc189f4c7dcb295aef83046e76a965978557f5718bf0483f8df70ac", ""},
		{"blanks around the key", " \t\r\nO6wC0DvBifTH3LKVrvgwRudqlll4VX9XGL8Eg/jfcKw=\r\n\n", "3bac02d03bc189f4c7dcb295aef83046e76a965978557f5718bf0483f8df70ac", ""},
		{"an empty file", "", "", "parse key: empty"},
		{"blanks only", " \n\t", "", "parse key: empty"},
		{"URL-safe base64", "O6wC0DvBifTH3LKVrvgwRudqlll4VX9XGL8Eg_jfcKw=", "", "parse key: not standard base64 (bad input at byte 38)"},
		{"missing padding", "O6wC0DvBifTH3LKVrvgwRudqlll4VX9XGL8Eg/jfcKw", "", "parse key: not standard base64 (bad input at byte 41)"},
		{"a blank inside", "O6wC0DvBifTH3LKV rvgwRudqlll4VX9XGL8Eg/jfcKw=", "", "parse key: not standard base64 (bad input at byte 17)"},
		{"a 16-byte key", "AAAAAAAAAAAAAAAAAAAAAA==", "", "parse key: decodes to 16 bytes, want 32 (AES-256)"},
		{"a 33-byte key", strings.Repeat("A", 44), "", "parse key: decodes to 33 bytes, want 32 (AES-256)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKey([]byte(tt.text))
			if diff := cmp.Diff(tt.wantErr, errText(err)); diff != "" {
				t.Fatalf("error (-want +got):\n%s", diff)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, hex.EncodeToString(k[:])); diff != "" {
				t.Errorf("key (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	a, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || a == (Key{}) {
		t.Error("GenerateKey returned equal or zero keys")
	}
	back, err := ParseKey([]byte(a.Base64() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if back != a {
		t.Error("ParseKey(k.Base64()) != k")
	}
}

func TestKeyDoesNotPrint(t *testing.T) {
	k := testKey
	type config struct {
		Path string
		Key  Key
	}
	secretForms := []string{k.Base64(), hex.EncodeToString(k[:]), fmt.Sprint(k[:]), fmt.Sprint(k[0], " ", k[1])}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		for _, v := range []any{k, &k, config{"codeship.aes", k}, &config{"codeship.aes", k}} {
			got := fmt.Sprintf(verb, v)
			if !strings.Contains(got, "secrets.Key(redacted)") {
				t.Errorf("Sprintf(%q, %T) = %q, want it redacted", verb, v, got)
			}
			for _, s := range secretForms {
				if strings.Contains(got, s) {
					t.Errorf("Sprintf(%q, %T) = %q, contains the key", verb, v, got)
				}
			}
		}
	}
	if got, err := json.Marshal(config{"codeship.aes", k}); err == nil {
		t.Errorf("json.Marshal of a Key = %s, want an error", got)
	}
}

// errText is err's message, or "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
