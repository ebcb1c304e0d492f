package network

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containernetworking/cni/libcni"
	"golang.org/x/sys/unix"
)

func TestEnsureMasqueradeAddsOneRule(t *testing.T) {
	m, _ := newTestManager(t, Bridge)
	ctx := context.Background()
	for i := range 3 {
		if err := m.ensureMasquerade(ctx); err != nil {
			t.Fatal(err)
		}
		if got := masqueradeRules(t); got != 1 {
			t.Fatalf("after %d calls: %d masquerade rules of %s, want 1", i+1, got, testSubnet)
		}
	}
	if err := m.removeMasquerade(ctx); err != nil {
		t.Fatal(err)
	}
	if got := masqueradeRules(t); got != 0 {
		t.Fatalf("after removeMasquerade: %d masquerade rules of %s, want 0", got, testSubnet)
	}
}

// TestPluginMasqueradeLeaks measures what the bridge plugin's own masquerading (ipMasq
// true) leaves in iptables, which is why it is off. It runs only with
// CRUNCI_MEASURE_IPMASQ=1, takes about 15 s and logs its figures:
//
//	go test ./network -run PluginMasquerade -v
func TestPluginMasqueradeLeaks(t *testing.T) {
	if os.Getenv("CRUNCI_MEASURE_IPMASQ") != "1" {
		t.Skip("a measurement: set CRUNCI_MEASURE_IPMASQ=1 to run it")
	}
	m, state := newTestManager(t, Bridge)
	ctx := context.Background()
	const name = "crun-ci-measure"
	conf, err := libcni.ConfListFromBytes(confList(m.cfg, m.subnet, name, true))
	if err != nil {
		t.Fatal(err)
	}
	m.conf, m.ensureMasq = conf, false
	t.Cleanup(func() { removeChains(t, name) })
	dir := filepath.Join(state, "builds", "b1", "netns")
	const cycles = 50
	tests := []struct {
		name   string
		before func(t *testing.T, sb *Sandbox) // before Teardown
	}{
		{name: "teardown with the namespace", before: func(*testing.T, *Sandbox) {}},
		{name: "teardown after the namespace was unmounted", before: func(t *testing.T, sb *Sandbox) {
			if err := mount.Unmount(sb.Path, unix.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for ti, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(iptablesSave(t))
			for i := range cycles {
				sb, err := m.Setup(ctx, fmt.Sprintf("b%d-%d", ti, i), dir)
				if err != nil {
					t.Fatal(err)
				}
				tt.before(t, sb)
				if err := m.Teardown(ctx, sb); err != nil {
					t.Fatal(err)
				}
			}
			after := len(iptablesSave(t))
			t.Logf("ipMasq true, %d cycles, %s: iptables-save lines %d before, %d after (%+d)",
				cycles, tt.name, before, after, after-before)
		})
	}
}

// removeChains deletes the rules and chains that the plugin made for network name.
func removeChains(t *testing.T, name string) {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatal(err)
	}
	comment := fmt.Sprintf(`name: \"%s\"`, name)
	chains := map[string]bool{}
	jump := regexp.MustCompile(`-j (CNI-[0-9a-f]+)`)
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, comment) {
			if mm := jump.FindStringSubmatch(line); mm != nil {
				chains[mm[1]] = true
			}
		}
	}
	var keep bytes.Buffer
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if strings.Contains(line, comment) || len(f) > 0 && chains[strings.TrimPrefix(f[0], ":")] {
			continue
		}
		keep.WriteString(line + "\n")
	}
	cmd := exec.Command("iptables-restore", "-T", "nat")
	cmd.Stdin = &keep
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("iptables-restore: %v: %s", err, out)
	}
}
