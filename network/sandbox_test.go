package network

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The tests' own bridge and subnet, apart from a crun-ci that may run on the host. The
// tests remove both when they end.
const (
	testBridge  = "crunci-test0"
	testSubnet  = "10.199.77.0/24"
	testGateway = "10.199.77.1"
)

// needRoot skips the test unless it can make namespaces, bridges and iptables rules, or
// fails it when CRUNCI_REQUIRE_CONTAINERD=1 (CI) says it must run.
func needRoot(t *testing.T) {
	t.Helper()
	var why string
	if os.Geteuid() != 0 {
		why = "needs root to make network namespaces, a bridge and iptables rules"
	} else if _, err := invoke.FindInPath("bridge", DefaultPluginDirs); err != nil {
		why = "needs the CNI plugins: apt-get install containernetworking-plugins iptables"
	} else if _, err := exec.LookPath("iptables"); err != nil {
		why = "needs iptables: apt-get install iptables"
	}
	if why == "" {
		return
	}
	if os.Getenv("CRUNCI_REQUIRE_CONTAINERD") == "1" {
		t.Fatalf("%s (CRUNCI_REQUIRE_CONTAINERD=1 makes this a failure)", why)
	}
	t.Skipf("%s; skipped (CRUNCI_REQUIRE_CONTAINERD=1 makes this a failure)", why)
}

// newTestManager returns a Manager of the test bridge and its state directory. At the
// end of the test it removes what is left below the state directory, the bridge and the
// masquerade rule.
func newTestManager(t *testing.T, mode Mode) (*Manager, string) {
	t.Helper()
	needRoot(t)
	state := t.TempDir()
	m, err := New(mode, Config{Subnet: testSubnet, Bridge: testBridge, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := m.RemoveOrphans(ctx, state); err != nil {
			t.Error(err)
		}
		if err := m.removeMasquerade(ctx); err != nil {
			t.Error(err)
		}
		if l, err := netlink.LinkByName(testBridge); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete bridge %s: %v", testBridge, err)
			}
		}
	})
	return m, state
}

func TestSetup(t *testing.T) {
	tests := []struct {
		name      string
		mode      Mode
		wantLinks []string
		wantIP    bool
	}{
		{
			name:      "bridge mode gives an address in the subnet and a default route through the bridge",
			mode:      Bridge,
			wantLinks: []string{"eth0", "lo"}, // sorted
			wantIP:    true,
		},
		{
			name:      "none mode gives only a loopback interface",
			mode:      None,
			wantLinks: []string{"lo"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, state := newTestManager(t, tt.mode)
			ctx := context.Background()
			dir := filepath.Join(state, "builds", "b1", "netns")
			sb, err := m.Setup(ctx, "b1-1", dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := filepath.Dir(sb.Path); got != filepath.Join(dir, "b1-1") {
				t.Errorf("Path = %s, want it in %s", sb.Path, filepath.Join(dir, "b1-1"))
			}
			if err := ns.IsNSorErr(sb.Path); err != nil {
				t.Errorf("Path %s: %v", sb.Path, err)
			}
			nl := handleAt(t, sb.Path)
			links, err := nl.LinkList()
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, l := range links {
				names = append(names, l.Attrs().Name)
				if l.Attrs().Flags&net.FlagUp == 0 {
					t.Errorf("link %s is down", l.Attrs().Name)
				}
			}
			slices.Sort(names)
			if diff := cmp.Diff(tt.wantLinks, names); diff != "" {
				t.Errorf("links in the namespace (-want +got):\n%s", diff)
			}
			if !tt.wantIP {
				if sb.IP != "" {
					t.Errorf("IP = %q, want none", sb.IP)
				}
			} else {
				_, subnet, _ := net.ParseCIDR(testSubnet)
				ip := net.ParseIP(sb.IP)
				if ip == nil || !subnet.Contains(ip) || sb.IP == testGateway {
					t.Errorf("IP = %q, want a step's address in %s", sb.IP, testSubnet)
				}
				if got := defaultGateway(t, nl); got != testGateway {
					t.Errorf("default route via %q, want via %s", got, testGateway)
				}
				eth0, err := nl.LinkByName("eth0")
				if err != nil {
					t.Fatal(err)
				}
				if want := defaultRouteMTU(); want > 0 && eth0.Attrs().MTU != want {
					t.Errorf("eth0 MTU = %d, want the host's %d", eth0.Attrs().MTU, want)
				}
			}
			if got := sysctlIn(t, sb.Path, "net/ipv4/ip_unprivileged_port_start"); got != "0" {
				t.Errorf("ip_unprivileged_port_start = %q, want 0", got)
			}
			if err := m.Teardown(ctx, sb); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Dir(sb.Path)); !os.IsNotExist(err) {
				t.Errorf("Teardown left %s (stat: %v)", filepath.Dir(sb.Path), err)
			}
		})
	}
}

