package secrets

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseEnv(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    []EnvVar
		wantErr string
	}{
		{"an empty file", "", nil, ""},
		{"comments and blank lines", "# c\n\n   \n\t# indented\nA=1\n", []EnvVar{{"A", "1", 5}}, ""},
		{"values kept verbatim", "A=\"b c\" \nB='x'\nC=$HOME\\n\nD=a=b # not a comment\n",
			[]EnvVar{{"A", `"b c" `, 1}, {"B", "'x'", 2}, {"C", `$HOME\n`, 3}, {"D", "a=b # not a comment", 4}}, ""},
		{"an empty value", "A=\n", []EnvVar{{"A", "", 1}}, ""},
		{"no final newline", "A=1\nB=2", []EnvVar{{"A", "1", 1}, {"B", "2", 2}}, ""},
		{"CRLF line ends", "A=1\r\nB=2\r\n", []EnvVar{{"A", "1", 1}, {"B", "2", 2}}, ""},
		{"a byte order mark", "\uFEFFA=1\n", []EnvVar{{"A", "1", 1}}, ""},
		{"blanks before the key", "  \tA=1\n", []EnvVar{{"A", "1", 1}}, ""},
		{"an export prefix", "export A=1\nexport\tB=2\nexport=3\nexporter=4\n",
			[]EnvVar{{"A", "1", 1}, {"B", "2", 2}, {"export", "3", 3}, {"exporter", "4", 4}}, ""},
		{"repeated keys in order", "A=1\nA=2\n", []EnvVar{{"A", "1", 1}, {"A", "2", 2}}, ""},
		{"keys Docker accepts", "a.b-c=1\nÄ=2\n", []EnvVar{{"a.b-c", "1", 1}, {"Ä", "2", 2}}, ""},
		{"a line without =", "A=1\nhunter2\n", nil, `line 2: no "=" (want KEY=value)`},
		{"export without =", "export hunter2\n", nil, `line 1: no "=" (want KEY=value)`},
		{"an empty key", "=hunter2\n", nil, "line 1: empty variable name"},
		{"a blank in the key", "A B=hunter2\nC =hunter2\n", nil,
			"line 1: variable name contains a blank or a control character\n" +
				"line 2: variable name contains a blank or a control character"},
		{"a control character in the key", "A\x01=1\n", nil, "line 1: variable name contains a blank or a control character"},
		{"a NUL in the value", "A=hunter\x002\n", nil, "line 1: value contains a NUL byte"},
		{"every bad line", "A\nB=1\n=2\nC\n", nil,
			"line 1: no \"=\" (want KEY=value)\nline 3: empty variable name\nline 4: no \"=\" (want KEY=value)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEnv([]byte(tt.data))
			if err != nil {
				var le *LineError
				if !errors.As(err, &le) || le.Line == 0 {
					t.Errorf("error %v holds no *LineError", err)
				}
				if strings.Contains(err.Error(), "hunter") {
					t.Errorf("error %q quotes the line", err)
				}
			}
			if diff := cmp.Diff(tt.wantErr, errText(err)); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseEnv (-want +got):\n%s", diff)
			}
		})
	}
}
