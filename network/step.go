package network

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/log"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ifName is a container's interface on its step network, inside its namespace.
const ifName = "eth0"

// Net is one step's network. In Bridge mode it is a bridge of its own with a slice of
// the subnet, and Attach gives each container a namespace and an address on it; in None
// mode it is one namespace with a loopback interface that every container of the step
// shares; in Host mode it is nothing (the host's namespace).
type Net struct {
	// ID names the network; it contains the build id.
	ID string
	m  *Manager
	// dir is where the namespaces are mounted (dir/<sandbox id>/cni-<random>) and the
	// network's record is kept (dir/<id>.net).
	dir string
	rec record

	// bridgeReady is closed once the bridge is made (or failed to be: bridgeErr), with
	// the bridge's interface index.
	bridgeReady chan struct{}
	bridgeErr   error
	bridgeIndex int

	mu        sync.Mutex
	next      int // the host number of the next address
	sandboxes []*Sandbox
	shared    *Sandbox // None mode
	closed    bool
}

// record is what a Bridge network leaves in its build's directory, for RemoveOrphans.
type record struct {
	// ID is the network's.
	ID     string `json:"id"`
	Bridge string `json:"bridge"`
	// Slice is the index of the network's slice of the subnet, Subnet the slice.
	Slice  int    `json:"slice"`
	Subnet string `json:"subnet"`
	// SlicesDir is where the slice is allocated.
	SlicesDir string `json:"slices_dir"`
}

// Sandbox is one network namespace: a bind mount of it that keeps it alive while no
// process is in it.
type Sandbox struct {
	// ID names the sandbox (a container id); Path is the namespace's file, "" in Host
	// mode. IP is the container's address, "" unless Bridge.
	ID, Path, IP string
	// veth is the host's end of the container's interface (Bridge).
	veth string
	// ready is closed once the interfaces of the namespace are set up (or failed to be:
	// err); nil when they were set up before Attach returned.
	ready chan struct{}
	err   error
}

