package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"

	"github.com/crun-ci/crun-ci/daemon"
)

// host is a second CI host: a state directory of its own, with its own embedded
// containerd and the busybox image imported.
type host struct {
	t     *testing.T
	state string
}

func newHost(t *testing.T) *host {
	t.Helper()
	state, err := os.MkdirTemp("", "crunci-host-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := removeNetworkRules(state); err != nil {
			t.Error(err)
		}
		os.RemoveAll(state)
	})
	h := &host{t: t, state: state}
	img := filepath.Join(t.TempDir(), "busybox.tar")
	writeBusybox(t, img)
	if r := h.crunci("import", img); r.code != 0 {
		t.Fatalf("import on the second host: exit %d: %s", r.code, r.stderr)
	}
	return h
}

func (h *host) crunci(args ...string) result {
	h.t.Helper()
	return start(h.t, h.state, args...).wait()
}

// assertClean checks that the host's containerd holds no container, task, build lease
// or uncommitted snapshot, and that crun-ci finds nothing to clean up there.
func (h *host) assertClean() {
	t := h.t
	t.Helper()
	if r := h.crunci("cleanup", "--dry-run"); !strings.Contains(r.stdout, "nothing to clean up") {
		t.Errorf("second host: cleanup --dry-run: %s%s", r.stdout, r.stderr)
	}
	ctx := context.Background()
	d, err := daemon.Connect(ctx, filepath.Join(h.state, "none.sock"), h.state, namespace)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	assertNoObjects(t, ctx, d.Client, "second host")
}

// assertNoObjects checks that c holds, in ctx's namespace, no container, task, build
// lease or uncommitted snapshot; where names the namespace or host in messages.
func assertNoObjects(t *testing.T, ctx context.Context, c *client.Client, where string) {
	t.Helper()
	ctrs, _ := c.Containers(ctx)
	tasks, _ := c.TaskService().List(ctx, nil)
	ls, _ := c.LeasesService().List(ctx, `labels."crun-ci.build"`)
	if len(ctrs)+len(tasks.Tasks)+len(ls) != 0 {
		t.Errorf("%s: %d containers, %d tasks, %d build leases left", where, len(ctrs), len(tasks.Tasks), len(ls))
	}
	c.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted {
			t.Errorf("%s: %s snapshot %s left behind", where, info.Kind, info.Name)
		}
		return nil
	})
}

