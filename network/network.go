package network

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
)

// Mode is how a step's containers are networked.
type Mode string

// The modes. Bridge is the default of crun-ci.
const (
	// Bridge gives each step a network of its own (a bridge and a slice of the subnet)
	// and each of its containers a namespace and an address on it.
	Bridge Mode = "bridge"
	// Host runs the containers in the host's network namespace.
	Host Mode = "host"
	// None gives each step a network namespace with only a loopback interface, shared by
	// its containers.
	None Mode = "none"
)

// ParseMode parses a mode as a user writes it: "bridge", "host" or "none".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Bridge, Host, None:
		return m, nil
	}
	return "", fmt.Errorf("parse network mode %q: want bridge, host or none", s)
}

// HostAccess says whether the steps may open connections to the host itself (to its
// address on a step's bridge, or any other of its addresses).
type HostAccess string

// The host access choices. None is the default of crun-ci; Docker's is Gateway.
const (
	HostAccessNone    HostAccess = "none"
	HostAccessGateway HostAccess = "gateway"
)

// ParseHostAccess parses --host-access: "none" or "gateway".
func ParseHostAccess(s string) (HostAccess, error) {
	switch a := HostAccess(s); a {
	case HostAccessNone, HostAccessGateway:
		return a, nil
	}
	return "", fmt.Errorf("parse host access %q: want none or gateway", s)
}

// DefaultSubnet is next to the 10.88.0.0/16 of Podman and containerd's CRI examples
// rather than on it, and away from Docker's 172.17.0.0/16 and the 172.18-31 and 192.168
// ranges its user networks take, so that crun-ci can share a host with them. A state
// directory used for the first time without a subnet takes the first of it and the
// /16s after it up to 10.99.0.0/16 that is free, and keeps it.
const DefaultSubnet = "10.89.0.0/16"

// Config of the step networks. The zero value takes the defaults (those stored with the
// state directory, else the built-in ones), except StateDir.
type Config struct {
	// Subnet the step networks take their slices from, an IPv4 CIDR of /27 or more.
	Subnet string
	// Bridge is the prefix of the names of the step networks' bridges, at most 10
	// characters; the default is "cr" and 5 hex digits of a hash of StateDir, so that
	// two state directories never share a bridge.
	Bridge string
	// HostAccess says whether steps may connect to the host; HostAccessNone if empty.
	HostAccess HostAccess
	// StateDir is crun-ci's state directory, where the subnet and bridge prefix are
	// stored (network.json) and the slices are allocated (net/slices). Bridge mode needs
	// it; give it in the other modes too, so that RemoveOrphans frees what a dead build
	// left in Bridge mode.
	StateDir string
	// MTU of the containers' interfaces and the bridges; 0 takes that of the device of
	// the host's default route, so that a host on a network with a smaller MTU than 1500
	// (a VPN, a cloud VM) does not lose the steps' large packets.
	MTU int
}

// Manager sets up and tears down step networks. It is safe for concurrent use.
type Manager struct {
	mode   Mode
	cfg    Config
	subnet *net.IPNet
	// sliceOnes is the prefix length of a step network's slice of the subnet.
	sliceOnes int

	rulesMu sync.Mutex
	rulesOK bool

	// idle are closed step networks kept for the next Setup of the same directory (a
	// build's): reusing a bridge and its slice saves making and deleting a bridge per
	// step, which costs tens of milliseconds of the kernel's grace periods.
	poolMu sync.Mutex
	idle   map[string][]*Net
	// retired are the directories whose build asks for no more networks (Retire): one
	// that closes goes at once, its bridge with its interfaces.
	retired map[string]bool
}

// maxIdle is how many closed step networks a directory keeps for reuse.
const maxIdle = 8

// Mode returns the mode the Manager was made for.
func (m *Manager) Mode() Mode { return m.mode }

// Subnet returns the subnet of the step networks.
func (m *Manager) Subnet() *net.IPNet { return m.subnet }

// stored is what network.json in the state directory holds.
type stored struct {
	Subnet string `json:"subnet"`
	Bridge string `json:"bridge"`
}

// storedFile is where the configuration of a state directory is kept.
func storedFile(stateDir string) string { return filepath.Join(stateDir, "network.json") }

// DefaultBridge is the bridge prefix of a state directory that stored none.
func DefaultBridge(stateDir string) string {
	h := sha256.Sum256([]byte(filepath.Clean(stateDir)))
	return "cr" + hex.EncodeToString(h[:])[:5]
}

