package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/opencontainers/image-spec/identity"

	"github.com/crun-ci/crun-ci/builds"
	"github.com/crun-ci/crun-ci/daemon"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/ociarchive"
)

const namespace = "crun-ci"

var (
	// bin is the crun-ci binary under test.
	bin string
	// stateDir is the --state-dir of every run; the embedded containerd lives under it.
	stateDir string
	// ctrd is the test's own connection, which also keeps the embedded containerd up
	// between runs of the binary.
	ctrd *daemon.Daemon
	// skipReason is set when the tests cannot run here.
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Getenv("CRUNCI_SHIM_HELPER") == "1" {
		// The stand-in shim of TestAnOrphanedShimIsStopped only sleeps until it is
		// killed: set up nothing it would leave behind (a temporary directory, a
		// containerd of its own).
		return m.Run()
	}
	if os.Geteuid() != 0 {
		skipReason = "integration tests need root (containerd, runc and overlay mounts); run them as root, e.g. through .ci/run"
		if os.Getenv("CRUNCI_REQUIRE_CONTAINERD") == "1" {
			fmt.Fprintln(os.Stderr, "CRUNCI_REQUIRE_CONTAINERD=1 but: "+skipReason)
			return 1
		}
		return m.Run()
	}
	tmp, err := os.MkdirTemp("", "crunci-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if err := setup(tmp); err != nil {
		fmt.Fprintln(os.Stderr, "integration setup:", err)
		return 1
	}
	code := m.Run()
	if err := removeNetworkRules(stateDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	if err := ctrd.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "stop containerd:", err)
		code = 1
	}
	return code
}

