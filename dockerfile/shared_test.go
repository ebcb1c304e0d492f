package dockerfile

import (
	"strings"
	"testing"
)

func TestParseCacheRegistry(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "127.0.0.1:5000/ci/layers", want: "127.0.0.1:5000/ci/layers"},
		{in: "registry.example.com/crun-ci-cache", want: "registry.example.com/crun-ci-cache"},
		{in: "team/cache", want: "docker.io/team/cache"},
		{in: "cache:latest", err: "want a repository without a tag"},
		{in: "r.example.com/c@sha256:" + strings.Repeat("a", 64), err: "want a repository without a digest"},
		{in: "Bad Repo", err: `"Bad Repo": invalid reference format`},
		{in: "", err: `"": invalid reference format`},
	} {
		got, err := ParseCacheRegistry(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseCacheRegistry(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseCacheRegistry(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
