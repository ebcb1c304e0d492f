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
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The tests' own bridge prefix and subnet, apart from a crun-ci that may run on the
// host. The tests remove their bridges and rules when they end. The subnet has sixteen
// /24 step networks; the first one's gateway is testGateway.
const (
	testBridge  = "crtst"
	testSubnet  = "10.199.0.0/20"
	testGateway = "10.199.0.1"
)

// needRoot skips the test unless it can make namespaces, bridges and iptables rules, or
// fails it when CRUNCI_REQUIRE_CONTAINERD=1 (CI) says it must run.
func needRoot(t *testing.T) {
	t.Helper()
	var why string
	if os.Geteuid() != 0 {
		why = "needs root to make network namespaces, bridges and iptables rules"
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

// newTestManager returns a Manager of the test prefix and subnet and its state
// directory. At the end of the test it removes what is left below the state directory,
// the bridges and the rules.
func newTestManager(t *testing.T, mode Mode, access HostAccess) (*Manager, string) {
	t.Helper()
	needRoot(t)
	state := t.TempDir()
	m, err := New(mode, Config{Subnet: testSubnet, Bridge: testBridge, StateDir: state, HostAccess: access})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := m.RemoveOrphans(ctx, filepath.Join(state, "builds")); err != nil {
			t.Error(err)
		}
		if err := m.RemoveRules(ctx); err != nil {
			t.Error(err)
		}
		for _, l := range bridges(t) {
			t.Errorf("bridge %s left", l)
			netlink.LinkDel(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: l}})
		}
	})
	return m, state
}

