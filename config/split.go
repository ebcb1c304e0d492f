package config

import (
	"errors"
	"strings"
)

// splitCommand splits a command line into words the way a POSIX shell does, without
// running one: single quotes keep everything literal; double quotes keep everything
// literal except a backslash before `"`, `\`, `$`, "`" or a newline; outside quotes a
// backslash escapes the next character and a backslash-newline joins lines. Nothing is
// expanded: `$VAR`, `*`, `~`, `&&`, `|`, `>` and `#` are ordinary characters. The empty
// command is an empty, non-nil slice.
func splitCommand(s string) ([]string, error) {
	words := []string{}
	var word strings.Builder
	inWord := false // a word has started, possibly empty (`''`)
	end := func() {
		if inWord {
			words = append(words, word.String())
			word.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case ' ', '\t', '\n', '\r':
			end()
		case '\\':
			if i+1 == len(s) {
				return nil, errors.New("command ends with a backslash")
			}
			i++
			if s[i] == '\n' {
				continue // line continuation
			}
			word.WriteByte(s[i])
			inWord = true
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			word.WriteString(s[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case '"':
			inWord = true
			closed := false
			for i++; i < len(s); i++ {
				c := s[i]
				if c == '"' {
					closed = true
					break
				}
				if c == '\\' && i+1 < len(s) {
					switch s[i+1] {
					case '"', '\\', '$', '`':
						i++
						word.WriteByte(s[i])
						continue
					case '\n':
						i++
						continue
					}
				}
				word.WriteByte(c)
			}
			if !closed {
				return nil, errors.New("unterminated double quote")
			}
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	end()
	return words, nil
}

// SplitCommand splits a command line as the steps and services files' commands are split
// (see splitCommand), for commands given on crun-ci's command line.
func SplitCommand(s string) ([]string, error) { return splitCommand(s) }