func setup(tmp string) error {
	bin = filepath.Join(tmp, "crun-ci")
	build := exec.Command("go", "build", "-o", bin, "github.com/crun-ci/crun-ci/cmd/crun-ci")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as scripts/setup.sh builds it
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build crun-ci: %w", err)
	}
	stateDir = filepath.Join(tmp, "state")
	if entries, err := os.ReadDir(defaultFIFODir); err == nil {
		fifosAtStart = len(entries)
	}
	var err error
	// An address where nothing answers: the tests always use the embedded containerd.
	ctrd, err = daemon.Connect(context.Background(), filepath.Join(tmp, "none.sock"), stateDir, namespace)
	if err != nil {
		return err
	}
	files, err := ociarchive.Busybox(ociarchive.BusyboxPath)
	if err != nil {
		return err
	}
	images := []ociarchive.Image{
		{Name: "docker.io/library/busybox:latest", Config: ociarchive.BusyboxConfig(), Files: files},
		{
			// An image with content at a volume's path, and a user of its own.
			Name:   "docker.io/crunci/seeded:1",
			Config: ociarchive.BusyboxConfig(),
			Files: append(append([]ociarchive.File{}, files...),
				ociarchive.File{Path: "/artifacts/from-image.txt", Mode: 0o644, Data: []byte("from the image\n")},
				ociarchive.File{Path: "/artifacts/sub/deep.txt", Mode: 0o600, Data: []byte("deep\n"), UID: 65534},
			),
		},
	}
	for _, img := range images {
		path := filepath.Join(tmp, strings.NewReplacer("/", "_", ":", "_").Replace(img.Name)+".tar")
		if err := ociarchive.WriteFile(path, img); err != nil {
			return err
		}
		out, err := exec.Command(bin, "--address", filepath.Join(tmp, "none.sock"), "--state-dir", stateDir, "import", path).CombinedOutput()
		if err != nil {
			return fmt.Errorf("crun-ci import %s: %v: %s", path, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != img.Name {
			return fmt.Errorf("crun-ci import printed %q, want %q", got, img.Name)
		}
	}
	return nil
}

// removeNetworkRules removes the iptables rules that the step networks of a state
// directory keep for later builds, with `crun-ci cleanup --network`, as an operator
// would before removing the state directory.
func removeNetworkRules(state string) error {
	out, err := exec.Command(bin, "--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", state, "cleanup", "--network").CombinedOutput()
	if err != nil {
		return fmt.Errorf("crun-ci cleanup --network: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "removed the iptables rules of the step networks") {
		return fmt.Errorf("crun-ci cleanup --network said: %s", out)
	}
	return nil
}

// writeBusybox writes the busybox test image archive to path.
func writeBusybox(t testing.TB, path string) {
	t.Helper()
	files, err := ociarchive.Busybox(ociarchive.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := ociarchive.WriteFile(path, ociarchive.Image{Name: "docker.io/library/busybox:latest", Config: ociarchive.BusyboxConfig(), Files: files}); err != nil {
		t.Fatal(err)
	}
}

// requireRoot skips a test where the suite cannot run.
func requireRoot(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// result is one run of the binary.
type result struct {
	stdout, stderr string
	code           int
}

// crunci runs the binary with the suite's global flags and args.
func crunci(t *testing.T, args ...string) result {
	t.Helper()
	return crunciCtx(t, context.Background(), args...)
}

// crunciCtx is crunci under ctx, which kills crun-ci when it ends.
func crunciCtx(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	return crunciEnv(t, ctx, nil, args...)
}

// crunciEnv is crunciCtx with env added to crun-ci's environment (an entry wins over
// the test's own of the same name).
func crunciEnv(t *testing.T, ctx context.Context, env []string, args ...string) result {
	t.Helper()
	full := append([]string{"--address", filepath.Join(filepath.Dir(stateDir), "none.sock"), "--state-dir", stateDir}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run crun-ci: %v", err)
	}
	t.Logf("crun-ci %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// project writes a build directory: files maps relative paths to contents; a path ending
// in "/" is a directory.
func project(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// commitAll makes dir a git repository on branch with one commit of all its files, by
// Ada <ada@example.com>, and returns the commit's id.
func commitAll(t *testing.T, dir, branch, message string) string {
	t.Helper()
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_COMMITTER_NAME=Ada", "GIT_COMMITTER_EMAIL=ada@example.com", "GIT_AUTHOR_NAME=Ada", "GIT_AUTHOR_EMAIL=ada@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", branch)
	git("add", ".")
	git("commit", "-q", "-m", message)
	return git("rev-parse", "HEAD")
}

// runSteps runs `crun-ci steps` in dir and checks, whatever the outcome, that the build left
// nothing behind.
func runSteps(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return runStepsEnv(t, dir, nil, args...)
}

// runStepsEnv is runSteps with env added to crun-ci's environment.
func runStepsEnv(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	r := crunciEnv(t, context.Background(), env, append([]string{"steps", "--dir", dir}, args...)...)
	assertClean(t)
	return r
}

// assertClean checks that no container, task, active or view snapshot, build lease or
// build directory of crun-ci remains.
func assertClean(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	c := ctrd.Client
	ctrs, err := c.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ctr := range ctrs {
		t.Errorf("container %s left behind", ctr.ID())
	}
	tasks, err := c.TaskService().List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks.Tasks {
		t.Errorf("task %s left behind", tk.ID)
	}
	err = c.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted {
			t.Errorf("%s snapshot %s left behind (labels %v)", info.Kind, info.Name, info.Labels)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := c.LeasesService().List(ctx, `labels."crun-ci.build"`)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		t.Errorf("lease %s of build %s left behind", l.ID, l.Labels["crun-ci.build"])
	}
	for _, name := range orphanLayers(t) {
		t.Errorf("committed snapshot %s left behind: no image uses it", name)
	}
	for _, sub := range []string{"builds", "locks"} {
		entries, err := os.ReadDir(filepath.Join(stateDir, sub))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range entries {
			t.Errorf("%s/%s left behind", sub, e.Name())
		}
	}
	for _, ip := range allocatedIPs(t) {
		t.Errorf("%s is left", ip)
	}
	for _, sh := range runningShims(t) {
		t.Errorf("shim of %s (pid %d) still runs", sh.ID, sh.PID)
	}
	if got := fifoDirs(t); got != fifosAtStart {
		t.Errorf("%d entries in %s, %d before the tests", got, defaultFIFODir, fifosAtStart)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), stateDir+"/builds") {
		t.Errorf("a mount below %s/builds is left behind", stateDir)
	}
}

// defaultFIFODir is where containerd's client makes task FIFOs unless told otherwise;
// crun-ci makes them in the build's directory, so none may appear here.
const defaultFIFODir = "/run/containerd/fifo"

var fifosAtStart int

func fifoDirs(t testing.TB) int {
	entries, err := os.ReadDir(defaultFIFODir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return len(entries)
}

// runningShims lists the runc shims of crun-ci containers that serve the suite's
// containerd.
func runningShims(t testing.TB) []builds.Shim {
	byBuild, err := builds.ListShims(namespace, ctrd.Address)
	if err != nil {
		t.Fatal(err)
	}
	var out []builds.Shim
	for _, list := range byBuild {
		out = append(out, list...)
	}
	return out
}

// allocatedIPs lists the step addresses that host-local IPAM holds in the suite's state
// directory (one file per address; its lock and last-reserved files are not addresses).
func allocatedIPs(t testing.TB) []string {
	entries, err := os.ReadDir(filepath.Join(stateDir, "net", "slices"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, "the step network slice "+e.Name())
	}
	// The suite runs its tests one at a time: between them no bridge of the suite's
	// state directory stands, nor a veth on one (other state directories, the network
	// package's tests among them, may have theirs meanwhile).
	links, err := network.LinkList()
	if err != nil {
		t.Fatalf("list links: %v", err)
	}
	prefix := network.DefaultBridge(stateDir)
	nm, err := network.New(network.None, network.Config{StateDir: stateDir})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := nm.GuardRules(); err != nil || n > 0 {
		left = append(left, fmt.Sprintf("%d nftables guard rules (%v)", n, err))
	}
	masters := map[int]string{}
	for _, l := range links {
		masters[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range links {
		name, master := l.Attrs().Name, masters[l.Attrs().MasterIndex]
		switch {
		case strings.HasPrefix(name, prefix):
			left = append(left, "the bridge "+name)
		case strings.HasPrefix(name, "crv") && strings.HasPrefix(master, prefix):
			left = append(left, "the veth "+name)
		}
	}
	return left
}

// buildID returns the build id the summary names.
func buildID(t *testing.T, stdout string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^build ([0-9a-f]{10}):$`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no build id in the output")
	}
	return m[1]
}

func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d", r.code, code)
	}
}

func wantContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q", what, sub)
		}
	}
}

func wantNotContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			t.Errorf("%s contains %q", what, sub)
		}
	}
}

// orphanLayers lists the committed snapshots that no image in the store unpacks to: the
// layers of an image build that neither its image nor the layer cache kept.
func orphanLayers(t testing.TB) []string {
	t.Helper()
	ctx := context.Background()
	c := ctrd.Client
	imgs, err := c.ImageService().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, img := range imgs {
		diffIDs, err := client.NewImage(c, img).RootFS(ctx)
		if err != nil {
			continue // not for this platform, or its content is gone: it unpacks to nothing
		}
		for i := range diffIDs {
			used[identity.ChainID(diffIDs[:i+1]).String()] = true
		}
	}
	var orphans []string
	err = c.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind == snapshots.KindCommitted && !used[info.Name] {
			orphans = append(orphans, info.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return orphans
}

// The suite runs against the containerd that CRUNCI_CONTAINERD_VERSION names (a prefix
// of its version: "1.6." for Debian 12's, "2." for one built from the module proxy),
// when it names one: the CI tier of each checks that it got it.
func TestTheContainerdAskedFor(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	want := os.Getenv("CRUNCI_CONTAINERD_VERSION")
	v, err := ctrd.Client.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(strings.TrimPrefix(v.Version, "v"), want) {
		t.Fatalf("the suite runs against containerd %s, want %s…", v.Version, want)
	}
	t.Logf("containerd %s (%s)", v.Version, v.Revision)
}
