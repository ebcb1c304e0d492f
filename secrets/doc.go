// Package secrets reads and writes files encrypted with a Codeship-compatible AES key
// (`codeship.aes`), parses the `KEY=value` files they usually hold, and masks the decrypted
// values in step output.
//
// # Words
//
//   - The key is 32 random bytes (AES-256), kept in a key file as standard base64 on one
//     line ([ParseKey], [Key.Base64], [GenerateKey]). Surrounding whitespace in the file
//     is ignored.
//   - An encrypted file is base64 text. Version 2, written by [Encrypt] and by `jet` since
//     2.6.0, starts with the line `codeship:v2`; the base64 that follows decodes to a
//     16-byte IV and the AES-256-CFB encryption (128-bit segments, as `openssl enc
//     -aes-256-cfb` does) of the 32 lower-case hex digits of the plaintext's MD5 followed
//     by the plaintext. [Decrypt] checks that digest, so a wrong key or a damaged file is
//     [ErrWrongKey] instead of garbage. Version 1 has no header and no digest: the base64
//     decodes to the IV and the encrypted plaintext, and a wrong key decrypts to garbage
//     without an error.
//   - Base64 may be wrapped over several lines (as `openssl enc -base64` writes it) and
//     may lack its `=` padding; [Encrypt] writes the header line, the base64 on a single
//     line and a final newline. Lines may end in CRLF.
//   - An env file is the plaintext of an `encrypted_env_file` (or a plain `env_file`):
//     `KEY=value` lines, see [ParseEnv].
//   - A secret is a value that came from an encrypted source. [Masker] replaces every
//     occurrence of a secret in a stream with `***`.
//
// # Keeping secrets secret
//
// No function of this package puts a key, a plaintext or a value into an error message:
// errors name positions (line numbers, byte counts), never content. [Key] formats as
// `secrets.Key(redacted)` with every fmt verb and refuses to be marshalled, so logging a
// struct that holds one does not leak it; [Key.Base64] is the one way to get its text.
//
// MD5 and CFB are what the file format prescribes; they are kept for compatibility with
// existing files, not chosen for strength. The digest detects a wrong key and accidental
// damage, not a deliberate forgery by someone who can write the file.
package secrets