func TestSandboxesReachEachOther(t *testing.T) {
	m, state := newTestManager(t, Bridge)
	ctx := context.Background()
	dir := filepath.Join(state, "builds", "b1", "netns")
	a := setup(t, m, "b1-1", dir)
	b := setup(t, m, "b1-2", dir)
	if a.IP == b.IP {
		t.Fatalf("both sandboxes have %s", a.IP)
	}
	// Both listen on the same port: parallel steps may run the same services.
	serve(t, a, "a")
	serve(t, b, "b")
	host := listen(t, net.JoinHostPort(testGateway, "0"), "host")
	tests := []struct {
		name string
		from *Sandbox
		to   string
		want string
	}{
		{name: "a reaches b's address", from: a, to: b.IP, want: "b"},
		{name: "b reaches a's address", from: b, to: a.IP, want: "a"},
		{name: "a reaches its own service on localhost", from: a, to: "127.0.0.1", want: "a"},
		{name: "b reaches its own service on its own address", from: b, to: b.IP, want: "b"},
		{name: "a reaches the host on the bridge's address", from: a, to: host, want: "host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.to
			if _, _, err := net.SplitHostPort(addr); err != nil {
				addr = net.JoinHostPort(addr, "8080")
			}
			if got := dial(t, tt.from, addr); got != tt.want {
				t.Errorf("dial %s from %s = %q, want %q", tt.to, tt.from.ID, got, tt.want)
			}
		})
	}
	for _, sb := range []*Sandbox{a, b} {
		if err := m.Teardown(ctx, sb); err != nil {
			t.Error(err)
		}
	}
}

