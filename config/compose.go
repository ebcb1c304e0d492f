package config

import (
	"net"
	"path"
	"runtime"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Compose keys that the services page says "should function as expected" and that
// change a container's file system, kernel settings and name resolution.

// Tmpfs is one tmpfs mount of a service's containers (tmpfs: /run or /run:size=64m).
type Tmpfs struct {
	Path string
	// Options are the mount options given, checked against tmpfsOptions.
	Options []string
	Pos     Pos
}

// tmpfsOptions are the options a tmpfs may be given; the others (dev, suid, …) would
// widen the container.
var tmpfsOptions = set("size", "mode", "uid", "gid", "nr_inodes", "exec", "noexec", "ro", "rw")

// Host is one extra_hosts entry: a name and the address it has.
type Host struct {
	Name, IP string
	Pos      Pos
}

// namespacedSysctls are the sysctls a container may set, as Docker allows them: those
// of its own IPC and network namespaces.
var namespacedSysctls = set("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
	"kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")

// stringOrList reads a string or a list of strings (tmpfs, dns, dns_search).
func (f *file) stringOrList(k string, v *yaml.Node, w where) []listString {
	if v.Kind == yaml.ScalarNode {
		s, err := scalar(v)
		if err != nil {
			f.errorf(v, w, "key %q: %v", k, err)
			return nil
		}
		return []listString{{v, s}}
	}
	return f.stringList(k, v, w)
}

// tmpfs reads `tmpfs`: absolute paths, each with options after a colon.
func (f *file) tmpfs(v *yaml.Node, w where) []Tmpfs {
	var out []Tmpfs
	for _, it := range f.stringOrList("tmpfs", v, w) {
		p, opts, _ := strings.Cut(it.s, ":")
		t := Tmpfs{Path: path.Clean(p), Pos: f.pos(it.n)}
		if !path.IsAbs(p) || t.Path == "/" {
			f.errorf(it.n, w, "key \"tmpfs\": %q: want an absolute path other than /", it.s)
			continue
		}
		ok := true
		if opts != "" {
			for _, o := range strings.Split(opts, ",") {
				name, _, _ := strings.Cut(o, "=")
				if !tmpfsOptions[name] {
					f.errorf(it.n, w, "key \"tmpfs\": %q: option %q is not one of size, mode, uid, gid, nr_inodes, exec, noexec, ro, rw", it.s, o)
					ok = false
				}
				t.Options = append(t.Options, o)
			}
		}
		if ok {
			out = append(out, t)
		}
	}
	return out
}

// sysctls reads `sysctls`: a mapping or a KEY=VALUE list of namespaced sysctls.
func (f *file) sysctls(v *yaml.Node, w where) map[string]string {
	out := map[string]string{}
	for _, e := range f.environment("sysctls", v, w) {
		k := e.Key
		switch {
		case e.Value == nil:
			f.errorf(v, w, "key \"sysctls\": %q has no value", k)
		case namespacedSysctls[k] || strings.HasPrefix(k, "fs.mqueue.") || strings.HasPrefix(k, "net."):
			out[k] = *e.Value
		default:
			f.errorf(v, w, "key \"sysctls\": %q is not a sysctl of the container's own namespaces (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.*)", k)
		}
	}
	return out
}

// extraHosts reads `extra_hosts`: "NAME:IP" entries, or a mapping of names to
// addresses.
func (f *file) extraHosts(v *yaml.Node, w where) []Host {
	var out []Host
	add := func(n *yaml.Node, name, ip string) {
		if !hostnameRE.MatchString(name) || net.ParseIP(ip) == nil {
			f.errorf(n, w, "key \"extra_hosts\": %q: want NAME:ADDRESS, a host name and an IP address", name+":"+ip)
			return
		}
		out = append(out, Host{Name: name, IP: ip, Pos: f.pos(n)})
	}
	if v.Kind == yaml.MappingNode {
		for _, p := range f.pairs(v, w) {
			ip, err := scalar(resolve(p.val))
			if err != nil {
				f.errorf(p.val, w, "key \"extra_hosts\": %v", err)
				continue
			}
			add(p.key, p.key.Value, ip)
		}
		return out
	}
	for _, it := range f.stringList("extra_hosts", v, w) {
		name, ip, _ := strings.Cut(it.s, ":") // an IPv6 address keeps its colons
		add(it.n, name, ip)
	}
	return out
}

// dns reads `dns`: nameserver addresses.
func (f *file) dns(v *yaml.Node, w where) []string {
	var out []string
	for _, it := range f.stringOrList("dns", v, w) {
		if net.ParseIP(it.s) == nil {
			f.errorf(it.n, w, "key \"dns\": %q is not an IP address", it.s)
			continue
		}
		out = append(out, it.s)
	}
	return out
}

// dnsSearch reads `dns_search`: search domains.
func (f *file) dnsSearch(v *yaml.Node, w where) []string {
	var out []string
	for _, it := range f.stringOrList("dns_search", v, w) {
		if !hostnameRE.MatchString(it.s) {
			f.errorf(it.n, w, "key \"dns_search\": %q is not a domain name", it.s)
			continue
		}
		out = append(out, it.s)
	}
	return out
}

// HostPlatform is the platform crun-ci runs images of: the host's, as Docker writes it.
var HostPlatform = runtime.GOOS + "/" + runtime.GOARCH

// platform reads `platform`: only the host's, since crun-ci emulates no other.
func (f *file) platform(v *yaml.Node, w where) {
	p := strings.ToLower(f.text("platform", v, w))
	if p != HostPlatform && !strings.HasPrefix(p, HostPlatform+"/") {
		f.errorf(v, w, "key \"platform\": %q is not this host's platform (%s): crun-ci runs images natively, without emulation", p, HostPlatform)
	}
}
