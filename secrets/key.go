package secrets

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
)

// KeySize is the length of a key in bytes: AES-256.
const KeySize = 32

// Key is a 32-byte AES-256 key, the content of a `codeship.aes` file once decoded.
//
// A Key never prints itself: every fmt verb writes `secrets.Key(redacted)` and
// MarshalText fails. Use [Key.Base64] to write a key file.
type Key [KeySize]byte

// ParseKey decodes the text of a key file: the standard base64 (with padding) of 32
// bytes. Whitespace around it, such as a final newline, is ignored.
func ParseKey(text []byte) (Key, error) {
	text = bytes.TrimSpace(text)
	if len(text) == 0 {
		return Key{}, errors.New("parse key: empty")
	}
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(raw, text)
	defer clear(raw)
	if err != nil {
		var corrupt base64.CorruptInputError
		if errors.As(err, &corrupt) {
			return Key{}, fmt.Errorf("parse key: not standard base64 (bad input at byte %d)", int64(corrupt)+1)
		}
		return Key{}, fmt.Errorf("parse key: not standard base64: %w", err)
	}
	if n != KeySize {
		return Key{}, fmt.Errorf("parse key: decodes to %d bytes, want %d (AES-256)", n, KeySize)
	}
	var k Key
	copy(k[:], raw[:n])
	return k, nil
}

// GenerateKey returns a new random key from crypto/rand.
func GenerateKey() (Key, error) {
	var k Key
	if _, err := io.ReadFull(rand.Reader, k[:]); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// Base64 returns the key as standard base64, the text of a key file (without a newline).
func (k Key) Base64() string {
	return base64.StdEncoding.EncodeToString(k[:])
}

// Format writes `secrets.Key(redacted)` whatever the verb, so that a Key printed by
// mistake, alone or inside a struct, does not leak.
func (k Key) Format(f fmt.State, verb rune) {
	io.WriteString(f, "secrets.Key(redacted)")
}

// MarshalText always fails, so that encoders (JSON loggers, for one) cannot leak a Key.
func (k Key) MarshalText() ([]byte, error) {
	return nil, errors.New("secrets: a key is never marshalled; use Key.Base64 to write a key file")
}