func TestParallelSetups(t *testing.T) {
	m, state := newTestManager(t, Bridge)
	ctx := context.Background()
	dir := filepath.Join(state, "builds", "b1", "netns")
	const n = 8
	sbs := make([]*Sandbox, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { sbs[i], errs[i] = m.Setup(ctx, fmt.Sprintf("b1-%d", i), dir) })
	}
	wg.Wait()
	seen := map[string]string{}
	for i, sb := range sbs {
		if errs[i] != nil {
			t.Error(errs[i])
			continue
		}
		if other, ok := seen[sb.IP]; ok {
			t.Errorf("%s and %s both have %s", other, sb.ID, sb.IP)
		}
		seen[sb.IP] = sb.ID
	}
	for _, sb := range sbs {
		wg.Go(func() {
			if err := m.Teardown(ctx, sb); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := count(t, state).IPAM; n > 2 {
		t.Errorf("%d files left under %s/cni, want the lock and last reserved address only", n, state)
	}
}

func TestSetupTeardownLeaksNothing(t *testing.T) {
	m, state := newTestManager(t, Bridge)
	ctx := context.Background()
	dir := filepath.Join(state, "builds", "b1", "netns")
	cycles := 50
	if testing.Short() {
		cycles = 5
	}
	// The first cycle makes what stays: the bridge, the masquerade rule, the host-local
	// lock and last reserved address.
	if err := m.Teardown(ctx, setup(t, m, "b1-0", dir)); err != nil {
		t.Fatal(err)
	}
	before := count(t, state)
	for i := 1; i <= cycles; i++ {
		sb := setup(t, m, fmt.Sprintf("b1-%d", i), dir)
		if i == 1 {
			during := count(t, state)
			if during.Veths != before.Veths+1 || during.Mounts != before.Mounts+1 {
				t.Errorf("with a sandbox: %+v, without: %+v, want one more veth and mount", during, before)
			}
		}
		if err := m.Teardown(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	after := count(t, state)
	t.Logf("after 1 and after %d Setup/Teardown cycles: %+v, %+v", cycles+1, before, after)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("leaked (-before +after):\n%s", diff)
	}
	if got := masqueradeRules(t); got != 1 {
		t.Errorf("%d masquerade rules of %s, want 1", got, testSubnet)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("left in %s: %v", dir, entries)
	}
}

func TestTeardownIsIdempotent(t *testing.T) {
	m, state := newTestManager(t, Bridge)
	ctx := context.Background()
	dir := filepath.Join(state, "builds", "b1", "netns")
	// The first cycle makes what stays: the bridge, the masquerade rule, the host-local
	// lock and last reserved address.
	if err := m.Teardown(ctx, setup(t, m, "b1-0", dir)); err != nil {
		t.Fatal(err)
	}
	before := count(t, state)
	sb := setup(t, m, "b1-1", dir)
	tests := []struct {
		name string
		sb   *Sandbox
	}{
		{name: "the first teardown removes the sandbox", sb: sb},
		{name: "a second teardown finds nothing and succeeds", sb: sb},
		{name: "a nil sandbox is nothing to tear down", sb: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := m.Teardown(ctx, tt.sb); err != nil {
				t.Fatal(err)
			}
		})
	}
	after := count(t, state)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("leaked (-before +after):\n%s", diff)
	}
}

func TestSetupWithAnIDInUse(t *testing.T) {
	m, state := newTestManager(t, Bridge)
	ctx := context.Background()
	dir := filepath.Join(state, "builds", "b1", "netns")
	first := setup(t, m, "b1-1", dir)
	if _, err := m.Setup(ctx, "b1-1", dir); err == nil || !strings.Contains(err.Error(), "set up network b1-1:") {
		t.Fatalf("second Setup of b1-1: error = %v, want one", err)
	}
	if err := ns.IsNSorErr(first.Path); err != nil {
		t.Errorf("the failed Setup broke the first sandbox: %v", err)
	}
	serve(t, first, "first")
	if got := dial(t, first, net.JoinHostPort(first.IP, "8080")); got != "first" {
		t.Errorf("the first sandbox answers %q, want first", got)
	}
	if err := m.Teardown(ctx, first); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveOrphans(t *testing.T) {
	tests := []struct {
		name string
		// crash makes what a dead build left below build; it returns paths that must
		// stay.
		crash func(t *testing.T, m *Manager, build string) []string
	}{
		{
			name: "namespaces left mounted by a crash are detached and removed",
			crash: func(t *testing.T, m *Manager, build string) []string {
				setup(t, m, "b9-1", filepath.Join(build, "netns"))
				setup(t, m, "b9-2", filepath.Join(build, "netns"))
				return nil
			},
		},
		{
			name: "a namespace unmounted by a reboot has its address freed",
			crash: func(t *testing.T, m *Manager, build string) []string {
				sb := setup(t, m, "b9-1", filepath.Join(build, "netns"))
				if err := mount.Unmount(sb.Path, unix.MNT_DETACH); err != nil {
					t.Fatal(err)
				}
				return nil
			},
		},
		{
			name: "a crash during Setup leaves an empty directory for builds.RemoveDir",
			crash: func(t *testing.T, m *Manager, build string) []string {
				p := filepath.Join(build, "netns", "b9-1")
				if err := os.MkdirAll(p, 0o755); err != nil {
					t.Fatal(err)
				}
				return []string{p}
			},
		},
		{
			name: "other mounts below the build are not entered",
			crash: func(t *testing.T, m *Manager, build string) []string {
				setup(t, m, "b9-1", filepath.Join(build, "netns"))
				rootfs := filepath.Join(build, "rootfs")
				if err := os.MkdirAll(rootfs, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := unix.Mount("tmpfs", rootfs, "tmpfs", 0, ""); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { mount.UnmountAll(rootfs, unix.MNT_DETACH) })
				look := filepath.Join(rootfs, "x-1", "cni-1")
				if err := os.MkdirAll(filepath.Dir(look), 0o755); err != nil {
					t.Fatal(err)
				}
				write(t, look, "")
				return []string{look}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, state := newTestManager(t, Bridge)
			ctx := context.Background()
			// Another build's sandbox, and the first cycle's leftovers, stay.
			live := setup(t, m, "b1-1", filepath.Join(state, "builds", "b1", "netns"))
			before := count(t, state)
			build := filepath.Join(state, "builds", "b9")
			keep := tt.crash(t, m, build)

			if err := m.RemoveOrphans(ctx, build); err != nil {
				t.Fatal(err)
			}
			after := settle(t, state, before)
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("left (-before +after):\n%s", diff)
			}
			for _, p := range keep {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("RemoveOrphans removed %s: %v", p, err)
				}
			}
			err := filepath.WalkDir(filepath.Join(build, "netns"), func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					t.Errorf("RemoveOrphans left %s", p)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := ns.IsNSorErr(live.Path); err != nil {
				t.Errorf("RemoveOrphans of b9 touched b1's sandbox: %v", err)
			}
			if err := m.RemoveOrphans(ctx, build); err != nil {
				t.Errorf("RemoveOrphans again: %v", err)
			}
		})
	}
}

// setup makes a sandbox that the test tears down at its end unless it did.
func setup(t *testing.T, m *Manager, id, dir string) *Sandbox {
	t.Helper()
	sb, err := m.Setup(context.Background(), id, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Teardown(context.Background(), sb); err != nil {
			t.Error(err)
		}
	})
	return sb
}

