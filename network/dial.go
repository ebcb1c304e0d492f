package network

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
)

// DialFunc dials as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Dialer returns a dial function whose sockets are made in the network namespace at
// nsPath, so that what crun-ci fetches for a build (ADD <url>) comes from where the
// build's RUN would fetch it: the step network, never the host's loopback or whatever
// only crun-ci's own namespace reaches. Host names are looked up from inside the
// namespace too, with the nameservers of resolvConf (the namespace's /etc/resolv.conf).
func Dialer(nsPath string, resolvConf []byte) DialFunc {
	servers := nameservers(resolvConf)
	inNS := func(ctx context.Context, network, address string) (net.Conn, error) {
		var conn net.Conn
		err := ns.WithNetNSPath(nsPath, func(ns.NetNS) error {
			// One address: the dialer makes its socket on this goroutine, whose thread
			// is in the namespace now.
			var err error
			conn, err = (&net.Dialer{}).DialContext(ctx, network, address)
			return err
		})
		return conn, err
	}
	resolver := &net.Resolver{
		PreferGo: true,
		// The resolver would ask the host's nameservers from the host's namespace;
		// ask the namespace's from inside it instead.
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			if len(servers) == 0 {
				return nil, errors.New("no nameserver in the build network's resolv.conf")
			}
			var errs []error
			for _, s := range servers {
				conn, err := inNS(ctx, network, net.JoinHostPort(s, "53"))
				if err == nil {
					return conn, nil
				}
				errs = append(errs, err)
			}
			return nil, errors.Join(errs...)
		},
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, err
		}
		ips := []string{host}
		if net.ParseIP(host) == nil {
			if ips, err = resolver.LookupHost(ctx, host); err != nil {
				return nil, err
			}
		}
		var errs []error
		for _, ip := range ips {
			conn, err := inNS(ctx, network, net.JoinHostPort(ip, port))
			if err == nil {
				return conn, nil
			}
			errs = append(errs, err)
		}
		return nil, fmt.Errorf("dial %s from the build network: %w", address, errors.Join(errs...))
	}
}

// nameservers lists the nameserver addresses of a resolv.conf.
func nameservers(conf []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(conf))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "nameserver" {
			out = append(out, f[1])
		}
	}
	return out
}