// Wait waits until the sandbox's interfaces are set up, and says what failed; ctx's
// error when it ends first.
func (sb *Sandbox) Wait(ctx context.Context) error {
	if sb == nil || sb.ready == nil {
		return nil
	}
	select {
	case <-sb.ready:
		return sb.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Setup makes the network of step id below dir, the build's directory of namespaces
// (say <state>/builds/<build>/netns), so that RemoveOrphans of that directory finds what
// a dead build left. id must contain the build id and consist of letters, digits, '_',
// '.' and '-'. In Bridge mode it allocates a slice of the subnet, makes its bridge (the
// slice's first address is the bridge's, the containers' gateway) and makes sure the
// rules of the subnet are in place (see the package documentation). What Setup made is
// undone when it fails.
func (m *Manager) Setup(ctx context.Context, id, dir string) (_ *Net, retErr error) {
	if !validID.MatchString(id) {
		return nil, fmt.Errorf("set up network %q: invalid id: want letters, digits, '_', '.' and '-'", id)
	}
	n := &Net{ID: id, m: m, dir: dir, next: 2}
	if m.mode == Host {
		return n, nil
	}
	fail := func(err error) (*Net, error) {
		return nil, fmt.Errorf("set up network %s: %w", id, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	defer func() {
		if retErr != nil {
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			retErr = errors.Join(retErr, n.Close(cctx))
		}
	}()
	if m.mode == None {
		sb, err := n.sandbox(id)
		if err != nil {
			return fail(err)
		}
		n.shared = sb
		if err := prepare(sb.Path); err != nil {
			return fail(err)
		}
		return n, nil
	}
	if err := m.ensureRules(ctx); err != nil {
		return fail(err)
	}
	if idle := m.take(dir); idle != nil {
		return idle, nil
	}
	if err := n.allocate(); err != nil {
		return fail(err)
	}
	// The bridge is made while the caller goes on (prepares its first container's
	// snapshot, say); Attach's set-up waits for it.
	n.bridgeReady = make(chan struct{})
	go func() {
		defer close(n.bridgeReady)
		n.bridgeErr = n.makeBridge()
	}()
	return n, nil
}

// Mode is the mode of the network.
func (n *Net) Mode() Mode { return n.m.mode }

// Attach gives container id its sandbox: in Bridge mode a namespace of its own with an
// address of the network, in None mode the network's one namespace, in Host mode none
// (an empty Path). In Bridge mode the namespace's interfaces are set up while the caller
// goes on: call the sandbox's Wait before a process runs in it.
func (n *Net) Attach(ctx context.Context, id string) (*Sandbox, error) {
	switch n.m.mode {
	case Host:
		return &Sandbox{ID: id}, nil
	case None:
		return n.shared, nil
	}
	if !validID.MatchString(id) {
		return nil, fmt.Errorf("attach %q to network %s: invalid id", id, n.ID)
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, fmt.Errorf("attach %s to network %s: the network is closed", id, n.ID)
	}
	_, slice, _ := net.ParseCIDR(n.rec.Subnet)
	ip, ok := nthIP(slice, n.next)
	n.next++
	n.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("attach %s to network %s: no address left in %s", id, n.ID, slice)
	}
	sb, err := n.sandbox(id)
	if err != nil {
		return nil, fmt.Errorf("attach %s to network %s: %w", id, n.ID, err)
	}
	sb.IP = ip.String()
	sb.ready = make(chan struct{})
	go func() {
		defer close(sb.ready)
		err := prepare(sb.Path)
		if err == nil {
			<-n.bridgeReady
			err = n.bridgeErr
		}
		if err == nil {
			err = n.link(sb, ip, slice)
		}
		if err != nil {
			sb.err = fmt.Errorf("attach %s to network %s: %w", id, n.ID, err) // Close removes it
		}
	}()
	return sb, nil
}

// sandbox makes the namespace of id at dir/<id>/cni-<random> and adds it to the
// network's.
func (n *Net) sandbox(id string) (_ *Sandbox, retErr error) {
	sbDir := filepath.Join(n.dir, id)
	if err := os.Mkdir(sbDir, 0o755); err != nil {
		return nil, err // an existing directory is an id used twice
	}
	ns, err := netns.NewNetNS(sbDir)
	if err != nil {
		os.Remove(sbDir)
		return nil, err
	}
	sb := &Sandbox{ID: id, Path: ns.GetPath(), veth: vethName(n.ID, id)}
	n.mu.Lock()
	n.sandboxes = append(n.sandboxes, sb)
	n.mu.Unlock()
	return sb, nil
}

// vethName is the host's end of a container's interface: "crv" and 11 hex digits of a
// hash of the network and container ids, so that RemoveOrphans can name it too.
func vethName(netID, id string) string {
	h := sha256.Sum256([]byte(netID + "/" + id))
	return "crv" + hex.EncodeToString(h[:])[:11]
}

// link makes the veth pair of sb: eth0 in its namespace with ip and a default route
// through the bridge, the host's end on the bridge.
func (n *Net) link(sb *Sandbox, ip net.IP, slice *net.IPNet) error {
	h, err := vnetns.GetFromPath(sb.Path)
	if err != nil {
		return err
	}
	defer h.Close()
	mac := containerMAC(ip)
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: sb.veth, MTU: n.m.cfg.MTU, MasterIndex: n.bridgeIndex,
			Group: vethGroup(n.bridgeIndex),
		},
		PeerName:         ifName,
		PeerHardwareAddr: mac,
		PeerNamespace:    netlink.NsFd(int(h)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("make veth %s: %w", sb.veth, err)
	}
	// The guard's rules are in place before the veth is up: no frame passes unchecked.
	if err := n.m.guard(sb.veth, mac, ip); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("bring up %s: %w", sb.veth, err)
	}
	inNS, err := netlink.NewHandleAt(h)
	if err != nil {
		return err
	}
	defer inNS.Close()
	eth, err := inNS.LinkByName(ifName) // with the MTU of the host's end, as it was made
	if err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: slice.Mask}}
	if err := inNS.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("address %s: %w", addr, err)
	}
	if err := inNS.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring up %s: %w", ifName, err)
	}
	gw, _ := nthIP(slice, 1)
	if err := inNS.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return forwarding(sb.veth)
}

// forwarding waits until the bridge forwards the frames of its port veth. The kernel
// enables a port when it sees its carrier, after both ends are up, in the background: a
// process started before that loses its first packets (an ARP request, which is sent
// again only after a second).
func forwarding(veth string) error {
	state := "/sys/class/net/" + veth + "/brport/state"
	for deadline := time.Now().Add(5 * time.Second); ; {
		b, err := os.ReadFile(state)
		if err != nil {
			return fmt.Errorf("bridge port %s: %w", veth, err)
		}
		if strings.TrimSpace(string(b)) == brForwarding {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bridge port %s: not forwarding after 5s (state %s)", veth, strings.TrimSpace(string(b)))
		}
		time.Sleep(time.Millisecond)
	}
}

// brForwarding is a bridge port's state when it forwards (BR_STATE_FORWARDING).
const brForwarding = "3"

