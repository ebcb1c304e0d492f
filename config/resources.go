package config

import (
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"

	units "github.com/docker/go-units"
	"go.yaml.in/yaml/v3"
)

// This file reads the resource and privilege keys of a service: sizes, counts, ulimits,
// capabilities, devices and security options, with Docker's and Compose's meaning.

// ulimitNames are the resources `ulimits` may name, as Docker names them.
var ulimitNames = []string{
	"as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
	"nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
}

// capabilities are the Linux capabilities, without "CAP_", that `cap_add` and `cap_drop`
// may name (besides "ALL").
var capabilities = set(
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
	"SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN",
	"NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
	"SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
	"SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
	"MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
	"PERFMON", "BPF", "CHECKPOINT_RESTORE",
)

// CPU limits Docker accepts: cpus from a hundredth of a CPU, cpu_shares in the kernel's range.
const (
	minCPUs      = 0.01
	minCPUShares = 2
	maxCPUShares = 262144
)

// isScalar reports whether v is a scalar other than null.
func isScalar(v *yaml.Node) bool {
	return v.Kind == yaml.ScalarNode && v.ShortTag() != "!!null"
}

// size reads a size in bytes (mem_limit, memswap_limit, shm_size): a whole number, or a
// string with one of Docker's units as `docker run --memory` reads it (512m, 1.5g). It
// must be positive; -1 too when unlimited is true. It returns nil after an error, and the
// text as written.
func (f *file) size(k string, v *yaml.Node, w where, unlimited bool) (*Bytes, string) {
	const want = "want a number of bytes, optionally with a unit (b, k, m, g)"
	if !isScalar(v) {
		f.errorf(v, w, "key %q: %s, got %s", k, want, kind(v))
		return nil, ""
	}
	text := v.Value
	if unlimited && text == "-1" {
		return &Bytes{N: -1, Pos: f.pos(v)}, text
	}
	positive := "want a positive size"
	if unlimited {
		positive += ", or -1 for unlimited swap"
	}
	if strings.HasPrefix(strings.TrimSpace(text), "-") {
		f.errorf(v, w, "key %q: %q: %s", k, text, positive)
		return nil, ""
	}
	n, err := units.RAMInBytes(text)
	switch {
	case err != nil:
		f.errorf(v, w, "key %q: %q: %s", k, text, want)
	case n == math.MaxInt64 || n == math.MinInt64: // the float of the size did not fit
		f.errorf(v, w, "key %q: %q: too large", k, text)
	case n <= 0:
		f.errorf(v, w, "key %q: %q: %s", k, text, positive)
	default:
		return &Bytes{N: n, Pos: f.pos(v)}, text
	}
	return nil, ""
}

// checkSwap checks memswap_limit against mem_limit, as Docker does: swap needs a memory
// limit, and memory plus swap is at least the memory.
func (f *file) checkSwap(memKey, swapKey *yaml.Node, s *Service, memText, swapText string, w where) {
	switch {
	case swapKey == nil:
	case memKey == nil:
		f.errorf(swapKey, w, "key \"memswap_limit\" needs \"mem_limit\" (memswap_limit is memory plus swap)")
	case s.MemLimit != nil && s.MemswapLimit != nil && s.MemswapLimit.N != -1 && s.MemswapLimit.N < s.MemLimit.N:
		f.add(s.MemswapLimit.Pos, w, fmt.Errorf("key \"memswap_limit\": %q is less than \"mem_limit\" (%q): memswap_limit is memory plus swap", swapText, memText))
	}
}

// wholeNumber reads the whole number of key k; ok is false after an error.
func (f *file) wholeNumber(k string, v *yaml.Node, w where) (n int64, ok bool) {
	if !isScalar(v) {
		f.errorf(v, w, "key %q: want a whole number, got %s", k, kind(v))
		return 0, false
	}
	n, err := strconv.ParseInt(v.Value, 10, 64)
	if err != nil {
		f.errorf(v, w, "key %q: %q: want a whole number", k, v.Value)
		return 0, false
	}
	return n, true
}

