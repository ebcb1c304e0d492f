// Package network gives each step of a build a network of its own, and each container
// of the step a network namespace and an address on it, as docker-compose gives a
// project; and it removes what a dead build left of them.
//
// Words:
//   - A step network (Net) is one bridge of the host, named by the state directory's
//     prefix and the index of its slice (cr1a2b30), with a slice of the subnet: a /24
//     of a /22 or larger subnet, else a quarter of it. The slice's first address is the
//     bridge's, the containers' gateway. Setup makes it; Close removes it.
//   - A sandbox is one network namespace: a bind mount of it that keeps it alive while
//     no process is in it, at <dir>/<id>/cni-<random>, where dir is in the build's
//     directory (say <state>/builds/<build>/netns) and id, the container's id, contains
//     the build id. Attach makes one per container in Bridge mode: a veth pair, eth0
//     inside with the next address of the slice and a default route through the bridge,
//     the host's end (crv and a hash of the ids) on the bridge.
//   - The mode (--network) is Bridge, Host or None. None makes one namespace per step,
//     with only a loopback interface, that all its containers share; Host makes nothing
//     and runs the containers in the host's namespace.
//
// Everything is made in-process with netlink; no CNI plugin runs. The rules of the
// subnet (masquerading, isolation between step networks, and the host's protection with
// HostAccessNone) are one set per state directory, made by the first Setup of a process
// when missing and kept for later builds; see Manager.rules. Every bridge has strict
// reverse-path filtering, so that a container cannot send with an address of another
// step network, and no IPv6; and the guard (guard.go, nftables through netlink) checks
// the source MAC, address and ARP sender of every frame a container sends.
//
// State: the subnet and prefix are stored in <state>/network.json on first use (a
// state directory that is given neither takes the first free /16 of 10.89 to 10.99 and
// a prefix hashed from its path, so that two state directories never collide); slices
// are allocated as files in <state>/net/slices, each holding the id of its network.
//
// Reuse: Close keeps a bridge network, its sandboxes gone, for the next Setup of the
// same directory (a build's), up to maxIdle; Release removes what a directory keeps.
//
// Clean-up: Close undoes Attach and is idempotent; with Release it undoes Setup. Each network leaves a
// record, <dir>/<id>.net, written before its slice is taken; RemoveOrphans of a dead
// build's directory removes the hosts' ends of the veths, the namespaces (mounted or
// not: a reboot unmounts them), then the bridges and slices of the records. Run it
// before the build's directory is removed (builds.Remove).
//
// New refuses a subnet that overlaps a route of the host on another device than the
// prefix's bridges (a LAN, a VPN, another installation), naming the route.
package network