// nthIP is the nth address of subnet; false when it is past the last host address.
func nthIP(subnet *net.IPNet, n int) (net.IP, bool) {
	ones, bits := subnet.Mask.Size()
	if n <= 0 || n >= 1<<(bits-ones)-1 {
		return nil, false
	}
	base := binary.BigEndian.Uint32(subnet.IP.To4())
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, base+uint32(n))
	return ip, true
}

// slicesDir is where the slices of the subnet are allocated: a file per slice in use,
// named by its index, holding the id of its network.
func (m *Manager) slicesDir() string { return filepath.Join(m.cfg.StateDir, "net", "slices") }

// allocate takes the first free slice of the subnet. The network's record, naming the
// slice, is written before the slice is taken, so that a build killed in between leaves
// nothing that RemoveOrphans cannot find; a slice is only ever freed by the network
// whose id it holds.
func (n *Net) allocate() error {
	m := n.m
	dir := m.slicesDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ones, _ := m.subnet.Mask.Size()
	count := 1 << (m.sliceOnes - ones)
	for i := 0; i < count; i++ {
		if _, err := os.Stat(filepath.Join(dir, strconv.Itoa(i))); err == nil {
			continue
		}
		base := binary.BigEndian.Uint32(m.subnet.IP.To4()) + uint32(i)<<(32-m.sliceOnes)
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, base)
		n.rec = record{
			ID:        n.ID,
			Bridge:    fmt.Sprintf("%s%x", m.cfg.Bridge, i),
			Slice:     i,
			Subnet:    (&net.IPNet{IP: ip, Mask: net.CIDRMask(m.sliceOnes, 32)}).String(),
			SlicesDir: dir,
		}
		data, _ := json.Marshal(n.rec)
		if err := os.WriteFile(n.recordFile(), data, 0o600); err != nil {
			return fmt.Errorf("allocate a slice of %s: %w", m.subnet, err)
		}
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(i)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue // taken meanwhile
		}
		if err == nil {
			_, err = f.WriteString(n.ID)
			err = errors.Join(err, f.Close())
		}
		if err != nil {
			return fmt.Errorf("allocate a slice of %s: %w", m.subnet, err) // Close frees it
		}
		return nil
	}
	n.rec = record{}
	return errors.Join(fmt.Errorf("allocate a slice of %s: all %d step networks of /%d are in use; give a larger --subnet", m.subnet, count, m.sliceOnes), removeFile(n.recordFile()))
}

func (n *Net) recordFile() string { return filepath.Join(n.dir, n.ID+".net") }

// makeBridge makes the network's bridge with the gateway address, strict reverse path
// filtering (a container cannot send with an address of another step network) and
// forwarding on.
func (n *Net) makeBridge() error {
	_, slice, _ := net.ParseCIDR(n.rec.Subnet)
	gw, _ := nthIP(slice, 1)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.rec.Bridge, MTU: n.m.cfg.MTU}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("make bridge %s: %w", br.Name, err)
	}
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: gw, Mask: slice.Mask}}); err != nil {
		return fmt.Errorf("address bridge %s: %w", br.Name, err)
	}
	for k, v := range map[string]string{
		"ipv4/conf/" + br.Name + "/rp_filter":    "1",
		"ipv6/conf/" + br.Name + "/disable_ipv6": "1",
	} {
		if err := os.WriteFile("/proc/sys/net/"+k, []byte(v), 0o644); err != nil {
			return fmt.Errorf("set sysctl net.%s: %w", strings.ReplaceAll(k, "/", "."), err)
		}
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring up bridge %s: %w", br.Name, err)
	}
	l, err := netlink.LinkByName(br.Name)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", br.Name, err)
	}
	n.bridgeIndex = l.Attrs().Index
	return nil
}

// vethGroup is the interface group of the host's ends of a network's veths, named by its
// bridge's index, which no other interface of the host has while the bridge is there;
// the high bit keeps it off the small numbers (0 is every interface's default group) an
// administrator gives groups. Close deletes a group's interfaces in one request: the
// kernel then waits for one grace period, not one per interface (some 20 ms each here).
func vethGroup(bridgeIndex int) uint32 { return 1<<31 | uint32(bridgeIndex) }

// setGroup puts the interface of index into group.
func setGroup(index int, group uint32) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("put interface %d in group %#x: %w", index, group, err)
	}
	return nil
}

// delGroup deletes the interfaces of group (and the peers of veths with them) in one
// request; a group that has none is success.
func delGroup(group uint32) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete interface group %#x: %w", group, err)
	}
	return nil
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