// pidsLimit reads `pids_limit`: positive, or -1 or 0 for no limit (kept as -1).
func (f *file) pidsLimit(v *yaml.Node, w where) *Int {
	n, ok := f.wholeNumber("pids_limit", v, w)
	switch {
	case !ok:
		return nil
	case n == 0 || n == -1:
		n = -1
	case n < 0:
		f.errorf(v, w, "key \"pids_limit\": %q: want a positive number, or -1 or 0 for no limit", v.Value)
		return nil
	}
	return &Int{N: n, Pos: f.pos(v)}
}

// cpuShares reads `cpu_shares`, the relative weight of the service's CPU time.
func (f *file) cpuShares(v *yaml.Node, w where) *Int {
	n, ok := f.wholeNumber("cpu_shares", v, w)
	if !ok {
		return nil
	}
	if n < minCPUShares || n > maxCPUShares {
		f.errorf(v, w, "key \"cpu_shares\": %q: want a whole number from %d to %d", v.Value, minCPUShares, maxCPUShares)
		return nil
	}
	return &Int{N: n, Pos: f.pos(v)}
}

// cpus reads `cpus`: how many CPUs' worth of time the service may use, a number or a
// numeric string.
func (f *file) cpus(v *yaml.Node, w where) *Float {
	const want = "want a number of CPUs, such as 0.5 or 2"
	if !isScalar(v) {
		f.errorf(v, w, "key \"cpus\": %s, got %s", want, kind(v))
		return nil
	}
	x, err := strconv.ParseFloat(v.Value, 64)
	switch {
	case err != nil || math.IsInf(x, 0) || math.IsNaN(x):
		f.errorf(v, w, "key \"cpus\": %q: %s", v.Value, want)
	case x < minCPUs:
		f.errorf(v, w, "key \"cpus\": %q: want at least %g", v.Value, minCPUs)
	default:
		return &Float{F: x, Pos: f.pos(v)}
	}
	return nil
}

// privileged reads `privileged`.
func (f *file) privileged(v *yaml.Node, w where) *Bool {
	return &Bool{V: f.bool("privileged", v, w), Pos: f.pos(v)}
}

// ulimits reads `ulimits`: a mapping from a resource name to a number (soft and hard
// limit alike) or to a mapping of `soft` and `hard`.
func (f *file) ulimits(v *yaml.Node, w where) []Ulimit {
	if v.Kind != yaml.MappingNode {
		f.errorf(v, w, "key \"ulimits\": want a mapping, got %s", kind(v))
		return nil
	}
	var out []Ulimit
	for _, p := range f.pairs(v, w) {
		name := p.key.Value
		if !slices.Contains(ulimitNames, name) {
			f.errorf(p.key, w, "key \"ulimits\": unknown limit %q (want %s)", name, strings.Join(ulimitNames, ", "))
			continue
		}
		key := "ulimits." + name
		u := Ulimit{Name: name, Pos: f.pos(p.key)}
		val := resolve(p.val)
		ok := true
		switch {
		case val.Kind == yaml.MappingNode:
			var soft, hard *yaml.Node
			for _, q := range f.pairs(val, w) {
				switch q.key.Value {
				case "soft":
					soft = resolve(q.val)
				case "hard":
					hard = resolve(q.val)
				default:
					f.errorf(q.key, w, "unknown key %q", key+"."+q.key.Value)
					ok = false
				}
			}
			if soft == nil || hard == nil {
				f.errorf(val, w, "key %q: want both \"soft\" and \"hard\"", key)
				ok = false
				break
			}
			var softOK, hardOK bool
			u.Soft, softOK = f.limit(key+".soft", soft, w)
			u.Hard, hardOK = f.limit(key+".hard", hard, w)
			ok = ok && softOK && hardOK
		case isScalar(val):
			u.Soft, ok = f.limit(key, val, w)
			u.Hard = u.Soft
		default:
			f.errorf(val, w, "key %q: want a whole number or a mapping of \"soft\" and \"hard\", got %s", key, kind(val))
			ok = false
		}
		if ok && u.Hard != -1 && (u.Soft == -1 || u.Soft > u.Hard) {
			f.errorf(val, w, "key %q: soft limit %s is above hard limit %d", key, limitText(u.Soft), u.Hard)
		}
		out = append(out, u)
	}
	return out
}

