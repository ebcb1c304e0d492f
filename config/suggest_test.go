package config

import (
	"strings"
	"testing"
)

func TestSuggest(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"comand", ` (did you mean "command"?)`},
		{"enviroment", ` (did you mean "environment"?)`},
		{"depends-on", ` (did you mean "depends_on"?)`},
		{"imgae", ` (did you mean "image"?)`},
		{"volume", ` (did you mean "volumes"?)`},
		{"retries", ""},
		{"x", ""},
	} {
		if got := Suggest(tc.name, serviceKeys); got != tc.want {
			t.Errorf("Suggest(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := Suggest("db2", []string{"db", "app"}); got != ` (did you mean "db"?)` {
		t.Errorf("a service: %q", got)
	}
}

// Every key suggested is one the parser takes.
func TestSuggestedKeysAreKeys(t *testing.T) {
	for _, k := range serviceKeys {
		in := "app:\n  image: busybox\n  " + k + ": x\n"
		if k == "image" {
			in = "app:\n  image: busybox\n"
		}
		_, _, err := ParseServices("codeship-services.yml", []byte(in))
		if err != nil && strings.Contains(err.Error(), "unknown key") {
			t.Errorf("service key %q: %v", k, err)
		}
	}
	for _, k := range stepKeys {
		_, err := ParseSteps("codeship-steps.yml", []byte("- service: app\n  "+k+": x\n"))
		if err != nil && strings.Contains(err.Error(), "unknown key") {
			t.Errorf("step key %q: %v", k, err)
		}
	}
}