// Close tears the network down: its sandboxes (their guard rules, the host's ends of
// their interfaces, then the namespaces), then its bridge, slice and record, unless the
// Manager keeps the network for the next Setup of its directory (see keep and Release).
// What is already gone is success, so Close may be called again, after a failure too;
// what could not be removed stays for RemoveOrphans.
func (n *Net) Close(ctx context.Context) error {
	n.mu.Lock()
	n.closed = true
	sbs := slices.Clone(n.sandboxes)
	n.mu.Unlock()
	var errs []error
	var ready []*Sandbox
	for _, sb := range sbs {
		// What set-up still runs ends first (its error is the caller's, from Wait).
		if err := sb.Wait(ctx); err != nil && ctx.Err() != nil {
			errs = append(errs, err)
			continue
		}
		ready = append(ready, sb)
	}
	if n.bridgeReady != nil {
		select {
		case <-n.bridgeReady:
		case <-ctx.Done():
			return fmt.Errorf("tear down network %s: %w", n.ID, errors.Join(append(errs, ctx.Err())...))
		}
	}
	// The guard's rules of all of them in one transaction: each commit that deletes
	// waits for the kernel's grace period (some 15 ms here).
	var veths []string
	for _, sb := range ready {
		if sb.veth != "" {
			veths = append(veths, sb.veth)
		}
	}
	if err := n.m.unguard(veths...); err != nil {
		errs = append(errs, err)
	} else {
		// One deletion for all; without it (no bridge, or it failed) detach deletes
		// each by name. A network its build retired is not kept: its bridge joins the
		// group, since each deletion waits for the kernel's grace periods (some 40 ms
		// for a bridge here).
		gone := false
		if len(veths) > 0 && n.bridgeIndex != 0 {
			if n.m.isRetired(n.dir) {
				if err := setGroup(n.bridgeIndex, vethGroup(n.bridgeIndex)); err != nil {
					errs = append(errs, err)
				}
			}
			err := delGroup(vethGroup(n.bridgeIndex))
			gone = err == nil
			errs = append(errs, err)
		}
		for _, sb := range ready {
			errs = append(errs, n.detach(ctx, sb, gone))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tear down network %s: %w", n.ID, err)
	}
	// Kept only when its bridge was made: a Setup that failed before (allocating its
	// slice, say) has a record but no bridge.
	if n.bridgeReady != nil && n.bridgeErr == nil && n.m.keep(n) {
		return nil // for the next step of the build; Release removes it
	}
	if n.rec.Bridge != "" {
		if err := removeRecorded(n.rec, n.recordFile()); err != nil {
			return fmt.Errorf("tear down network %s: %w", n.ID, err)
		}
	}
	return nil
}

// keep puts a closed network, whose sandboxes are all gone, among its directory's idle
// ones, unless there are maxIdle already or its build retired the directory.
func (m *Manager) keep(n *Net) bool {
	m.poolMu.Lock()
	defer m.poolMu.Unlock()
	if slices.Contains(m.idle[n.dir], n) {
		return true // closed again: kept once
	}
	if len(m.idle[n.dir]) >= maxIdle || m.retired[n.dir] {
		return false
	}
	if m.idle == nil {
		m.idle = map[string][]*Net{}
	}
	m.idle[n.dir] = append(m.idle[n.dir], n)
	return true
}

// take returns an idle network of dir, open again and empty, or nil. It keeps its id,
// record, bridge and slice: the record is in dir, where RemoveOrphans finds it.
func (m *Manager) take(dir string) *Net {
	m.poolMu.Lock()
	defer m.poolMu.Unlock()
	nets := m.idle[dir]
	if len(nets) == 0 {
		return nil
	}
	n := nets[len(nets)-1]
	m.idle[dir] = nets[:len(nets)-1]
	n.mu.Lock()
	n.closed, n.next, n.sandboxes = false, 2, nil
	n.mu.Unlock()
	return n
}

// Retire says that the build of dir sets up no more networks: those that close from
// now on are removed, not kept, each with its interfaces in one deletion. Release
// removes those kept before.
func (m *Manager) Retire(dir string) {
	m.poolMu.Lock()
	defer m.poolMu.Unlock()
	if m.retired == nil {
		m.retired = map[string]bool{}
	}
	m.retired[dir] = true
}

func (m *Manager) isRetired(dir string) bool {
	m.poolMu.Lock()
	defer m.poolMu.Unlock()
	return m.retired[dir]
}

// Release removes the idle networks of dir (bridge, slice, record). Call it when the
// build whose directory it is has closed its last network, before the directory goes.
func (m *Manager) Release(dir string) error {
	m.poolMu.Lock()
	nets := m.idle[dir]
	delete(m.idle, dir)
	delete(m.retired, dir)
	m.poolMu.Unlock()
	var errs []error
	for _, n := range nets {
		if err := removeRecorded(n.rec, n.recordFile()); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.ID, err))
		}
	}
	return errors.Join(errs...)
}