// setup makes a step network that the test closes at its end unless it did.
func setup(t *testing.T, m *Manager, id, dir string) *Net {
	t.Helper()
	n, err := m.Setup(context.Background(), id, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return n
}

func attach(t *testing.T, n *Net, id string) *Sandbox {
	t.Helper()
	sb, err := n.Attach(context.Background(), id)
	if err == nil {
		err = sb.Wait(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

func TestAttach(t *testing.T) {
	tests := []struct {
		name      string
		mode      Mode
		wantLinks []string
		wantIP    bool
	}{
		{
			name:      "bridge mode gives an address of the step network and a default route through its bridge",
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
			m, state := newTestManager(t, tt.mode, "")
			ctx := context.Background()
			dir := filepath.Join(state, "builds", "b1", "netns")
			n := setup(t, m, "b1-1", dir)
			sb := attach(t, n, "b1-1-app")
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
				if again := attach(t, n, "b1-1-db"); again.Path != sb.Path {
					t.Errorf("a second container of a none network got %s, want the shared %s", again.Path, sb.Path)
				}
			} else {
				if sb.IP != "10.199.0.2" {
					t.Errorf("IP = %q, want the first container's address of the first slice, 10.199.0.2", sb.IP)
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
				if got, _ := os.ReadFile("/proc/sys/net/ipv4/conf/" + testBridge + "0/rp_filter"); strings.TrimSpace(string(got)) != "1" {
					t.Errorf("rp_filter of the bridge = %q, want 1 (strict)", got)
				}
				if db := attach(t, n, "b1-1-db"); db.IP != "10.199.0.3" || db.Path == sb.Path {
					t.Errorf("a second container has %s at %s, want 10.199.0.3 in a namespace of its own", db.IP, db.Path)
				}
			}
			if got := sysctlIn(t, sb.Path, "net/ipv4/ip_unprivileged_port_start"); got != "0" {
				t.Errorf("ip_unprivileged_port_start = %q, want 0", got)
			}
			if err := n.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if err := m.Release(dir); err != nil { // the bridge kept for the next step
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Dir(sb.Path)); !os.IsNotExist(err) {
				t.Errorf("Close left %s (stat: %v)", filepath.Dir(sb.Path), err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("Close left %v in %s", entries, dir)
			}
			if bs := bridges(t); len(bs) != 0 {
				t.Errorf("Close left bridges %v", bs)
			}
		})
	}
}

// Two containers of a step network reach each other, both on the same port; a container
// of another step network reaches neither, nor can it use their addresses as its source;
// the host is out of reach unless HostAccessGateway.
func TestStepNetworksAreIsolated(t *testing.T) {
	for _, access := range []HostAccess{HostAccessNone, HostAccessGateway} {
		t.Run("host access "+string(access), func(t *testing.T) {
			m, state := newTestManager(t, Bridge, access)
			dir := filepath.Join(state, "builds", "b1", "netns")
			a, b := setup(t, m, "b1-1", dir), setup(t, m, "b1-2", dir)
			a1, a2, b1 := attach(t, a, "b1-1-x"), attach(t, a, "b1-1-y"), attach(t, b, "b1-2-x")
			serve(t, a1, "a1")
			serve(t, a2, "a2")
			serve(t, b1, "b1")
			host := listen(t, ":0", "host") // every address of the host, a bridge's too
			_, port, _ := net.SplitHostPort(host)
			bGateway := strings.TrimSuffix(b1.IP, ".2") + ".1"
			if got := dial(t, a1, net.JoinHostPort(a2.IP, "8080")); got != "a2" {
				t.Errorf("a1 -> a2 = %q, want a2", got)
			}
			if got := dial(t, a2, net.JoinHostPort(a1.IP, "8080")); got != "a1" {
				t.Errorf("a2 -> a1 = %q, want a1", got)
			}
			if err := dialErr(b1, net.JoinHostPort(a1.IP, "8080"), ""); err == nil {
				t.Errorf("b1 reached a1 at %s in another step network", a1.IP)
			}
			if err := dialErr(a1, net.JoinHostPort(b1.IP, "8080"), ""); err == nil {
				t.Errorf("a1 reached b1 at %s in another step network", b1.IP)
			}
			// b1 takes a2's address as a second one of its own and sends from it.
			got := udpListen(t, a1)
			udpSend(t, a2, "", a1.IP, "from a2")
			if err := addAddr(b1, a2.IP+"/32"); err != nil {
				t.Fatal(err)
			}
			udpSend(t, b1, a2.IP, a1.IP, "from b1")
			if diff := cmp.Diff([]string{a2.IP + " from a2"}, got()); diff != "" {
				t.Errorf("what a1 received (-want +got):\n%s", diff)
			}
			reached := dialErr(b1, net.JoinHostPort(bGateway, port), "") == nil
			if want := access == HostAccessGateway; reached != want {
				t.Errorf("b1 reached the host on its bridge's address: %v, want %v", reached, want)
			}
		})
	}
}

func TestParallelSetups(t *testing.T) {
	m, state := newTestManager(t, Bridge, "")
	ctx := context.Background()
	dir := filepath.Join(state, "builds", "b1", "netns")
	const parallel = 8
	nets := make([]*Net, parallel)
	sbs := make([]*Sandbox, parallel)
	errs := make([]error, parallel)
	var wg sync.WaitGroup
	for i := range parallel {
		wg.Go(func() {
			if nets[i], errs[i] = m.Setup(ctx, fmt.Sprintf("b1-%d", i), dir); errs[i] == nil {
				if sbs[i], errs[i] = nets[i].Attach(ctx, fmt.Sprintf("b1-%d-app", i)); errs[i] == nil {
					errs[i] = sbs[i].Wait(ctx)
				}
			}
		})
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
	for _, n := range nets {
		if n != nil {
			wg.Go(func() {
				if err := n.Close(ctx); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	if err := m.Release(dir); err != nil {
		t.Fatal(err)
	}
	if got := count(t, state); got != (counts{Rules: got.Rules}) {
		t.Errorf("after Close and Release: %+v, want nothing but the rules", got)
	}
}

func TestSetupCloseLeaksNothing(t *testing.T) {
	m, state := newTestManager(t, Bridge, "")
	ctx := context.Background()
	dir := filepath.Join(state, "builds", "b1", "netns")
	cycles := 50
	if testing.Short() {
		cycles = 5
	}
	// The first cycle makes what stays: the rules.
	cycle := func(i int, check func()) {
		n, err := m.Setup(ctx, fmt.Sprintf("b1-%d", i), dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []string{"app", "db", "cache"} {
			attach(t, n, fmt.Sprintf("b1-%d-%s", i, c))
		}
		if check != nil {
			check()
		}
		if err := n.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cycle(0, nil)
	before := count(t, state)
	for i := 1; i <= cycles; i++ {
		var check func()
		if i == 1 {
			check = func() {
				during := count(t, state)
				// The first cycle's bridge and slice are kept and taken again.
				if during.Veths != before.Veths+3 || during.Mounts != before.Mounts+3 || during.Bridges != before.Bridges || during.Slices != before.Slices || during.Guards != before.Guards+15 {
					t.Errorf("with a network of three: %+v, without: %+v, want 3 more veths and mounts and 15 guard rules on the kept bridge", during, before)
				}
			}
		}
		cycle(i, check)
	}
	after := count(t, state)
	t.Logf("after 1 and after %d cycles: %+v, %+v", cycles+1, before, after)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("leaked (-before +after):\n%s", diff)
	}
	if err := m.Release(dir); err != nil {
		t.Fatal(err)
	}
	if got := count(t, state); got != (counts{Rules: got.Rules}) {
		t.Errorf("after Release: %+v, want nothing but the rules", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left in %s: %v", dir, entries)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	m, state := newTestManager(t, Bridge, "")
	ctx := context.Background()
	n := setup(t, m, "b1-1", filepath.Join(state, "builds", "b1", "netns"))
	attach(t, n, "b1-1-app")
	for i := 0; i < 2; i++ {
		if err := n.Close(ctx); err != nil {
			t.Fatalf("Close %d: %v", i+1, err)
		}
	}
	if _, err := n.Attach(ctx, "b1-1-late"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Attach after Close: %v, want an error saying it is closed", err)
	}
	if err := m.Release(filepath.Join(state, "builds", "b1", "netns")); err != nil {
		t.Fatal(err)
	}
	if got := count(t, state); got != (counts{Rules: got.Rules}) {
		t.Errorf("after Close: %+v, want nothing but the rules", got)
	}
}

func TestAttachWithAnIDInUse(t *testing.T) {
	m, state := newTestManager(t, Bridge, "")
	ctx := context.Background()
	n := setup(t, m, "b1-1", filepath.Join(state, "builds", "b1", "netns"))
	first := attach(t, n, "b1-1-app")
	if _, err := n.Attach(ctx, "b1-1-app"); err == nil || !strings.Contains(err.Error(), "attach b1-1-app to network b1-1:") {
		t.Fatalf("second Attach of b1-1-app: error = %v, want one", err)
	}
	serve(t, first, "first")
	if got := dial(t, first, net.JoinHostPort(first.IP, "8080")); got != "first" {
		t.Errorf("the first sandbox answers %q, want first", got)
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
			name: "networks and namespaces left by a crash are removed",
			crash: func(t *testing.T, m *Manager, build string) []string {
				n := setup(t, m, "b9-1", filepath.Join(build, "netns"))
				attach(t, n, "b9-1-app")
				attach(t, n, "b9-1-db")
				setup(t, m, "b9-2", filepath.Join(build, "netns"))
				return nil
			},
		},
		{
			name: "a namespace unmounted by a reboot leaves its veth, which goes",
			crash: func(t *testing.T, m *Manager, build string) []string {
				sb := attach(t, setup(t, m, "b9-1", filepath.Join(build, "netns")), "b9-1-app")
				if err := mount.Unmount(sb.Path, unix.MNT_DETACH); err != nil {
					t.Fatal(err)
				}
				return nil
			},
		},
		{
			name: "a crash before the slice was taken leaves a record, which goes",
			crash: func(t *testing.T, m *Manager, build string) []string {
				dir := filepath.Join(build, "netns")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(dir, "b9-1.net"), fmt.Sprintf(`{"id":"b9-1","bridge":"%s5","slice":5,"subnet":"10.199.5.0/24","slices_dir":%q}`, testBridge, m.slicesDir()))
				return nil
			},
		},
		{
			name: "other mounts below the build are not entered",
			crash: func(t *testing.T, m *Manager, build string) []string {
				attach(t, setup(t, m, "b9-1", filepath.Join(build, "netns")), "b9-1-app")
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
			m, state := newTestManager(t, Bridge, "")
			ctx := context.Background()
			// Another build's network stays.
			live := attach(t, setup(t, m, "b1-1", filepath.Join(state, "builds", "b1", "netns")), "b1-1-app")
			before := count(t, state)
			build := filepath.Join(state, "builds", "b9")
			keep := tt.crash(t, m, build)

			// A Manager of another mode cleans up what a Bridge build left.
			other, err := New(None, Config{StateDir: state})
			if err != nil {
				t.Fatal(err)
			}
			if err := other.RemoveOrphans(ctx, build); err != nil {
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
			err = filepath.WalkDir(filepath.Join(build, "netns"), func(p string, d fs.DirEntry, err error) error {
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

// dialErr connects to addr from within the sandbox, from the source address src when
// not "", and reads a line, within a second; it returns what failed.
func dialErr(sb *Sandbox, addr, src string) error {
	return ns.WithNetNSPath(sb.Path, func(ns.NetNS) error {
		d := net.Dialer{Timeout: time.Second}
		if src != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		_, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
}

// addAddr adds an address to the sandbox's eth0.
func addAddr(sb *Sandbox, cidr string) error {
	h, err := vnetns.GetFromPath(sb.Path)
	if err != nil {
		return err
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return err
	}
	defer nl.Close()
	eth, err := nl.LinkByName("eth0")
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	return nl.AddrAdd(eth, a)
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

// counts are what step networks make on the host.
type counts struct {
	// Veths on the test's bridges, and the bridges.
	Veths, Bridges int
	// Slices allocated below the state directory.
	Slices int
	// Mounts of network namespaces below the state directory.
	Mounts int
	// Iptables lines (iptables-save) of the test subnet.
	Rules int
	// Guard rules (nftables) of the test prefix.
	Guards int
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

// bridges are the names of the test's bridges.
func bridges(t *testing.T) []string {
	t.Helper()
	links, err := LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if l.Type() == "bridge" && ours(l.Attrs().Name, testBridge) {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// count counts what step networks made on the host. It looks at the test's bridges,
// state directory and subnet only, so that other tests running at the same time do not
// disturb it.
func count(t *testing.T, state string) counts {
	t.Helper()
	var c counts
	links, err := LinkList()
	if err != nil {
		t.Fatal(err)
	}
	ours := map[int]bool{}
	for _, name := range bridges(t) {
		c.Bridges++
		if l, err := netlink.LinkByName(name); err == nil {
			ours[l.Attrs().Index] = true
		}
	}
	for _, l := range links {
		if l.Type() == "veth" && ours[l.Attrs().MasterIndex] {
			c.Veths++
		}
	}
	entries, _ := os.ReadDir(filepath.Join(state, "net", "slices"))
	c.Slices = len(entries)
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], state+"/") && strings.Contains(line, " - nsfs ") {
			c.Mounts++
		}
	}
	for _, line := range iptablesSave(t) {
		if strings.Contains(line, testSubnet) {
			c.Rules++
		}
	}
	g, err := (&Manager{cfg: Config{Bridge: testBridge}}).GuardRules()
	if err != nil {
		t.Fatal(err)
	}
	c.Guards = g
	return c
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

// The rules follow the configuration: a Manager with HostAccessGateway removes the
// input rule, one of another subnet the old subnet's rules, and RemoveRules all of the
// prefix's.
func TestRulesFollowTheConfiguration(t *testing.T) {
	needRoot(t)
	state := t.TempDir()
	ctx := context.Background()
	rules := func() (all, input int) {
		for _, l := range iptablesSave(t) {
			if strings.Contains(l, `"crun-ci `+testBridge+` `) {
				all++
				if strings.HasPrefix(l, "-A INPUT") {
					input++
				}
			}
		}
		return all, input
	}
	manager := func(subnet string, access HostAccess) *Manager {
		m, err := New(Bridge, Config{Subnet: subnet, Bridge: testBridge, StateDir: state, HostAccess: access})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.ensureRules(ctx); err != nil {
			t.Fatal(err)
		}
		return m
	}
	t.Cleanup(func() { manager(testSubnet, "").RemoveRules(ctx) })
	manager(testSubnet, HostAccessNone)
	if all, input := rules(); all != 6 || input != 1 {
		t.Errorf("with host access none: %d rules, %d in INPUT; want 6 and 1", all, input)
	}
	manager(testSubnet, HostAccessGateway)
	if all, input := rules(); all != 5 || input != 0 {
		t.Errorf("with host access gateway: %d rules, %d in INPUT; want 5 and 0", all, input)
	}
	m := manager("10.199.16.0/20", HostAccessNone)
	if all, _ := rules(); all != 6 {
		t.Errorf("after a change of subnet: %d rules, want the new subnet's 6", all)
	}
	for _, l := range iptablesSave(t) {
		if strings.Contains(l, testSubnet) {
			t.Errorf("a rule of the old subnet stays: %s", l)
		}
	}
	if err := m.RemoveRules(ctx); err != nil {
		t.Fatal(err)
	}
	if all, _ := rules(); all != 0 {
		t.Errorf("RemoveRules left %d rules", all)
	}
}

// A network closed while its containers' interfaces are still being set up waits for
// them and leaves nothing.
func TestCloseRightAfterAttach(t *testing.T) {
	m, state := newTestManager(t, Bridge, "")
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		n, err := m.Setup(ctx, fmt.Sprintf("b1-%d", i), filepath.Join(state, "builds", "b1", "netns"))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []string{"a", "b"} {
			if _, err := n.Attach(ctx, fmt.Sprintf("b1-%d-%s", i, c)); err != nil {
				t.Fatal(err)
			}
		}
		if err := n.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Release(filepath.Join(state, "builds", "b1", "netns")); err != nil {
		t.Fatal(err)
	}
	if got := count(t, state); got != (counts{Rules: got.Rules}) {
		t.Errorf("after Close and Release: %+v, want nothing but the rules", got)
	}
}

// A closed network is kept for the next Setup of its directory (the same bridge, slice
// and record, empty again), not for another directory's; Release removes what is kept.
func TestClosedNetworksAreReusedInTheirDirectory(t *testing.T) {
	m, state := newTestManager(t, Bridge, "")
	ctx := context.Background()
	dir, other := filepath.Join(state, "builds", "b1", "netns"), filepath.Join(state, "builds", "b2", "netns")
	first := setup(t, m, "b1-1", dir)
	attach(t, first, "b1-1-app")
	bridge := first.rec.Bridge
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := m.Setup(ctx, "b1-2", dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.rec.Bridge != bridge {
		t.Errorf("the next network of the directory has bridge %s, want the kept %s", again.rec.Bridge, bridge)
	}
	if sb := attach(t, again, "b1-2-app"); sb.IP != "10.199.0.2" {
		t.Errorf("the reused network's first address is %s, want 10.199.0.2", sb.IP)
	}
	elsewhere := setup(t, m, "b2-1", other)
	if elsewhere.rec.Bridge == bridge {
		t.Errorf("another directory got the kept bridge %s", bridge)
	}
	for _, n := range []*Net{again, elsewhere} {
		if err := n.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{dir, other} {
		if err := m.Release(d); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(t, state); got != (counts{Rules: got.Rules}) {
		t.Errorf("after Release: %+v, want nothing but the rules", got)
	}
}

// Within one step network a container cannot pose as another: a packet with another's
// address, or a frame with another's MAC, does not get through.
func TestContainersCannotPoseAsEachOther(t *testing.T) {
	m, state := newTestManager(t, Bridge, "")
	n := setup(t, m, "b1-1", filepath.Join(state, "builds", "b1", "netns"))
	a, b, c := attach(t, n, "b1-1-a"), attach(t, n, "b1-1-b"), attach(t, n, "b1-1-c")
	got := udpListen(t, c)
	udpSend(t, b, "", c.IP, "as itself")
	// b takes a's address as a second one of its own and sends from it.
	if err := addAddr(b, a.IP+"/32"); err != nil {
		t.Fatal(err)
	}
	udpSend(t, b, a.IP, c.IP, "with a's address")
	// b takes a's MAC.
	nl := handleAt(t, b.Path)
	eth, err := nl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetHardwareAddr(eth, containerMAC(net.ParseIP(a.IP))); err != nil {
		t.Fatal(err)
	}
	udpSend(t, b, b.IP, c.IP, "with a's MAC")
	udpSend(t, a, "", c.IP, "a as itself")
	want := []string{b.IP + " as itself", a.IP + " a as itself"}
	if diff := cmp.Diff(want, got()); diff != "" {
		t.Errorf("what c received (-want +got):\n%s", diff)
	}
}

// udpListen receives datagrams on port 9000 of the sandbox; the function it returns
// waits a little and says what came, "SOURCE TEXT" each.
func udpListen(t *testing.T, sb *Sandbox) func() []string {
	t.Helper()
	var pc net.PacketConn
	err := ns.WithNetNSPath(sb.Path, func(ns.NetNS) error {
		var err error
		pc, err = net.ListenPacket("udp4", ":9000")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var mu sync.Mutex
	var got []string
	go func() {
		buf := make([]byte, 100)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, from.(*net.UDPAddr).IP.String()+" "+string(buf[:n]))
			mu.Unlock()
		}
	}()
	return func() []string {
		time.Sleep(500 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

// udpSend sends text to port 9000 of dst from the sandbox, from the address src unless
// it is "", and waits a little so that datagrams arrive in the order sent.
func udpSend(t *testing.T, sb *Sandbox, src, dst, text string) {
	t.Helper()
	err := ns.WithNetNSPath(sb.Path, func(ns.NetNS) error {
		var laddr *net.UDPAddr
		if src != "" {
			laddr = &net.UDPAddr{IP: net.ParseIP(src)}
		}
		c, err := net.DialUDP("udp4", laddr, &net.UDPAddr{IP: net.ParseIP(dst), Port: 9000})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(text))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
}

// A network whose bridge was never made (its Setup failed after the record) is not
// kept for reuse: its record and slice go.
func TestANetworkWithoutItsBridgeIsNotKept(t *testing.T) {
	dir := t.TempDir()
	m := &Manager{mode: Bridge, cfg: Config{Bridge: testBridge, StateDir: t.TempDir()}}
	n := &Net{ID: "b1-1", m: m, dir: dir, rec: record{ID: "b1-1", Bridge: testBridge + "f0", Slice: 240, SlicesDir: m.slicesDir()}}
	write(t, n.recordFile(), "{}")
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(m.idle[dir]) != 0 {
		t.Errorf("kept %d networks without a bridge", len(m.idle[dir]))
	}
	if _, err := os.Stat(n.recordFile()); !os.IsNotExist(err) {
		t.Errorf("the record stays: %v", err)
	}
}

// Close deletes its network's interfaces in one request, by their group: not those of
// another network, nor an interface of the host's.
func TestCloseDeletesOnlyItsOwnInterfaces(t *testing.T) {
	m, state := newTestManager(t, Bridge, "")
	ctx := context.Background()
	host := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "crtsthost"}, PeerName: "crtstpeer"}
	if err := netlink.LinkAdd(host); err != nil {
		t.Fatal(err)
	}
	defer netlink.LinkDel(host)
	a := setup(t, m, "b1-1", filepath.Join(state, "builds", "b1", "netns"))
	b := setup(t, m, "b2-1", filepath.Join(state, "builds", "b2", "netns"))
	var bs []*Sandbox
	for _, c := range []string{"app", "db"} {
		attach(t, a, "b1-1-"+c)
		bs = append(bs, attach(t, b, "b2-1-"+c))
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, sb := range bs {
		if _, err := netlink.LinkByName(sb.veth); err != nil {
			t.Errorf("%s of the other network: %v", sb.veth, err)
		}
	}
	if _, err := netlink.LinkByName(host.Name); err != nil {
		t.Errorf("the host's %s: %v", host.Name, err)
	}
	if got := count(t, state); got.Veths != 2 {
		t.Errorf("after closing one of two networks of two: %d veths, want the other's 2", got.Veths)
	}
}

// The record of checked rules lets the next Manager trust one iptables-save; a rule
// deleted behind its back changes what iptables-save shows, and the Manager makes it
// again.
func TestARuleDeletedBehindTheRecordsBackIsMadeAgain(t *testing.T) {
	needRoot(t)
	state := t.TempDir()
	ctx := context.Background()
	manager := func() *Manager {
		m, err := New(Bridge, Config{Subnet: testSubnet, Bridge: testBridge, StateDir: state})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.ensureRules(ctx); err != nil {
			t.Fatal(err)
		}
		return m
	}
	t.Cleanup(func() { manager().RemoveRules(ctx) })
	m := manager()
	count := func() int {
		n := 0
		for _, l := range iptablesSave(t) {
			if strings.Contains(l, `"`+m.comment()+`"`) {
				n++
			}
		}
		return n
	}
	if n := count(); n != 6 {
		t.Fatalf("%d rules, want 6", n)
	}
	record, err := os.ReadFile(m.rulesRecord())
	if err != nil || strings.Count(string(record), " -A ") != 6 {
		t.Fatalf("record %q, %v: want the 6 rules", record, err)
	}
	manager() // trusts the record
	if n := count(); n != 6 {
		t.Fatalf("%d rules after a second Manager, want 6", n)
	}
	r := m.rules()[1]
	if err := iptables(ctx, r.table, append([]string{"-D"}, r.spec...)...); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 5 {
		t.Fatalf("%d rules after deleting one, want 5", n)
	}
	manager()
	if n := count(); n != 6 {
		t.Errorf("%d rules after a new Manager, want the deleted one back (6)", n)
	}
	// A record of another set of rules (--host-access gateway has no INPUT rule) does
	// not stand for this one.
	g, err := New(Bridge, Config{Subnet: testSubnet, Bridge: testBridge, StateDir: state, HostAccess: HostAccessGateway})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.ensureRules(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 5 {
		t.Fatalf("%d rules with host access gateway, want 5", n)
	}
	manager()
	if n := count(); n != 6 {
		t.Errorf("%d rules after going back to host access none, want 6 (the INPUT rule again)", n)
	}
	if err := m.RemoveRules(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.rulesRecord()); !os.IsNotExist(err) {
		t.Errorf("RemoveRules kept the record: %v", err)
	}
}

// A network that closes after its build retired the directory is not kept: its bridge
// goes with its interfaces, its record and slice with it, and no other network's bridge
// or interfaces go; one kept before stays until Release.
func TestARetiredDirectoryKeepsNoNetwork(t *testing.T) {
	m, state := newTestManager(t, Bridge, "")
	ctx := context.Background()
	dir, other := filepath.Join(state, "builds", "b1", "netns"), filepath.Join(state, "builds", "b2", "netns")
	kept := setup(t, m, "b1-1", dir)
	attach(t, kept, "b1-1-app")
	if err := kept.Close(ctx); err != nil {
		t.Fatal(err)
	}
	last := setup(t, m, "b1-2", dir) // the kept one, reused
	if last != kept {
		t.Fatalf("the next network of the directory is not the kept one")
	}
	second := setup(t, m, "b1-3", dir)
	neighbour := setup(t, m, "b2-1", other)
	for _, n := range []*Net{last, second, neighbour} {
		attach(t, n, n.ID+"-app")
		attach(t, n, n.ID+"-db")
	}
	if err := last.Close(ctx); err != nil { // kept again, before the retirement
		t.Fatal(err)
	}
	m.Retire(dir)
	if err := second.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(second.rec.Bridge); err == nil {
		t.Errorf("bridge %s of a network closed after Retire is still there", second.rec.Bridge)
	}
	if _, err := os.Stat(second.recordFile()); !os.IsNotExist(err) {
		t.Errorf("the record of a network closed after Retire stays: %v", err)
	}
	for _, n := range []*Net{last, neighbour} {
		if _, err := netlink.LinkByName(n.rec.Bridge); err != nil {
			t.Errorf("bridge %s of %s: %v", n.rec.Bridge, n.ID, err)
		}
	}
	if got := count(t, state); got.Veths != 2 || got.Bridges != 2 {
		t.Errorf("after Retire and Close: %+v, want the neighbour's 2 veths and 2 bridges (it and the one kept before)", got)
	}
	if err := neighbour.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, other} {
		if err := m.Release(d); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(t, state); got != (counts{Rules: got.Rules}) {
		t.Errorf("after Release: %+v, want nothing but the rules", got)
	}
	// Release ends the retirement: the directory's next build keeps networks again.
	again := setup(t, m, "b1-4", dir)
	if err := again.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(m.idle[dir]) != 1 {
		t.Errorf("after Release, a closed network of the directory is not kept")
	}
	if err := m.Release(dir); err != nil {
		t.Fatal(err)
	}
}