// limit reads one limit of `ulimits`: a whole number, -1 for unlimited.
func (f *file) limit(k string, v *yaml.Node, w where) (int64, bool) {
	if !isScalar(v) {
		f.errorf(v, w, "key %q: want a whole number, got %s", k, kind(v))
		return 0, false
	}
	n, err := strconv.ParseInt(v.Value, 10, 64)
	if err != nil || n < -1 {
		f.errorf(v, w, "key %q: %q: want a whole number, -1 for unlimited", k, v.Value)
		return 0, false
	}
	return n, true
}

// limitText formats a limit of `ulimits` for messages.
func limitText(n int64) string {
	if n == -1 {
		return "-1 (unlimited)"
	}
	return strconv.FormatInt(n, 10)
}

// capabilities reads `cap_add` or `cap_drop`: a list of capability names, with or without
// "CAP_", in any case, or "ALL". Names are kept upper case without "CAP_".
func (f *file) capabilities(k string, v *yaml.Node, w where) []Value {
	var out []Value
	for _, it := range f.stringList(k, v, w) {
		name := strings.ToUpper(it.s)
		known := name == "ALL"
		if !known {
			name = strings.TrimPrefix(name, "CAP_")
			known = capabilities[name]
		}
		i := slices.IndexFunc(out, func(c Value) bool { return c.Text == name })
		switch {
		case it.s == "":
			f.errorf(it.n, w, "key %q: empty entry", k)
		case !known:
			f.errorf(it.n, w, "key %q: %q: unknown capability (want a Linux capability such as NET_ADMIN, or ALL)", k, it.s)
		case i >= 0:
			f.errorf(it.n, w, "key %q: %q is listed twice (first at line %d)", k, it.s, out[i].Pos.Line)
		default:
			out = append(out, Value{Text: name, Pos: f.pos(it.n)})
		}
	}
	return out
}

// devices reads `devices`: a list of "HOST[:CONTAINER[:PERMISSIONS]]".
func (f *file) devices(v *yaml.Node, w where) []Device {
	var out []Device
	for _, it := range f.stringList("devices", v, w) {
		if it.s == "" {
			f.errorf(it.n, w, "key \"devices\": empty entry")
			continue
		}
		d, err := parseDevice(it.s)
		if err != nil {
			f.errorf(it.n, w, "key \"devices\": %q: %v", it.s, err)
			continue
		}
		d.Pos = f.pos(it.n)
		out = append(out, d)
	}
	return out
}

// parseDevice parses one entry of `devices` as Docker does: a second part that is a set
// of permissions is the permissions ("/dev/fuse:rw"), else the container path. Paths are
// cleaned.
func parseDevice(s string) (Device, error) {
	parts := strings.Split(s, ":")
	d := Device{Host: parts[0], Permissions: "rwm"}
	switch len(parts) {
	case 1:
	case 2:
		if devicePermissions(parts[1]) {
			d.Permissions = parts[1]
		} else {
			d.Container = parts[1]
			if d.Container == "" {
				return Device{}, errors.New("empty container path")
			}
		}
	case 3:
		d.Container, d.Permissions = parts[1], parts[2]
		if d.Container == "" {
			return Device{}, errors.New("empty container path")
		}
	default:
		return Device{}, errors.New("want \"HOST[:CONTAINER[:PERMISSIONS]]\"")
	}
	if err := devicePath("host", d.Host); err != nil {
		return Device{}, err
	}
	if d.Container == "" {
		d.Container = d.Host
	} else if err := devicePath("container", d.Container); err != nil {
		return Device{}, err
	}
	if !devicePermissions(d.Permissions) {
		return Device{}, fmt.Errorf("permissions %q: want r, w and m, each at most once", d.Permissions)
	}
	d.Host, d.Container = path.Clean(d.Host), path.Clean(d.Container)
	return d, nil
}

