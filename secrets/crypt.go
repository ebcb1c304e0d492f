package secrets

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// ErrWrongKey is the error of [Decrypt] when a version 2 file's MD5 digest does not match
// its decrypted content: the key is not the one the file was encrypted with, or the file
// was damaged. Callers add the file's name.
var ErrWrongKey = errors.New("wrong key or corrupt file")

// ErrMalformed is wrapped by the errors of [Decrypt] for data that is not an encrypted
// file at all: not base64, too short to hold the IV (and digest), or an unknown version
// header. Test for it with errors.Is.
var ErrMalformed = errors.New("malformed encrypted file")

const (
	headerV2 = "codeship:v2"
	// headerPrefix starts every versioned file; base64 never contains ':'.
	headerPrefix = "codeship:"
	ivSize       = aes.BlockSize
	digestSize   = 2 * md5.Size // hex
)

// Encrypt encrypts plaintext with k in version 2 format: the line `codeship:v2`, then
// base64(IV || AES-256-CFB(k, IV, hex(md5(plaintext)) || plaintext)) on one line and a
// final newline. The IV comes from crypto/rand.
func Encrypt(k Key, plaintext []byte) ([]byte, error) {
	payload := make([]byte, ivSize+digestSize+len(plaintext))
	defer clear(payload)
	iv := payload[:ivSize]
	if _, err := io.ReadFull(rand.Reader, iv); err != nil {
		return nil, fmt.Errorf("encrypt: random IV: %w", err)
	}
	sum := md5.Sum(plaintext)
	hex.Encode(payload[ivSize:ivSize+digestSize], sum[:])
	copy(payload[ivSize+digestSize:], plaintext)
	stream, err := cfb(k, iv, true)
	if err != nil {
		return nil, err
	}
	stream.XORKeyStream(payload[ivSize:], payload[ivSize:])

	out := make([]byte, 0, len(headerV2)+1+base64.StdEncoding.EncodedLen(len(payload))+1)
	out = append(out, headerV2...)
	out = append(out, '\n')
	out = base64.StdEncoding.AppendEncode(out, payload)
	out = append(out, '\n')
	return out, nil
}

// Decrypt decrypts an encrypted file of either version with k.
//
// Version 2 (a `codeship:v2` first line) is checked: a digest mismatch is [ErrWrongKey].
// Version 1 (no header) carries no digest, so a wrong key yields garbage and no error.
// Data that is not an encrypted file is an error wrapping [ErrMalformed]. No error
// contains any of the plaintext.
func Decrypt(k Key, data []byte) ([]byte, error) {
	v2 := false
	body, firstLine := data, 1
	if bytes.HasPrefix(data, []byte(headerPrefix)) {
		header, rest, _ := bytes.Cut(data, []byte{'\n'})
		header = bytes.TrimSuffix(header, []byte{'\r'})
		if string(header) != headerV2 {
			if len(header) > 32 {
				header = append(header[:32:32], "…"...)
			}
			return nil, fmt.Errorf("%w: unsupported version header %q (want %q)", ErrMalformed, header, headerV2)
		}
		v2, body, firstLine = true, rest, 2
	}
	raw, err := decodeBase64(body, firstLine)
	if err != nil {
		return nil, err
	}
	need, what := ivSize, "the IV"
	if v2 {
		need, what = ivSize+digestSize, "the IV and the MD5 digest"
	}
	if len(raw) < need {
		return nil, fmt.Errorf("%w: truncated: %d bytes after base64 decoding, want at least %d for %s",
			ErrMalformed, len(raw), need, what)
	}
	stream, err := cfb(k, raw[:ivSize], false)
	if err != nil {
		return nil, err
	}
	plain := raw[ivSize:]
	stream.XORKeyStream(plain, plain)
	if !v2 {
		return plain, nil
	}
	var want [md5.Size]byte
	_, hexErr := hex.Decode(want[:], plain[:digestSize])
	got := md5.Sum(plain[digestSize:])
	if hexErr != nil || subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		clear(raw)
		return nil, ErrWrongKey
	}
	return plain[digestSize:], nil
}

// cfb returns AES-256-CFB with 128-bit segments, the mode of `openssl enc -aes-256-cfb`
// and of Codeship's files.
func cfb(k Key, iv []byte, encrypt bool) (cipher.Stream, error) {
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	if encrypt {
		return cipher.NewCFBEncrypter(block, iv), nil //nolint:staticcheck // SA1019: CFB is the file format's mode.
	}
	return cipher.NewCFBDecrypter(block, iv), nil //nolint:staticcheck // SA1019: CFB is the file format's mode.
}

// decodeBase64 decodes standard base64 that may be wrapped over lines, padded or not,
// naming the line and column of the first byte that is not base64. firstLine is the
// line number of body's first line within the file.
func decodeBase64(body []byte, firstLine int) ([]byte, error) {
	clean := make([]byte, 0, len(body))
	line, col, pad := firstLine, 0, 0
	for _, c := range body {
		col++
		switch {
		case c == '\n':
			line, col = line+1, 0
		case c == '\r' || c == ' ' || c == '\t':
		case c == '=':
			pad++
			if pad > 2 {
				return nil, fmt.Errorf("%w: line %d, column %d: too much base64 padding", ErrMalformed, line, col)
			}
		case isBase64(c):
			if pad > 0 {
				return nil, fmt.Errorf("%w: line %d, column %d: base64 data after padding", ErrMalformed, line, col)
			}
			clean = append(clean, c)
		default:
			return nil, fmt.Errorf("%w: line %d, column %d: not base64", ErrMalformed, line, col)
		}
	}
	switch {
	case len(clean) == 0:
		return nil, fmt.Errorf("%w: no data", ErrMalformed)
	case len(clean)%4 == 1:
		return nil, fmt.Errorf("%w: truncated base64 (%d characters)", ErrMalformed, len(clean)+pad)
	case pad > 0 && (len(clean)+pad)%4 != 0:
		return nil, fmt.Errorf("%w: wrong base64 padding", ErrMalformed)
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(out, clean)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64: %w", ErrMalformed, err)
	}
	return out[:n], nil
}

func isBase64(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/'
}
