package network

import (
	"context"
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
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/log"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Mode is how a step's containers are networked.
type Mode string

// The modes. Bridge is the default of crun-ci.
const (
	// Bridge gives each step a network namespace of its own, attached to the host's
	// bridge with an address of the subnet.
	Bridge Mode = "bridge"
	// Host runs the containers in the host's network namespace.
	Host Mode = "host"
	// None gives each step a network namespace with only a loopback interface.
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

// Defaults of Config.
const (
	// DefaultSubnet is next to the 10.88.0.0/16 of Podman and containerd's CRI examples
	// rather than on it, and away from Docker's 172.17.0.0/16 and the 172.18-31 and
	// 192.168 ranges its user networks take, so that crun-ci can share a host with them.
	DefaultSubnet = "10.89.0.0/16"
	// DefaultBridge is the name of the host's bridge.
	DefaultBridge = "crunci0"
)

// DefaultPluginDirs are where Debian's containernetworking-plugins (/usr/lib/cni) and the
// upstream release tarballs (/opt/cni/bin) install the CNI plugins.
var DefaultPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// netName is the CNI network name: host-local keeps its allocations in a directory of
// this name, and the iptables comments of the plugins carry it.
const netName = "crun-ci"

// ifName is the step's interface on the bridge, inside its namespace.
const ifName = "eth0"

// plugins are the CNI plugins that Bridge mode executes.
var plugins = []string{"bridge", "host-local"}

// Config of the bridge network. The zero value takes the defaults, except StateDir.
type Config struct {
	// Subnet the steps take their addresses from, an IPv4 CIDR; DefaultSubnet if empty.
	// The first address is the bridge's, the gateway of the steps.
	Subnet string
	// Bridge is the name of the host's bridge; DefaultBridge if empty.
	Bridge string
	// PluginDirs are searched for the CNI plugins; DefaultPluginDirs if empty.
	PluginDirs []string
	// StateDir is crun-ci's state directory. The address allocations and the CNI result
	// cache live under StateDir/cni, not under /var/lib/cni, so that the builds of one
	// state directory are found and cleaned up apart from anything else on the host.
	// Bridge mode needs it; give it in the other modes too, so that RemoveOrphans frees
	// the addresses of a dead build that ran in Bridge mode.
	StateDir string
	// MTU of the steps' interfaces and the bridge; 0 takes that of the device of the
	// host's default route, so that a host on a network with a smaller MTU than 1500 (a
	// VPN, a cloud VM) does not lose the steps' large packets.
	MTU int
}

// Manager sets up and tears down step networks. It is safe for concurrent use.
type Manager struct {
	mode   Mode
	cfg    Config
	subnet *net.IPNet
	cni    *libcni.CNIConfig
	conf   *libcni.NetworkConfigList
	// plugins reports whether the CNI plugins were found: Bridge mode needs them; the
	// other modes use them only to clean up what a Bridge build left.
	plugins bool
	// ensureMasq is whether Setup keeps the masquerade rule; off only to measure the
	// plugin's own masquerading.
	ensureMasq bool
}

// Mode returns the mode the Manager was made for.
func (m *Manager) Mode() Mode { return m.mode }

// New returns a Manager of the mode. In Bridge mode it fails with a clear error when the
// CNI plugins or iptables are missing, when cfg.StateDir is empty or when the subnet
// overlaps a route of the host that is not the bridge's.
func New(mode Mode, cfg Config) (*Manager, error) {
	if _, err := ParseMode(string(mode)); err != nil {
		return nil, fmt.Errorf("new network: %w", err)
	}
	if cfg.Subnet == "" {
		cfg.Subnet = DefaultSubnet
	}
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if len(cfg.PluginDirs) == 0 {
		cfg.PluginDirs = DefaultPluginDirs
	}
	m := &Manager{mode: mode, cfg: cfg, ensureMasq: true}
	fail := func(err error) (*Manager, error) {
		return nil, fmt.Errorf("new %s network: %w", mode, err)
	}
	ip, subnet, err := net.ParseCIDR(cfg.Subnet)
	if err != nil || ip.To4() == nil {
		return fail(fmt.Errorf("subnet %q: want an IPv4 CIDR such as %s", cfg.Subnet, DefaultSubnet))
	}
	if ones, _ := subnet.Mask.Size(); ones > 30 {
		return fail(fmt.Errorf("subnet %q: too small, want /30 or larger", cfg.Subnet))
	}
	m.subnet = subnet
	if len(cfg.Bridge) > 15 || strings.ContainsAny(cfg.Bridge, "/ \t\n") {
		return fail(fmt.Errorf("bridge name %q: want at most 15 characters, no slash or space", cfg.Bridge))
	}
	if cfg.MTU < 0 {
		return fail(fmt.Errorf("MTU %d: want 0 (the host's) or more", cfg.MTU))
	}
	if mode == Bridge && cfg.StateDir == "" {
		return fail(errors.New("no state directory"))
	}
	var missing []string
	for _, p := range plugins {
		if _, err := invoke.FindInPath(p, cfg.PluginDirs); err != nil {
			missing = append(missing, p)
		}
	}
	m.plugins = len(missing) == 0
	if mode == Bridge {
		if !m.plugins {
			return fail(fmt.Errorf("CNI plugins %s not found in %s: install them with `apt-get install containernetworking-plugins`, or run with `--network host`",
				strings.Join(missing, ", "), strings.Join(cfg.PluginDirs, ", ")))
		}
		if _, err := exec.LookPath("iptables"); err != nil {
			return fail(errors.New("iptables not found: install it with `apt-get install iptables`, or run with `--network host`"))
		}
		if err := checkRoutes(subnet, cfg.Bridge); err != nil {
			return fail(err)
		}
	}
	if cfg.MTU == 0 {
		cfg.MTU = defaultRouteMTU()
	}
	m.cfg = cfg
	if cfg.StateDir != "" && m.plugins {
		m.conf, err = libcni.ConfListFromBytes(confList(cfg, subnet, netName, false))
		if err != nil {
			return fail(fmt.Errorf("CNI configuration: %w", err))
		}
		m.cni = libcni.NewCNIConfigWithCacheDir(cfg.PluginDirs, m.cniDir("cache"), nil)
	}
	return m, nil
}

// cniDir is where the CNI state of the state directory lives.
func (m *Manager) cniDir(elem ...string) string {
	return filepath.Join(append([]string{m.cfg.StateDir, "cni"}, elem...)...)
}

// confList is the CNI network of the steps: a bridge that is the steps' gateway and
// host-local addresses, kept under the state directory. The plugin's own masquerading
// is off (ipMasq false): it leaves a chain per step behind whenever a DEL comes without
// its namespace (containernetworking/plugins#810), so Setup keeps one rule per subnet
// instead. pluginMasq turns it on, for measuring that; name is the network's name.
func confList(cfg Config, subnet *net.IPNet, name string, pluginMasq bool) []byte {
	type obj = map[string]any
	conf := obj{
		"cniVersion": "1.0.0",
		"name":       name,
		"plugins": []obj{{
			"type":      "bridge",
			"bridge":    cfg.Bridge,
			"isGateway": true,
			"ipMasq":    pluginMasq,
			"ipam": obj{
				"type":    "host-local",
				"ranges":  [][]obj{{{"subnet": subnet.String()}}},
				"routes":  []obj{{"dst": "0.0.0.0/0"}},
				"dataDir": filepath.Join(cfg.StateDir, "cni", "networks"),
			},
		}},
	}
	if cfg.MTU > 0 {
		conf["plugins"].([]obj)[0]["mtu"] = cfg.MTU
	}
	b, err := json.Marshal(conf)
	if err != nil {
		panic(err) // maps of strings and slices always marshal
	}
	return b
}

// checkRoutes fails if a route of the host other than the default one overlaps subnet
// on another device than the bridge: the steps could not reach what it leads to.
func checkRoutes(subnet *net.IPNet, bridge string) error {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
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
		if dev == bridge {
			continue
		}
		return fmt.Errorf("subnet %s overlaps the route to %s on %s: choose another subnet", subnet, r.Dst, dev)
	}
	return nil
}

// defaultRouteMTU returns the MTU of the device of the host's default IPv4 route, 0 when
// there is none.
func defaultRouteMTU() int {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
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

// Sandbox is one step's network namespace.
type Sandbox struct {
	// ID names the sandbox; it is the CNI container id. It contains the build id, so
	// that what a dead build left can be told apart.
	ID string
	// Path is the bind mount of the namespace, for the network namespace of the OCI
	// spec; "" in Host mode.
	Path string
	// IP is the step's address on the bridge; "" unless Bridge.
	IP string
}

// validID is what CNI accepts as a container id; it is also a safe file name.
var validID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// Setup creates the network namespace of step id. id is the CNI container id: it must
// contain the build id (the build id, a dash and the step's sequence number, say) and
// consist of letters, digits, '_', '.' and '-'.
//
// The namespace is bind-mounted at dir/<id>/cni-<random> (containerd's pkg/netns names
// the file); the caller keeps dir inside the build's directory, e.g.
// <state>/builds/<build>/netns, so that RemoveOrphans of that directory finds it. Setup
// brings up loopback, lets unprivileged users bind ports below 1024 and ping (as Docker
// does) and, in Bridge mode, attaches the namespace to the bridge with CNI (bridge and
// host-local) and makes sure that the subnet's traffic to the outside is masqueraded.
// In Host mode it makes nothing and returns a Sandbox with an empty Path.
//
// What Setup made is undone when it fails.
func (m *Manager) Setup(ctx context.Context, id, dir string) (_ *Sandbox, retErr error) {
	if !validID.MatchString(id) {
		return nil, fmt.Errorf("set up network %q: invalid id: want letters, digits, '_', '.' and '-'", id)
	}
	sb := &Sandbox{ID: id}
	if m.mode == Host {
		return sb, nil
	}
	fail := func(err error) (*Sandbox, error) {
		return nil, fmt.Errorf("set up network %s: %w", id, err)
	}
	if m.mode == Bridge && m.ensureMasq {
		if err := m.ensureMasquerade(ctx); err != nil {
			return fail(err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	sbDir := filepath.Join(dir, id)
	if err := os.Mkdir(sbDir, 0o755); err != nil {
		return fail(err) // an existing directory is an id used twice
	}
	defer func() {
		// Once the namespace exists, teardown removes the directory with it.
		if retErr != nil && sb.Path == "" {
			if err := os.Remove(sbDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
				retErr = errors.Join(retErr, err)
			}
		}
	}()
	n, err := netns.NewNetNS(sbDir)
	if err != nil {
		return fail(err)
	}
	sb.Path = n.GetPath()
	defer func() {
		if retErr != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := m.teardown(cctx, sb, m.mode == Bridge); err != nil {
				retErr = errors.Join(retErr, err)
			}
		}
	}()
	if err := prepare(sb.Path); err != nil {
		return fail(err)
	}
	if m.mode != Bridge {
		return sb, nil
	}
	res, err := m.cni.AddNetworkList(ctx, m.conf, m.runtimeConf(sb.ID, sb.Path))
	if err != nil {
		return fail(fmt.Errorf("attach to bridge %s: %w", m.cfg.Bridge, err))
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return fail(fmt.Errorf("attach to bridge %s: %w", m.cfg.Bridge, err))
	}
	for _, c := range r.IPs {
		if m.subnet.Contains(c.Address.IP) {
			sb.IP = c.Address.IP.String()
			break
		}
	}
	if sb.IP == "" {
		return fail(fmt.Errorf("attach to bridge %s: no address of %s in the CNI result", m.cfg.Bridge, m.subnet))
	}
	return sb, nil
}

// prepare brings up the loopback interface of the namespace at path and sets Docker's
// sysctls: unprivileged users may bind any port and ping.
func prepare(path string) error {
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	// /proc/sys/net shows the namespace of the thread that opens it.
	return ns.WithNetNSPath(path, func(ns.NetNS) error {
		for k, v := range map[string]string{
			"net/ipv4/ip_unprivileged_port_start": "0",
			"net/ipv4/ping_group_range":           "0 2147483647",
		} {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				return fmt.Errorf("set sysctl %s: %w", strings.ReplaceAll(k, "/", "."), err)
			}
		}
		return nil
	})
}

func (m *Manager) runtimeConf(id, path string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: path, IfName: ifName}
}

// Teardown undoes Setup: CNI DEL (which frees the address and deletes the veth pair),
// then it unmounts and removes the namespace file and its directory. What is already
// gone is success, so Teardown may be called again, after a failure too. When CNI DEL
// fails the namespace is kept, so that a later RemoveOrphans can retry with it.
func (m *Manager) Teardown(ctx context.Context, sb *Sandbox) error {
	if sb == nil || sb.Path == "" {
		return nil
	}
	if err := m.teardown(ctx, sb, m.mode == Bridge); err != nil {
		return fmt.Errorf("tear down network %s: %w", sb.ID, err)
	}
	return nil
}

// teardown runs CNI DEL if del, then unmounts and removes the namespace and its
// directory.
func (m *Manager) teardown(ctx context.Context, sb *Sandbox, del bool) error {
	if del {
		if m.cni == nil {
			return errors.New("CNI plugins not found: cannot free the address")
		}
		path := sb.Path
		// The plugins fail on a path that is no namespace any more; without one they
		// still free the address, and the veth went with the namespace.
		if err := ns.IsNSorErr(path); err != nil {
			path = ""
		}
		if err := m.cni.DelNetworkList(ctx, m.conf, m.runtimeConf(sb.ID, path)); err != nil {
			return fmt.Errorf("detach from bridge %s: %w", m.cfg.Bridge, err)
		}
	}
	// Unmount every mount stacked on the file before removing it (style rule 17).
	if err := mount.UnmountAll(sb.Path, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", sb.Path, err)
	}
	if err := os.Remove(sb.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Remove(filepath.Dir(sb.Path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// RemoveOrphans tears down the step networks whose namespace files remain below dir, the
// directory of a dead build: CNI DEL by id (whatever the Manager's mode, since the dead
// build may have used another; skipped when the plugins or the state directory are
// missing), unmount, remove. It finds them by their layout, <id>/cni-<random>, mounted
// or not (a reboot unmounts them), and does not descend into other mounts (a
// container's root file system). Call it before the build's directory is removed
// (builds.Remove): the files are how the ids, and so the addresses, are found.
func (m *Manager) RemoveOrphans(ctx context.Context, dir string) error {
	mounts, err := mountsBelow(dir)
	if err != nil {
		return fmt.Errorf("remove orphan networks below %s: %w", dir, err)
	}
	var found []*Sandbox
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() && p != dir && mounts[p] != "" {
			return fs.SkipDir
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), "cni-") {
			return nil
		}
		id := filepath.Base(filepath.Dir(p))
		if !validID.MatchString(id) {
			return nil
		}
		if fstype := mounts[p]; fstype != "" && fstype != "nsfs" {
			return nil // something else mounted there: not ours to touch
		}
		found = append(found, &Sandbox{ID: id, Path: p})
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove orphan networks below %s: %w", dir, err)
	}
	var errs []error
	for _, sb := range found {
		log.G(ctx).Debugf("removing orphan network %s at %s", sb.ID, sb.Path)
		// Whatever the mode now, the dead build may have run in Bridge mode.
		if err := m.teardown(ctx, sb, m.cni != nil); err != nil {
			errs = append(errs, fmt.Errorf("tear down network %s: %w", sb.ID, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove orphan networks below %s: %w", dir, err)
	}
	return nil
}

// mountsBelow maps the mount points at or below dir to their file system type.
func mountsBelow(dir string) (map[string]string, error) {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, i := range infos {
		out[i.Mountpoint] = i.FSType
	}
	return out, nil
}
