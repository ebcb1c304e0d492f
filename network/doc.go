// Package network gives each step of a build a network namespace of its own, shared by
// all the step's containers, and removes what a dead build left of them.
//
// Words:
//   - A step's containers (its service and the services it depends on) share one
//     network namespace, as the containers of a Kubernetes pod do: they reach each other
//     on localhost and on the step's one address, under the names that Hosts writes.
//     The one limitation: two services of one step cannot listen on the same port.
//     Steps that run in parallel have namespaces and addresses of their own, so they
//     can.
//   - A sandbox is one step's namespace: a bind mount of it that keeps it alive while no
//     process is in it, at <dir>/<id>/cni-<random> where dir is in the build's
//     directory (say <state>/builds/<build>/netns) and id, the CNI container id,
//     contains the build id.
//   - The mode (--network) is Bridge, Host or None. Bridge attaches each sandbox to the
//     host's bridge crunci0 with a veth pair; the step gets an address of the subnet,
//     10.89.0.0/16 unless configured, and a default route through the bridge, whose
//     address is the subnet's first. The MTU is that of the host's default route
//     device unless configured. None gives the sandbox only a loopback interface;
//     Host makes no sandbox and runs the containers in the host's namespace.
//
// Bridge mode runs the CNI plugins bridge and host-local (Debian: apt-get install
// containernetworking-plugins iptables; found in /usr/lib/cni or /opt/cni/bin). The
// bridge plugin turns on the host's net.ipv4.ip_forward. Outbound traffic of the steps
// is masqueraded by one iptables rule per subnet, which Setup appends when it is
// missing and which stays, like the bridge, for later builds:
//
//	iptables -t nat -A POSTROUTING -s 10.89.0.0/16 ! -o crunci0 -m comment --comment "crun-ci 10.89.0.0/16" -j MASQUERADE
//
// The bridge plugin's own masquerading (ipMasq) is off: it makes a chain and rules per
// step and leaves them behind whenever the step's namespace is gone before CNI DEL
// (containernetworking/plugins#810), 4 iptables lines per step with the plugins of
// Debian 12.
//
// State: the address allocations (host-local) live in <state>/cni/networks/crun-ci and
// the CNI result cache in <state>/cni/cache, not in /var/lib/cni, so that the builds of
// one state directory are cleaned up apart from anything else on the host. Two state
// directories used at once on one host need different subnets and bridges.
//
// Clean-up: Teardown undoes Setup and is idempotent. A build that died leaves
// sandboxes in its directory; RemoveOrphans of that directory runs CNI DEL by id, then
// unmounts and removes them. Run it before the build's directory is removed
// (builds.Remove): the sandboxes' files are how their ids, and so their addresses, are
// found. A sandbox whose namespace was unmounted already (a reboot) is fine: its veth
// went with the namespace, and CNI DEL without it frees the address.
//
// Changing the subnet: set Config.Subnet (an IPv4 CIDR, at most /30) and, if the old
// bridge exists, remove it and the old rule while no build runs:
//
//	ip link del crunci0
//	iptables -t nat -D POSTROUTING -s OLD ! -o crunci0 -m comment --comment "crun-ci OLD" -j MASQUERADE
//
// New refuses a subnet that overlaps a route of the host on another device than the
// bridge (a LAN or a VPN in 10.89/16, say).
package network
