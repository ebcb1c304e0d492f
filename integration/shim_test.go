package integration

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestShimHelper is not a test: TestAnOrphanedShimIsStopped runs the test binary as a
// stand-in for a runc shim that containerd lost track of, which only sleeps.
func TestShimHelper(t *testing.T) {
	if os.Getenv("CRUNCI_SHIM_HELPER") != "1" {
		t.Skip("a helper process for TestAnOrphanedShimIsStopped")
	}
	time.Sleep(time.Minute)
}

// A crun-ci killed while a task was being created can leave a shim that containerd no
// longer speaks for. Clean-up finds it by its command line and stops it.
func TestAnOrphanedShimIsStopped(t *testing.T) {
	requireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	id := "crunci-0123456789-1-app"
	shim := &exec.Cmd{
		Path: self,
		Args: []string{"containerd-shim-runc-v2", "-test.run=^TestShimHelper$", "--", "-namespace", namespace, "-id", id, "-address", ctrd.Address},
		Env:  append(os.Environ(), "CRUNCI_SHIM_HELPER=1"),
	}
	if err := shim.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { shim.Wait(); close(exited) }()
	defer shim.Process.Kill()

	r := crunci(t, "cleanup", "--dry-run")
	wantCode(t, r, 0)
	wantContains(t, "dry run", r.stdout, "would remove build 0123456789: 1 shims ("+id+")")

	r = crunci(t, "cleanup")
	wantCode(t, r, 0)
	wantContains(t, "cleanup", r.stdout, "removed build 0123456789")
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the orphaned shim still runs after cleanup")
	}
	if strings.Contains(crunci(t, "cleanup", "--dry-run").stdout, "0123456789") {
		t.Error("the build is still listed after cleanup")
	}
	assertClean(t)
}
