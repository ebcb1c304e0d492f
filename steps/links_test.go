package steps

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/task"
)

func TestLinkEnv(t *testing.T) {
	services := map[string]*config.Service{
		"app": {Name: "app", Links: []config.Link{{Service: "db", Alias: "database"}}, DependsOn: []config.Ref{{Service: "db"}, {Service: "cache"}, {Service: "quiet"}}},
		"db":  {Name: "db"},
		// expose and the image's EXPOSE together, sorted, TCP first.
		"cache": {Name: "cache", Expose: []config.Value{{Text: "53/udp"}, {Text: "6379/tcp"}}},
		"quiet": {Name: "quiet"},
	}
	b := &build{o: Options{Project: &config.Project{Services: services}}, services: registry{m: map[string]*service{}}}
	images := map[string]map[string]struct{}{
		"db":    {"5432/tcp": {}},
		"cache": {"53/tcp": {}},
	}
	for name, cfg := range services {
		b.services.put(&service{cfg: cfg, image: &task.Image{Config: ocispec.ImageConfig{ExposedPorts: images[name]}}})
	}
	want := []string{
		"DATABASE_NAME=/app/database",
		"DATABASE_PORT=tcp://database:5432",
		"DATABASE_PORT_5432_TCP=tcp://database:5432",
		"DATABASE_PORT_5432_TCP_ADDR=database",
		"DATABASE_PORT_5432_TCP_PORT=5432",
		"DATABASE_PORT_5432_TCP_PROTO=tcp",
		"CACHE_NAME=/app/cache",
		"CACHE_PORT=tcp://cache:53",
		"CACHE_PORT_53_TCP=tcp://cache:53",
		"CACHE_PORT_53_TCP_ADDR=cache",
		"CACHE_PORT_53_TCP_PORT=53",
		"CACHE_PORT_53_TCP_PROTO=tcp",
		"CACHE_PORT_53_UDP=udp://cache:53",
		"CACHE_PORT_53_UDP_ADDR=cache",
		"CACHE_PORT_53_UDP_PORT=53",
		"CACHE_PORT_53_UDP_PROTO=udp",
		"CACHE_PORT_6379_TCP=tcp://cache:6379",
		"CACHE_PORT_6379_TCP_ADDR=cache",
		"CACHE_PORT_6379_TCP_PORT=6379",
		"CACHE_PORT_6379_TCP_PROTO=tcp",
	}
	if diff := cmp.Diff(want, b.linkEnv("app")); diff != "" {
		t.Errorf("linkEnv(app) (-want +got):\n%s", diff)
	}
	if got := b.linkEnv("db"); got != nil {
		t.Errorf("linkEnv(db) = %q, want nothing: it links to nothing", got)
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"db": "DB", "my-db.1": "MY_DB_1", "Redis_2": "REDIS_2"} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}
