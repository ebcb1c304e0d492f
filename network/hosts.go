package network

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
)

// Hosts returns the /etc/hosts content that gives names the address ip: the localhost
// lines, then the lines of HostsEntries. With ip "" (None mode, where the step's
// containers share the loopback interface) the names point at 127.0.0.1.
func Hosts(ip string, names []string) []byte {
	b := []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	return append(b, HostsEntries(ip, names, map[string]bool{"localhost": true})...)
}

// HostsEntries returns a hosts file's lines that give names the address ip (127.0.0.1
// when ""), one a name. Names in seen, repeated names and names that cannot stand in a
// hosts file (empty, or holding a space or '#') are left out; the others are added to
// seen.
func HostsEntries(ip string, names []string, seen map[string]bool) []byte {
	if ip == "" {
		ip = "127.0.0.1"
	}
	var b bytes.Buffer
	for _, n := range names {
		if n == "" || seen[n] || strings.ContainsAny(n, " \t\r\n#") {
			continue
		}
		seen[n] = true
		fmt.Fprintf(&b, "%s\t%s\n", ip, n)
	}
	return b.Bytes()
}

// Host files that ResolvConf reads.
var (
	hostResolvConf = "/etc/resolv.conf"
	// resolvedConf lists the upstream servers of systemd-resolved, whose stub listens on
	// 127.0.0.53 of the host only.
	resolvedConf = "/run/systemd/resolve/resolv.conf"
)

// ResolvConf returns the /etc/resolv.conf content of a step, made from the host's. In
// Host mode it is the host's file. Otherwise the host's loopback is out of the step's
// reach, so nameservers on a loopback address are left out, and on a host whose only
// nameserver is systemd-resolved's stub the upstream servers of systemd-resolved are used
// instead.
func ResolvConf(mode Mode) ([]byte, error) {
	etc, err := os.ReadFile(hostResolvConf)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read host resolv.conf: %w", err)
	}
	if mode == Host {
		return etc, nil
	}
	resolved, err := os.ReadFile(resolvedConf)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read host resolv.conf: %w", err)
	}
	return resolvConf(etc, resolved), nil
}

// resolvConf drops the loopback nameservers of etc, and takes resolved instead when etc
// has only those and resolved has others.
func resolvConf(etc, resolved []byte) []byte {
	out, kept, dropped := dropLoopback(etc)
	if kept == 0 && dropped > 0 && len(resolved) > 0 {
		if r, kept, _ := dropLoopback(resolved); kept > 0 {
			return r
		}
	}
	return out
}

// dropLoopback removes the nameserver lines with a loopback address and counts the kept
// and dropped ones.
func dropLoopback(conf []byte) (out []byte, kept, dropped int) {
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(conf))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" {
			// A zone in a link-local address (fe80::1%eth0) does not parse; keep it.
			if ip := net.ParseIP(f[1]); ip != nil && ip.IsLoopback() {
				dropped++
				continue
			}
			kept++
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.Bytes(), kept, dropped
}