// serve answers each connection to port 8080 of the sandbox with word.
func serve(t *testing.T, sb *Sandbox, word string) {
	t.Helper()
	var ln net.Listener
	err := ns.WithNetNSPath(sb.Path, func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", ":8080")
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", sb.ID, err)
	}
	answer(t, ln, word)
}

// listen answers each connection to addr of the host with word and returns the address
// it listens on.
func listen(t *testing.T, addr, word string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	answer(t, ln, word)
	return ln.Addr().String()
}

// answer answers each connection of ln with word until the test ends.
func answer(t *testing.T, ln net.Listener, word string) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, word)
			c.Close()
		}
	}()
}

// dial connects to addr from within the sandbox and returns the line it reads.
func dial(t *testing.T, sb *Sandbox, addr string) string {
	t.Helper()
	var c net.Conn
	err := ns.WithNetNSPath(sb.Path, func(ns.NetNS) error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, sb.ID, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && err != io.EOF {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return strings.TrimSpace(line)
}

// handleAt is a netlink handle in the namespace at path.
func handleAt(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	return nl
}

// defaultGateway returns the gateway of the default IPv4 route, "" without one.
func defaultGateway(t *testing.T, nl *netlink.Handle) string {
	t.Helper()
	routes, err := nl.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw != nil {
			return r.Gw.String()
		}
	}
	return ""
}

// sysctlIn reads a sysctl of the namespace at path.
func sysctlIn(t *testing.T, path, key string) string {
	t.Helper()
	var v []byte
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		var err error
		v, err = os.ReadFile(filepath.Join("/proc/sys", key))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(v))
}

// counts are what a sandbox makes on the host.
type counts struct {
	// Veths on the test bridge.
	Veths int
	// IPAM files: host-local's allocations and the CNI result cache under
	// <state>/cni.
	IPAM int
	// Mounts of network namespaces below the state directory.
	Mounts int
	// Iptables lines (iptables-save) of the test subnet or of a CNI chain.
	Rules int
}

// settle waits a little for the counts to be want: the kernel removes the veth of an
// unmounted namespace in the background.
func settle(t *testing.T, state string, want counts) counts {
	t.Helper()
	c := count(t, state)
	for deadline := time.Now().Add(5 * time.Second); c != want && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		c = count(t, state)
	}
	return c
}

// count counts what sandboxes made on the host. It looks at the test's bridge, state
// directory and subnet only, so that other tests running at the same time do not
// disturb it.
func count(t *testing.T, state string) counts {
	t.Helper()
	var c counts
	if br, err := netlink.LinkByName(testBridge); err == nil {
		links, err := netlink.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if l.Type() == "veth" && l.Attrs().MasterIndex == br.Attrs().Index {
				c.Veths++
			}
		}
	}
	filepath.WalkDir(filepath.Join(state, "cni"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && d.Name() != "masquerade.lock" {
			c.IPAM++
		}
		return nil
	})
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], state+"/") && strings.Contains(line, " - nsfs ") {
			c.Mounts++
		}
	}
	prefix := strings.TrimSuffix(testSubnet, "0/24")
	for _, line := range iptablesSave(t) {
		if strings.Contains(line, prefix) || strings.Contains(line, "CNI-") {
			c.Rules++
		}
	}
	return c
}

func masqueradeRules(t *testing.T) int {
	n := 0
	for _, line := range iptablesSave(t) {
		if strings.Contains(line, "MASQUERADE") && strings.Contains(line, testSubnet) {
			n++
		}
	}
	return n
}

// iptablesSave returns the rule and chain lines of iptables-save.
func iptablesSave(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}