// Two hosts share the layer cache through a registry: what host A built, host B's first
// build takes from there (its RUN does not run: the image holds A's random value). A
// registry that is down, or records that do not fit, are warnings and a normal build.
func TestTheLayerCacheIsSharedThroughARegistry(t *testing.T) {
	requireRoot(t)
	reg := newRegistry(t, "", "")
	repo := reg.host + "/crunci/layers"
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  build:\n    image: crunci/shared:1\n",
		"codeship-steps.yml":    "- {name: show, service: app, command: cat /stamp /app/src.txt}\n",
		"Dockerfile":            "FROM busybox\nCOPY src.txt /app/\nRUN echo the RUN runs; cat /proc/sys/kernel/random/uuid > /stamp\n",
		"src.txt":               "shared\n",
	})
	stampOf := func(r result) string {
		t.Helper()
		m := regexp.MustCompile(`show/app \| ([0-9a-f-]{36})\n`).FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("no stamp in the output:\n%s", r.stdout)
		}
		return m[1]
	}

	// Host A builds and pushes both layers before its command ends.
	r := runSteps(t, dir, "--cache-registry", repo)
	wantCode(t, r, 0)
	stampA := stampOf(r)
	wantContains(t, "host A's stderr", r.stderr, "cache registry: pushed 2 layers to "+repo+" (")
	if tags := registryTags(t, reg, "crunci/layers"); len(tags) != 2 {
		t.Fatalf("registry tags %v, want the 2 layers' keys", tags)
	}

	// Host B, the same directory, its first build: every layer from the registry.
	b := newHost(t)
	r = b.crunci("steps", "--dir", dir, "--cache-registry", repo)
	wantCode(t, r, 0)
	if got := built(t, r.stdout); len(got) != 1 || got[0] != [2]string{"2", "2"} {
		t.Errorf("host B's build %v, want every one of 2 layers from the cache", got)
	}
	wantContains(t, "host B's stdout", r.stdout, "2 from the cache (2 from the cache registry)\n", "show/app | "+stampA+"\n")
	wantNotContains(t, "host B's stdout", r.stdout, "the RUN runs")
	wantNotContains(t, "host B's stderr", r.stderr, "pushed") // it had them from there
	b.assertClean()

	// A cache registry that is down: one warning, a normal build.
	emptyCache := func() {
		t.Helper()
		if r := b.crunci("cleanup", "--layer-cache"); r.code != 0 {
			t.Fatalf("cleanup --layer-cache: exit %d: %s", r.code, r.stderr)
		}
	}
	emptyCache()
	r = b.crunci("steps", "--dir", dir, "--cache-registry", "127.0.0.1:1/crunci/layers")
	wantCode(t, r, 0)
	if n := strings.Count(r.stdout, "warning: cache registry 127.0.0.1:1/crunci/layers: "); n != 1 {
		t.Errorf("%d warnings about the registry that is down, want 1:\n%s", n, r.stdout)
	}
	wantContains(t, "stdout", r.stdout, "; building without it\n", "the RUN runs\n", "2 layers, 0 from the cache\n")
	if stampOf(r) == stampA {
		t.Error("the RUN did not run without the registry")
	}
	b.assertClean()

	// Records that do not fit their keys (not JSON; another image's manifest) are
	// ignored with a warning each; the build pushes good ones over them.
	tags := registryTags(t, reg, "crunci/layers")
	putManifest(t, reg, "crunci/layers", tags[0], []byte("{not a manifest"))
	other, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + strings.Repeat("ab", 32), "size": 2},
		"layers": []any{},
	})
	putManifest(t, reg, "crunci/layers", tags[1], other)
	emptyCache()
	r = b.crunci("steps", "--dir", dir, "--cache-registry", repo)
	wantCode(t, r, 0)
	if n := strings.Count(r.stdout, "warning: cache registry: record "+repo+":"); n != 2 {
		t.Errorf("%d warnings about records that do not fit, want 2:\n%s", n, r.stdout)
	}
	wantContains(t, "stdout", r.stdout, "does not fit", "the RUN runs\n", "2 layers, 0 from the cache\n")
	stampB := stampOf(r)
	wantContains(t, "stderr", r.stderr, "cache registry: pushed 2 layers to "+repo)
	b.assertClean()

	// Host A, its cache emptied, takes host B's layers now.
	if r := crunci(t, "cleanup", "--layer-cache"); r.code != 0 {
		t.Fatalf("cleanup --layer-cache: exit %d", r.code)
	}
	r = runSteps(t, dir, "--cache-registry", repo)
	wantCode(t, r, 0)
	wantContains(t, "host A's stdout", r.stdout, "(2 from the cache registry)", "show/app | "+stampB+"\n")

	// A bad repository is a usage error.
	r = crunci(t, "steps", "--dir", dir, "--cache-registry", "Bad Repo")
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, `--cache-registry: "Bad Repo": `)
	r = crunci(t, "steps", "--dir", dir, "--cache-registry", repo+":tag")
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, "want a repository without a tag")
}

// registryTags lists the tags of a repository of the test registry.
func registryTags(t *testing.T, reg *testRegistry, repo string) []string {
	t.Helper()
	resp, err := http.Get("http://" + reg.host + "/v2/" + repo + "/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct{ Tags []string }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("tags of %s: %v", repo, err)
	}
	return list.Tags
}

// putManifest stores body as the OCI manifest of repo:tag in the test registry.
func putManifest(t *testing.T, reg *testRegistry, repo, tag string, body []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+reg.host+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("put manifest %s:%s: %s", repo, tag, resp.Status)
	}
}
