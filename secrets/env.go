package secrets

import (
	"bytes"
	"errors"
	"fmt"
)

// EnvVar is one `KEY=value` line of an env file.
type EnvVar struct {
	Key   string
	Value string
	// Line is the 1-based line number of the variable in its file.
	Line int
}

// LineError is a problem with one line of an env file. Its message names the line and
// never quotes it, since the line may hold a secret.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

func (e *LineError) Unwrap() error { return e.Err }

// ParseEnv parses the plaintext of an env file, the way Docker's `--env-file` does:
//
//   - one `KEY=value` per line, split at the first `=`; lines end in LF or CRLF, and a
//     UTF-8 byte order mark at the start of the file is ignored;
//   - blank lines, and lines whose first non-blank character is `#`, are skipped; a `#`
//     later in a line is part of the value;
//   - blanks before the key are ignored, and so is an `export ` prefix (so files written
//     for `source` work too);
//   - the value is kept verbatim: no quote removal, no escapes, no `$VAR` expansion, no
//     trimming, so `A="b c" ` is the six characters `"b c" ` (with the trailing space);
//   - a key must be non-empty and free of blanks and control characters; a line without
//     `=` is an error (Docker would copy the variable from its own environment, which a
//     pipeline must not depend on), and so is a NUL byte.
//
// The variables come back in file order, repeated keys included; when the caller merges
// them, later lines should win. Every bad line is reported, as an errors.Join of
// [*LineError] values, and then no variables are returned.
func ParseEnv(data []byte) ([]EnvVar, error) {
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	var vars []EnvVar
	var errs []error
	for n := 1; len(data) > 0; n++ {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		s := bytes.TrimLeft(line, " \t")
		if len(bytes.TrimSpace(s)) == 0 || s[0] == '#' {
			continue
		}
		if rest, ok := bytes.CutPrefix(s, []byte("export")); ok && len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
			s = bytes.TrimLeft(rest, " \t")
		}
		key, value, ok := bytes.Cut(s, []byte{'='})
		switch {
		case !ok:
			errs = append(errs, &LineError{n, errors.New(`no "=" (want KEY=value)`)})
		case len(key) == 0:
			errs = append(errs, &LineError{n, errors.New("empty variable name")})
		case bytes.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			errs = append(errs, &LineError{n, errors.New("variable name contains a blank or a control character")})
		case bytes.IndexByte(value, 0) >= 0:
			errs = append(errs, &LineError{n, errors.New("value contains a NUL byte")})
		default:
			vars = append(vars, EnvVar{Key: string(key), Value: string(value), Line: n})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return vars, nil
}
