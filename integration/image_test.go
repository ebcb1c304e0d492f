package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The crun-ci image, built by scripts/image.sh with crun-ci's own builder, runs a
// two-step pipeline with a host volume when ctr starts it on the host's containerd as
// deploy/kubernetes/job.yaml has Kubernetes start it: privileged, in the host's PID and
// network namespaces (the test's own PID namespace: where these tests run, /proc/1's
// cannot be opened), with containerd's directory, a state directory (a shared mount)
// and the build directory at their host paths, in a containerd namespace of its own.
// It leaves nothing behind.
func TestTheCrunCIImageRunsAPipelineOnTheHostsContainerd(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("ctr"); err != nil {
		t.Fatal("ctr (Debian's containerd package has it) is needed to start the image as a node would")
	}
	archive := filepath.Join(t.TempDir(), "crun-ci-image.tar")
	build := exec.Command("bash", "../scripts/image.sh")
	build.Env = append(os.Environ(), "CRUNCI="+bin, "OUT="+archive, "CRUNCI_STATE_DIR="+stateDir, "CRUNCI_ADDRESS="+filepath.Join(filepath.Dir(stateDir), "none.sock"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/image.sh: %v\n%s", err, out)
	}
	assertClean(t)

	const nodeNS, jobNS = "crunci-node", "crunci-job" // kubelet's k8s.io, crun-ci's own
	ctr := func(ns string, args ...string) string {
		t.Helper()
		out, err := exec.Command("ctr", append([]string{"--address", ctrd.Address, "-n", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ctx := context.Background()
	defer func() {
		for _, ns := range []string{nodeNS, jobNS} {
			nctx := namespaces.WithNamespace(ctx, ns)
			imgs, _ := ctrd.Client.ImageService().List(nctx)
			for _, img := range imgs {
				ctrd.Client.ImageService().Delete(nctx, img.Name)
			}
		}
	}()
	ctr(nodeNS, "images", "import", archive)
	busybox := filepath.Join(t.TempDir(), "busybox.tar")
	writeBusybox(t, busybox)
	ctr(jobNS, "images", "import", busybox)

	// The state directory is a shared mount, so that the network namespaces crun-ci
	// mounts in it from its container are the host's to see.
	state, err := os.MkdirTemp("", "crunci-job-")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(state, state, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("", state, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := removeNetworkRules(state); err != nil {
			t.Error(err)
		}
		if err := unix.Unmount(state, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
		os.RemoveAll(state)
	}()
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n  volumes: [./out:/out]\n",
		"codeship-steps.yml": `
- {name: write, service: app, command: "sh -c 'echo written in a step > /out/one.txt'"}
- {name: read, service: app, command: "sh -c 'cat /out/one.txt; echo commit $CI_COMMIT_ID'"}
`,
		"out/": "",
	})
	// A git repository, whose commit the image's git reads for CI_COMMIT_ID.
	commit := commitAll(t, dir, "main", "first")
	ctrdDir := filepath.Dir(ctrd.Address)
	bind := func(p, opts string) string {
		return "type=bind,src=" + p + ",dst=" + p + ",options=rbind:" + opts
	}
	out, err := exec.Command("ctr", "--address", ctrd.Address, "-n", nodeNS, "run", "--rm",
		"--privileged", "--net-host", "--rootfs-propagation", "rshared", "--with-ns", fmt.Sprintf("pid:/proc/%d/ns/pid", os.Getpid()),
		"--mount", bind(ctrdDir, "rw"),
		"--mount", bind(state, "rshared:rw"),
		"--mount", bind(dir, "rw"),
		"--mount", bind("/etc/resolv.conf", "ro"),
		"--env", "CRUNCI_ADDRESS="+ctrd.Address, "--env", "CRUNCI_NAMESPACE="+jobNS, "--env", "CRUNCI_STATE_DIR="+state,
		"docker.io/crun-ci/crun-ci:latest", "crunci-image-test",
		"/usr/bin/crun-ci", "steps", "--dir", dir,
	).CombinedOutput()
	if err != nil {
		t.Fatalf("crun-ci in its image: %v\n%s", err, out)
	}
	wantContains(t, "output", string(out), "read/app | written in a step\n", "read/app | commit "+commit+"\n", "2 passed")
	wantNotContains(t, "output", string(out), "could not read the git repository")
	if b, err := os.ReadFile(filepath.Join(dir, "out", "one.txt")); err != nil || string(b) != "written in a step\n" {
		t.Errorf("host volume file: %q, %v", b, err)
	}

	// Nothing is left: no container of either namespace, no task, build lease or
	// uncommitted snapshot of the job's, no build or lock file, no mount in the state
	// directory, no veth.
	for _, ns := range []string{nodeNS, jobNS} {
		assertNoObjects(t, namespaces.WithNamespace(ctx, ns), ctrd.Client, "namespace "+ns)
	}
	for _, sub := range []string{"builds", "locks"} {
		entries, _ := os.ReadDir(filepath.Join(state, sub))
		for _, e := range entries {
			t.Errorf("%s/%s left behind", sub, e.Name())
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), state+"/") {
		t.Errorf("a mount below %s is left behind", state)
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "crv") {
			t.Errorf("veth %s left behind", l.Attrs().Name)
		}
	}
	assertClean(t)
}