var validBridge = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_-]{0,9}$`)

// New returns a Manager of the mode. The subnet and bridge prefix are those of cfg, else
// those stored with the state directory, else the defaults; in Bridge mode what is used
// is stored. New fails with a clear error when iptables is missing, when cfg.StateDir is
// empty in Bridge mode or when the subnet overlaps a route of the host that is not on one
// of the step networks' bridges.
func New(mode Mode, cfg Config) (*Manager, error) {
	if _, err := ParseMode(string(mode)); err != nil {
		return nil, fmt.Errorf("new network: %w", err)
	}
	fail := func(err error) (*Manager, error) {
		return nil, fmt.Errorf("new %s network: %w", mode, err)
	}
	if mode == Bridge && cfg.StateDir == "" {
		return fail(errors.New("no state directory"))
	}
	var st stored
	if cfg.StateDir != "" {
		data, err := os.ReadFile(storedFile(cfg.StateDir))
		switch {
		case err == nil:
			if err := json.Unmarshal(data, &st); err != nil {
				return fail(fmt.Errorf("%s: %w", storedFile(cfg.StateDir), err))
			}
		case !errors.Is(err, fs.ErrNotExist):
			return fail(err)
		}
	}
	given := st
	pick := cfg.Subnet == "" && st.Subnet == "" && mode == Bridge
	cfg.Subnet = cmp.Or(cfg.Subnet, st.Subnet, DefaultSubnet)
	cfg.Bridge = cmp.Or(cfg.Bridge, st.Bridge, DefaultBridge(cfg.StateDir))
	cfg.HostAccess = cmp.Or(cfg.HostAccess, HostAccessNone)
	if _, err := ParseHostAccess(string(cfg.HostAccess)); err != nil {
		return fail(err)
	}
	ip, subnet, err := net.ParseCIDR(cfg.Subnet)
	if err != nil || ip.To4() == nil {
		return fail(fmt.Errorf("subnet %q: want an IPv4 CIDR such as %s", cfg.Subnet, DefaultSubnet))
	}
	ones, _ := subnet.Mask.Size()
	if ones > 27 {
		return fail(fmt.Errorf("subnet %q: too small, want /27 or larger", cfg.Subnet))
	}
	m := &Manager{mode: mode, cfg: cfg, subnet: subnet, sliceOnes: sliceOnes(ones)}
	if !validBridge.MatchString(cfg.Bridge) {
		return fail(fmt.Errorf("bridge prefix %q: want a letter and at most 9 more letters, digits, '_' or '-'", cfg.Bridge))
	}
	if cfg.MTU < 0 {
		return fail(fmt.Errorf("MTU %d: want 0 (the host's) or more", cfg.MTU))
	}
	if mode != Bridge {
		m.cfg = cfg
		return m, nil
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return fail(errors.New("iptables not found: install it with `apt-get install iptables`, or run with `--network host`"))
	}
	if err := removeLegacy(); err != nil {
		return fail(err)
	}
	if pick {
		// The first use of the state directory: a free subnet (another state directory
		// may use the default).
		if subnet, err = freeSubnet(cfg.StateDir, cfg.Bridge); err != nil {
			return fail(err)
		}
		m.subnet, cfg.Subnet = subnet, subnet.String()
	}
	if err := checkRoutes(subnet, cfg.Bridge); err != nil {
		return fail(err)
	}
	if cfg.MTU == 0 {
		cfg.MTU = defaultRouteMTU()
	}
	m.cfg = cfg
	if now := (stored{Subnet: subnet.String(), Bridge: cfg.Bridge}); now != given {
		if err := m.store(now, given); err != nil {
			return fail(err)
		}
	}
	return m, nil
}

// DefaultStateDir is crun-ci's default state directory, whose step networks take
// DefaultSubnet when it is free.
const DefaultStateDir = "/var/lib/crun-ci"

// freeSubnet is the first of the /16s from 10.89.0.0 (DefaultSubnet) to 10.99.0.0 that
// no route of the host overlaps, but those of the prefix's bridges. The default state
// directory looks from 10.89 on; another from a /16 of 10.90 to 10.99 that a hash of
// its path picks, so that two state directories rarely pick one subnet even when
// neither runs a build when the other makes its choice.
func freeSubnet(stateDir, prefix string) (*net.IPNet, error) {
	start := 0
	if filepath.Clean(stateDir) != DefaultStateDir {
		h := sha256.Sum256([]byte(filepath.Clean(stateDir)))
		start = 1 + int(h[0])%10
	}
	var first error
	for n := 0; n < 11; n++ {
		i := 89 + (start+n)%11
		_, subnet, _ := net.ParseCIDR(fmt.Sprintf("10.%d.0.0/16", i))
		err := checkRoutes(subnet, prefix)
		if err == nil {
			return subnet, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// sliceOnes is the prefix length of a step network in a subnet of prefix length ones:
// /24 in a /22 or larger subnet, else a quarter of it.
func sliceOnes(ones int) int {
	if ones <= 22 {
		return 24
	}
	return ones + 2
}

// store writes the configuration to network.json. Changing the subnet or the prefix is
// refused while a step network of the old one is allocated: its bridges still stand.
func (m *Manager) store(now, old stored) error {
	if old != (stored{}) {
		if names, _ := os.ReadDir(m.slicesDir()); len(names) > 0 {
			return fmt.Errorf("the state directory %s uses subnet %s and bridges %s*, and %d step networks of them are allocated: change the subnet or bridge once no build runs (and `crun-ci cleanup` has run)", m.cfg.StateDir, old.Subnet, old.Bridge, len(names))
		}
	}
	if err := os.MkdirAll(m.cfg.StateDir, 0o700); err != nil {
		return err
	}
	data, _ := json.Marshal(now)
	tmp := storedFile(m.cfg.StateDir) + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, storedFile(m.cfg.StateDir))
}

// checkRoutes fails if a route of the host other than the default one overlaps subnet
// on a device other than the step networks' bridges: the steps could not reach what it
// leads to.
func checkRoutes(subnet *net.IPNet, prefix string) error {
	routes, err := routeList()
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			continue
		}
		if !subnet.Contains(r.Dst.IP) && !r.Dst.Contains(subnet.IP) {
			continue
		}
		dev := fmt.Sprint(r.LinkIndex)
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
			dev = l.Attrs().Name
		}
		if ours(dev, prefix) {
			continue
		}
		return fmt.Errorf("subnet %s overlaps the route to %s on %s: choose another subnet with --subnet", subnet, r.Dst, dev)
	}
	return nil
}

// ours reports whether a device name is one of a prefix's bridges: the prefix and hex
// digits.
func ours(dev, prefix string) bool {
	rest, ok := strings.CutPrefix(dev, prefix)
	if !ok || rest == "" {
		return false
	}
	_, err := hex.DecodeString(strings.Repeat("0", len(rest)%2) + rest)
	return err == nil
}

// defaultRouteMTU returns the MTU of the device of the host's default IPv4 route, 0 when
// there is none.
func defaultRouteMTU() int {
	routes, err := routeList()
	if err != nil {
		return 0
	}
	for _, r := range routes {
		if r.Dst != nil && !r.Dst.IP.IsUnspecified() {
			continue
		}
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
			return l.Attrs().MTU
		}
	}
	return 0
}

// validID is what a network or sandbox id may be; it is also a safe file name.
var validID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// legacyBridge is the one bridge that crun-ci versions before step networks put every
// step on, with its masquerade rule.
const legacyBridge = "crunci0"

// removeLegacy removes the bridge of earlier crun-ci versions and its masquerade rule,
// when no interface is on the bridge (no build of such a version runs): its route to the
// whole default subnet would stand in the way of the step networks.
func removeLegacy() error {
	br, err := netlink.LinkByName(legacyBridge)
	if err != nil || br.Type() != "bridge" {
		return nil
	}
	links, err := LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			return nil // in use; checkRoutes says what is in the way
		}
	}
	addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
	for _, a := range addrs {
		sub := (&net.IPNet{IP: a.IP.Mask(a.Mask), Mask: a.Mask}).String()
		legacy := rule{"nat", false, []string{"POSTROUTING", "-s", sub, "!", "-o", legacyBridge, "-m", "comment", "--comment", "crun-ci " + sub, "-j", "MASQUERADE"}}
		if err := removeRule(context.Background(), legacy); err != nil {
			return err
		}
	}
	if err := netlink.LinkDel(br); err != nil {
		return fmt.Errorf("remove the bridge %s of an earlier crun-ci: %w", legacyBridge, err)
	}
	return nil
}

// dumpTries is how often a netlink listing is tried when the kernel says it was
// interrupted (links or routes changed meanwhile: other builds' networks), before its
// error is returned.
const dumpTries = 10

// LinkList lists the host's links, again when the listing was interrupted.
func LinkList() ([]netlink.Link, error) {
	var links []netlink.Link
	var err error
	for try := 0; try < dumpTries; try++ {
		if links, err = netlink.LinkList(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return links, err
}

// routeList lists the host's IPv4 routes, again when the listing was interrupted.
func routeList() ([]netlink.Route, error) {
	var routes []netlink.Route
	var err error
	for try := 0; try < dumpTries; try++ {
		if routes, err = netlink.RouteList(nil, netlink.FAMILY_V4); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return routes, err
}
