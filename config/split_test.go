package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string
	}{
		{"the empty command has no words", "", []string{}},
		{"blanks only have no words", " \t\n ", []string{}},
		{"words are separated by any run of blanks", "  a\tb \n c  ", []string{"a", "b", "c"}},
		{"single quotes keep everything literal", `sh -c 'echo a && b'`, []string{"sh", "-c", "echo a && b"}},
		{"a backslash in single quotes is literal", `'a\b' 'c\'`, []string{`a\b`, `c\`}},
		{"double quotes keep blanks and unknown escapes", `"a b" "c\d"`, []string{"a b", `c\d`}},
		{"double quotes unescape quote, backslash, dollar and backquote", "\"\\\" \\\\ \\$ \\`\"", []string{"\" \\ $ `"}},
		{"a backslash-newline in double quotes joins lines", "\"a\\\nb\"", []string{"ab"}},
		{"a backslash outside quotes escapes the next character", `a\ b \'c \\`, []string{"a b", "'c", `\`}},
		{"a backslash-newline outside quotes joins lines", "a\\\nb", []string{"ab"}},
		{"empty quotes make an empty word", `a '' "" b`, []string{"a", "", "", "b"}},
		{"quotes join with the rest of a word", `--name="a b"'c d'e`, []string{"--name=a bc de"}},
		{"variables, globs and operators stay literal", `echo $HOME * ~ && x | y > z # c`, []string{"echo", "$HOME", "*", "~", "&&", "x", "|", "y", ">", "z", "#", "c"}},
		{"non-ASCII text is kept", `echo 'héllo wörld' ✓`, []string{"echo", "héllo wörld", "✓"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := splitCommand(tc.in)
			if err != nil {
				t.Fatalf("splitCommand(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("splitCommand(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestSplitCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want string
	}{
		{"an unterminated single quote", `echo 'a`, "unterminated single quote"},
		{"an unterminated double quote", `echo "a\"`, "unterminated double quote"},
		{"a trailing backslash", `echo a\`, "command ends with a backslash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := splitCommand(tc.in)
			if err == nil || err.Error() != tc.want {
				t.Errorf("splitCommand(%q) error = %v, want %s", tc.in, err, tc.want)
			}
		})
	}
}
