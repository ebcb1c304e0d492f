package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGraph(t *testing.T) {
	services, _, err := ParseServices("codeship-services.yml", []byte(`
app:
  image: busybox
  volumes_from: [data]
  depends_on:
    db: {condition: service_healthy}
  links: ["cache:c", db]
  dockercfg_service: creds
data:
  image: busybox
  volumes_from: [base]
base:
  image: busybox
db:
  image: busybox
  depends_on: [cache]
cache:
  image: busybox
creds:
  image: busybox
`))
	if err != nil {
		t.Fatal(err)
	}
	g := newGraph(services)
	for _, tt := range []struct {
		name string
		got  any
		want any
	}{
		{"the closure reaches every reference", g.Closure(true, "app"), []string{"app", "data", "base", "db", "cache", "creds"}},
		{"the closure without credentials leaves out dockercfg_service", g.Closure(false, "app"), []string{"app", "data", "base", "db", "cache"}},
		{"dependencies start after what they need", g.Dependencies("app"), []string{"cache", "db"}},
		{"needs are depends_on, then links, once each", g.Needs("app"), []Need{{"db", "service_healthy"}, {"cache", ""}}},
		{"volume sources come before their users", g.VolumeOrder("cache", "db", "app"), []string{"cache", "db", "base", "data", "app"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
