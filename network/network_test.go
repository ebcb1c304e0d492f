package network

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		name, in string
		want     Mode
		wantErr  string
	}{
		{name: "bridge is a mode", in: "bridge", want: Bridge},
		{name: "host is a mode", in: "host", want: Host},
		{name: "none is a mode", in: "none", want: None},
		{name: "an empty mode is an error", in: "", wantErr: `parse network mode "": want bridge, host or none`},
		{name: "modes are lower case", in: "Host", wantErr: `parse network mode "Host": want bridge, host or none`},
		{name: "a compose network name is no mode", in: "default", wantErr: `parse network mode "default": want bridge, host or none`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMode(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseMode(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ParseMode(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestHosts(t *testing.T) {
	const local = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	tests := []struct {
		name  string
		ip    string
		names []string
		want  string
	}{
		{
			name:  "bridge mode points every name at the step's address",
			ip:    "10.89.0.7",
			names: []string{"app", "db", "database"},
			want:  local + "10.89.0.7\tapp\n10.89.0.7\tdb\n10.89.0.7\tdatabase\n",
		},
		{
			name:  "host and none modes point every name at loopback",
			names: []string{"app", "db"},
			want:  local + "127.0.0.1\tapp\n127.0.0.1\tdb\n",
		},
		{
			name: "no names give the localhost lines",
			ip:   "10.89.0.7",
			want: local,
		},
		{
			name:  "a name given twice is written once",
			ip:    "10.89.0.7",
			names: []string{"db", "app", "db", "localhost"},
			want:  local + "10.89.0.7\tdb\n10.89.0.7\tapp\n",
		},
		{
			name:  "names that would break the file are left out",
			ip:    "10.89.0.7",
			names: []string{"", "two words", "a#b", "tab\tbed", "ok"},
			want:  local + "10.89.0.7\tok\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(Hosts(tt.ip, tt.names))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Hosts(%q, %q) (-want +got):\n%s", tt.ip, tt.names, diff)
			}
		})
	}
}

func TestResolvConf(t *testing.T) {
	tests := []struct {
		name          string
		etc, resolved string
		want          string
	}{
		{
			name: "a host's real nameservers are kept with search and options",
			etc:  "# generated\nsearch example.org\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:2\n",
			want: "# generated\nsearch example.org\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:2\n",
		},
		{
			name: "loopback nameservers are out of the step's reach and dropped",
			etc:  "nameserver 127.0.0.1\nnameserver 192.0.2.53\nnameserver ::1\n",
			want: "nameserver 192.0.2.53\n",
		},
		{
			name:     "systemd-resolved's stub is replaced by its upstream servers",
			etc:      "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
			resolved: "nameserver 192.0.2.53\nsearch .\n",
			want:     "nameserver 192.0.2.53\nsearch .\n",
		},
		{
			name:     "a loopback-only host without upstream servers leaves no nameserver",
			etc:      "nameserver 127.0.0.53\nsearch .\n",
			resolved: "nameserver 127.0.0.1\n",
			want:     "search .\n",
		},
		{
			name: "a link-local nameserver with a zone is kept",
			etc:  "nameserver fe80::1%eth0\n",
			want: "nameserver fe80::1%eth0\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(resolvConf([]byte(tt.etc), []byte(tt.resolved)))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("resolvConf (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolvConfReadsTheHostsFiles(t *testing.T) {
	dir := t.TempDir()
	etc, resolved := filepath.Join(dir, "resolv.conf"), filepath.Join(dir, "resolved.conf")
	old1, old2 := hostResolvConf, resolvedConf
	hostResolvConf, resolvedConf = etc, resolved
	t.Cleanup(func() { hostResolvConf, resolvedConf = old1, old2 })
	write(t, etc, "nameserver 127.0.0.53\n")
	write(t, resolved, "nameserver 192.0.2.53\n")

	tests := []struct {
		name string
		mode Mode
		want string
	}{
		{name: "host mode uses the host's file as it is", mode: Host, want: "nameserver 127.0.0.53\n"},
		{name: "bridge mode uses servers the step can reach", mode: Bridge, want: "nameserver 192.0.2.53\n"},
		{name: "none mode drops loopback servers too", mode: None, want: "nameserver 192.0.2.53\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolvConf(tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("ResolvConf(%s) (-want +got):\n%s", tt.mode, diff)
			}
		})
	}
}

func TestNewFails(t *testing.T) {
	state := t.TempDir()
	tests := []struct {
		name string
		mode Mode
		cfg  Config
		want []string // parts of the error
	}{
		{
			name: "an unknown mode is refused",
			mode: "nat",
			cfg:  Config{StateDir: state},
			want: []string{`new network: parse network mode "nat"`},
		},
		{
			name: "a subnet must be an IPv4 CIDR",
			mode: Bridge,
			cfg:  Config{Subnet: "10.89.0.0", StateDir: state},
			want: []string{`new bridge network: subnet "10.89.0.0": want an IPv4 CIDR`},
		},
		{
			name: "an IPv6 subnet is not supported",
			mode: Bridge,
			cfg:  Config{Subnet: "fd00::/64", StateDir: state},
			want: []string{`subnet "fd00::/64": want an IPv4 CIDR`},
		},
		{
			name: "a subnet needs room for the gateway and a step",
			mode: Bridge,
			cfg:  Config{Subnet: "10.89.0.0/28", StateDir: state},
			want: []string{`subnet "10.89.0.0/28": too small, want /27 or larger`},
		},
		{
			name: "a bridge prefix that leaves no room for the index is refused",
			mode: Bridge,
			cfg:  Config{Bridge: "crunci-is-long", StateDir: state},
			want: []string{`bridge prefix "crunci-is-long": want a letter and at most 9 more`},
		},
		{
			name: "a bridge prefix with a slash is refused",
			mode: Bridge,
			cfg:  Config{Bridge: "a/b", StateDir: state},
			want: []string{`bridge prefix "a/b"`},
		},
		{
			name: "an unknown host access is refused",
			mode: Bridge,
			cfg:  Config{HostAccess: "all", StateDir: state},
			want: []string{`parse host access "all": want none or gateway`},
		},
		{
			name: "a negative MTU is refused",
			mode: Bridge,
			cfg:  Config{MTU: -1, StateDir: state},
			want: []string{"new bridge network: MTU -1: want 0 (the host's) or more"},
		},
		{
			name: "bridge mode needs the state directory",
			mode: Bridge,
			cfg:  Config{},
			want: []string{"new bridge network: no state directory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.mode, tt.cfg)
			if err == nil {
				t.Fatalf("New(%s, %+v) succeeded, want an error", tt.mode, tt.cfg)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestHostModeMakesNoSandbox(t *testing.T) {
	m, err := New(Host, Config{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "netns")
	n, err := m.Setup(context.Background(), "build1-1", dir)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := n.Attach(context.Background(), "build1-1-app")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&Sandbox{ID: "build1-1-app"}, sb, cmp.AllowUnexported(Sandbox{})); diff != "" {
		t.Errorf("Attach (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Setup in host mode made %s (stat: %v)", dir, err)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultBridgeDiffersByStateDir(t *testing.T) {
	a, b := DefaultBridge("/var/lib/crun-ci"), DefaultBridge("/srv/other")
	if a == b || len(a) != 7 || !strings.HasPrefix(a, "cr") {
		t.Errorf("DefaultBridge = %q and %q, want two different 7-character names", a, b)
	}
	if DefaultBridge("/var/lib/crun-ci/") != a {
		t.Error("DefaultBridge depends on a trailing slash")
	}
}

func TestOurs(t *testing.T) {
	for dev, want := range map[string]bool{"cr1a2b30": true, "cr1a2b3ff": true, "cr1a2b3": false, "cr1a2b3x": false, "eth0": false} {
		if got := ours(dev, "cr1a2b3"); got != want {
			t.Errorf("ours(%q) = %v, want %v", dev, got, want)
		}
	}
}

func TestSliceOnes(t *testing.T) {
	for ones, want := range map[int]int{8: 24, 16: 24, 22: 24, 23: 25, 24: 26, 27: 29} {
		if got := sliceOnes(ones); got != want {
			t.Errorf("sliceOnes(%d) = %d, want %d", ones, got, want)
		}
	}
}

func TestNthIP(t *testing.T) {
	_, slice, _ := net.ParseCIDR("10.89.3.0/24")
	for n, want := range map[int]string{1: "10.89.3.1", 2: "10.89.3.2", 254: "10.89.3.254", 0: "", 255: "", -1: ""} {
		ip, ok := nthIP(slice, n)
		if got := ip.String(); ok != (want != "") || (ok && got != want) {
			t.Errorf("nthIP(%d) = %s, %v; want %q", n, got, ok, want)
		}
	}
}

// The subnet and prefix a state directory was first used with are kept; a later
// Manager without them takes them, and one that changes them is refused while a step
// network is allocated.
func TestConfigIsStoredWithTheStateDir(t *testing.T) {
	needRoot(t)
	state := t.TempDir()
	if _, err := New(Bridge, Config{StateDir: state, Subnet: testSubnet, Bridge: testBridge}); err != nil {
		t.Fatal(err)
	}
	m, err := New(Bridge, Config{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.Subnet != testSubnet || m.cfg.Bridge != testBridge {
		t.Errorf("a later Manager has subnet %s and bridge %s, want the stored %s and %s", m.cfg.Subnet, m.cfg.Bridge, testSubnet, testBridge)
	}
	if err := os.MkdirAll(m.slicesDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(m.slicesDir(), "0"), "b-1")
	_, err = New(Bridge, Config{StateDir: state, Subnet: "10.199.78.0/24", Bridge: testBridge})
	if err == nil || !strings.Contains(err.Error(), "1 step networks of them are allocated") {
		t.Errorf("changing the subnet while a network is allocated: %v", err)
	}
}

func TestSetupRefusesBadIDs(t *testing.T) {
	m, err := New(None, Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "../x", "a/b", ".hidden", "a b"} {
		t.Run("id "+strings.ReplaceAll(id, "/", "∕")+" is refused", func(t *testing.T) {
			_, err := m.Setup(context.Background(), id, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), "invalid id") {
				t.Fatalf("Setup(%q) error = %v, want invalid id", id, err)
			}
		})
	}
}

func TestMountsBelow(t *testing.T) {
	// The test's own root is always mounted.
	got, err := mountsBelow("/")
	if err != nil {
		t.Fatal(err)
	}
	if got["/"] == "" {
		t.Errorf("mountsBelow(/) = %v, want / in it", got)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSplitRule(t *testing.T) {
	got := splitRule(`-A INPUT -i cr1+ -m comment --comment "crun-ci cr1 10.89.0.0/16" -j REJECT`)
	want := []string{"-A", "INPUT", "-i", "cr1+", "-m", "comment", "--comment", "crun-ci cr1 10.89.0.0/16", "-j", "REJECT"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("splitRule (-want +got):\n%s", diff)
	}
}

// The default state directory looks for its subnet from 10.89 on, others from a /16
// that their path picks.
func TestFreeSubnetStartsWhereTheStateDirSays(t *testing.T) {
	needRoot(t)
	if sub, err := freeSubnet(DefaultStateDir, "crnone"); err != nil || sub.String() != DefaultSubnet && !strings.HasPrefix(sub.String(), "10.9") {
		t.Errorf("freeSubnet(default) = %v, %v", sub, err)
	}
	seen := map[string]bool{}
	for _, dir := range []string{"/a", "/b", "/c", "/d", "/e", "/f"} {
		sub, err := freeSubnet(dir, "crnone")
		if err != nil {
			t.Fatal(err)
		}
		seen[sub.String()] = true
	}
	if len(seen) < 2 {
		t.Errorf("six state directories all picked %v", seen)
	}
}