// detach removes a sandbox whose guard rules are gone (Close removes those of all at
// once): the host's end of its interface, unless linkGone says Close deleted it with
// its group, then its namespace.
func (n *Net) detach(ctx context.Context, sb *Sandbox, linkGone bool) error {
	if !linkGone {
		if err := delLink(sb.veth); err != nil {
			return err
		}
	}
	if err := removeNS(sb.Path); err != nil {
		return err
	}
	n.mu.Lock()
	for i, s := range n.sandboxes {
		if s == sb {
			n.sandboxes = append(n.sandboxes[:i], n.sandboxes[i+1:]...)
			break
		}
	}
	n.mu.Unlock()
	return nil
}

// delLink deletes a link by name; a link that is not there is success.
func delLink(name string) error {
	if name == "" {
		return nil
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil
		}
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// removeNS unmounts and removes a namespace file and its directory.
func removeNS(path string) error {
	if path == "" {
		return nil
	}
	// Unmount every mount stacked on the file before removing it (style rule 17).
	if err := mount.UnmountAll(path, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := removeFile(path); err != nil {
		return err
	}
	return removeFile(filepath.Dir(path))
}

// removeRecorded deletes a recorded network's bridge, then frees its slice (when the
// network holds it) and removes the record.
func removeRecorded(rec record, file string) error {
	if err := delLink(rec.Bridge); err != nil {
		return err
	}
	if rec.SlicesDir != "" {
		slice := filepath.Join(rec.SlicesDir, strconv.Itoa(rec.Slice))
		owner, err := os.ReadFile(slice)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return err
		case string(owner) == rec.ID || len(owner) == 0:
			// Empty: the network was killed between taking the slice and naming itself.
			if err := removeFile(slice); err != nil {
				return err
			}
		}
	}
	return removeFile(file)
}

// cleanupContext bounds a clean-up, and keeps it going when ctx was cancelled.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
}

func removeFile(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// RemoveOrphans removes what step networks of a dead build left below dir, the build's
// directory of namespaces, whatever the Manager's mode (the dead build may have used
// another): the hosts' ends of the interfaces, the namespaces (found by their layout,
// <id>/cni-<random>, mounted or not: a reboot unmounts them), then the bridges and
// slices of the networks' records (<id>.net). It does not descend into other mounts (a
// container's root file system). Call it before the build's directory is removed
// (builds.Remove).
func (m *Manager) RemoveOrphans(ctx context.Context, dir string) error {
	mounts, err := mountsBelow(dir)
	if err != nil {
		return fmt.Errorf("remove orphan networks below %s: %w", dir, err)
	}
	var sandboxes []string
	var records []string
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
		switch {
		case d.IsDir():
		case strings.HasSuffix(d.Name(), ".net") && validID.MatchString(strings.TrimSuffix(d.Name(), ".net")) && d.Type().IsRegular():
			records = append(records, p)
		case strings.HasPrefix(d.Name(), "cni-") && validID.MatchString(filepath.Base(filepath.Dir(p))):
			if fstype := mounts[p]; fstype == "" || fstype == "nsfs" {
				sandboxes = append(sandboxes, p)
			} // else something else is mounted there: not ours to touch
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove orphan networks below %s: %w", dir, err)
	}
	// The hosts' ends of the interfaces are named by the networks and the sandboxes:
	// their guard rules go in one transaction, then the links and namespaces.
	veths := map[string][]string{}
	var all []string
	for _, p := range sandboxes {
		id := filepath.Base(filepath.Dir(p))
		for _, rec := range records {
			v := vethName(strings.TrimSuffix(filepath.Base(rec), ".net"), id)
			veths[p] = append(veths[p], v)
			all = append(all, v)
		}
	}
	var errs []error
	if err := m.unguard(all...); err != nil {
		errs = append(errs, err)
	}
	for _, p := range sandboxes {
		log.G(ctx).Debugf("removing orphan network namespace %s", p)
		for _, v := range veths[p] {
			if err := delLink(v); err != nil {
				errs = append(errs, err)
			}
		}
		if err := removeNS(p); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range records {
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var rec record
		if err := json.Unmarshal(data, &rec); err != nil {
			errs = append(errs, removeFile(p)) // half written: nothing was made after it
			continue
		}
		log.G(ctx).Debugf("removing orphan network %s (bridge %s)", filepath.Base(p), rec.Bridge)
		errs = append(errs, removeRecorded(rec, p))
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