// devicePath checks the host or container path of a device: absolute, without "..".
func devicePath(which, p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty %s path", which)
	case !path.IsAbs(p):
		return fmt.Errorf("%s path %q is not absolute", which, p)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Errorf("%s path %q contains \"..\"", which, p)
	case path.Clean(p) == "/":
		return fmt.Errorf("%s path %q is the root directory", which, p)
	}
	return nil
}

// devicePermissions reports whether s is a non-empty combination of r, w and m, each
// at most once, like Docker's device cgroup permissions.
func devicePermissions(s string) bool {
	if s == "" || len(s) > 3 {
		return false
	}
	for i, c := range s {
		if !strings.ContainsRune("rwm", c) || strings.ContainsRune(s[:i], c) {
			return false
		}
	}
	return true
}

// securityOpts reads `security_opt`. A key other than label is given once.
func (f *file) securityOpts(v *yaml.Node, w where) []SecurityOpt {
	var out []SecurityOpt
	for _, it := range f.stringList("security_opt", v, w) {
		if it.s == "" {
			f.errorf(it.n, w, "key \"security_opt\": empty entry")
			continue
		}
		o, err := parseSecurityOpt(it.s)
		if err != nil {
			f.errorf(it.n, w, "key \"security_opt\": %q: %v", it.s, err)
			continue
		}
		o.Pos = f.pos(it.n)
		if i := slices.IndexFunc(out, func(p SecurityOpt) bool { return p.Key == o.Key }); i >= 0 && o.Key != "label" {
			f.errorf(it.n, w, "key \"security_opt\": %q: %q is set twice (first at line %d)", it.s, o.Key, out[i].Pos.Line)
			continue
		}
		out = append(out, o)
	}
	return out
}

// parseSecurityOpt parses one entry of `security_opt` as Docker does: "key=value", or
// the older "key:value" when there is no "=", or "no-new-privileges" alone.
func parseSecurityOpt(s string) (SecurityOpt, error) {
	if s == "no-new-privileges" {
		return SecurityOpt{Key: s, Value: "true"}, nil
	}
	key, value, ok := strings.Cut(s, "=")
	if !ok {
		key, value, ok = strings.Cut(s, ":")
	}
	if !ok {
		return SecurityOpt{}, errors.New("want \"key=value\" or \"no-new-privileges\"")
	}
	switch key {
	case "seccomp", "apparmor", "label":
		if value == "" {
			return SecurityOpt{}, errors.New("empty value")
		}
	case "no-new-privileges":
		if value != "true" && value != "false" {
			return SecurityOpt{}, errors.New("want \"no-new-privileges\", \"no-new-privileges=true\" or \"no-new-privileges=false\"")
		}
	case "systempaths":
		if value != "unconfined" {
			return SecurityOpt{}, errors.New("want \"systempaths=unconfined\"")
		}
	default:
		return SecurityOpt{}, fmt.Errorf("unknown option %q (want seccomp, apparmor, label, no-new-privileges or systempaths)", key)
	}
	return SecurityOpt{Key: key, Value: value}, nil
}

// controlChar returns the first control character of s (C0 with newline and tab, DEL,
// C1), or false when there is none: such characters in a name or pattern could rewrite
// the terminal of whoever reads the log.
func controlChar(s string) (rune, bool) {
	for _, r := range s {
		if unicode.IsControl(r) {
			return r, true
		}
	}
	return 0, false
}
