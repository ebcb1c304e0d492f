package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// A rule is one iptables rule of the subnet: its table and its chain and match, as
// iptables -C, -I and -D take them.
type rule struct {
	table string
	// insert puts it first in its chain (ahead of what Docker or a firewall put there)
	// instead of appending it.
	insert bool
	spec   []string
}

// rules are the iptables rules of the subnet, the same for every step network of a
// state directory, made once and kept for later builds (like the masquerade rule
// always was):
//
//   - nat POSTROUTING: what the steps send out of the host leaves with the host's
//     address (not between step networks, which FORWARD drops anyway).
//   - filter FORWARD, first: traffic inside one step network is accepted (with
//     br_netfilter loaded, bridged packets pass FORWARD too), traffic between two step
//     networks rejected; then traffic to the outside and its replies accepted, ahead
//     of a DROP policy that Docker sets.
//   - filter INPUT, with HostAccessNone: new connections from the steps to the host
//     itself (its address on a bridge, or any other) are rejected. Rejected, not
//     dropped: a step that tries fails at once ("connection refused") instead of
//     waiting for its timeout.
func (m *Manager) rules() []rule {
	sub, br := m.subnet.String(), m.cfg.Bridge+"+"
	comment := []string{"-m", "comment", "--comment", "crun-ci " + sub}
	r := func(table string, insert bool, spec ...string) rule {
		return rule{table, insert, append(spec, comment...)}
	}
	rs := []rule{
		r("nat", false, "POSTROUTING", "-s", sub, "!", "-d", sub, "-j", "MASQUERADE"),
		// Inserted in reverse: each goes first.
		r("filter", true, "FORWARD", "-d", sub, "-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
		r("filter", true, "FORWARD", "-s", sub, "-i", br, "!", "-o", br, "-j", "ACCEPT"),
		r("filter", true, "FORWARD", "-i", br, "-o", br, "-j", "REJECT"),
		r("filter", true, "FORWARD", "-i", br, "-o", br, "-m", "physdev", "--physdev-is-bridged", "-j", "ACCEPT"),
	}
	return rs
}

// inputRule is the rule of HostAccessNone.
func (m *Manager) inputRule() rule {
	return rule{"filter", true, []string{"INPUT", "-i", m.cfg.Bridge + "+", "-m", "conntrack", "--ctstate", "NEW", "-j", "REJECT",
		"-m", "comment", "--comment", "crun-ci " + m.subnet.String()}}
}

// ensureRules makes the rules that are missing (and, with HostAccessGateway, removes the
// input rule) once per Manager, and turns on IPv4 forwarding. A lock file in the state
// directory keeps two crun-ci processes from both adding a rule; `iptables -w` waits for
// other users of iptables.
func (m *Manager) ensureRules(ctx context.Context) error {
	m.rulesMu.Lock()
	defer m.rulesMu.Unlock()
	if m.rulesOK {
		return nil
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("turn on IPv4 forwarding: %w", err)
	}
	dir := filepath.Join(m.cfg.StateDir, "net")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "rules.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	rs := m.rules()
	if m.cfg.HostAccess == HostAccessNone {
		rs = append(rs, m.inputRule())
	} else if err := removeRule(ctx, m.inputRule()); err != nil {
		return err
	}
	for _, r := range rs {
		ok, err := hasRule(ctx, r)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		op := "-A"
		if r.insert {
			op = "-I"
		}
		if err := iptables(ctx, r.table, append([]string{op}, r.spec...)...); err != nil {
			return err
		}
	}
	m.rulesOK = true
	return nil
}

// RemoveRules deletes every copy of the subnet's rules. Builds never do: the rules stay
// for the next build, like the bridges' prefix and subnet.
func (m *Manager) RemoveRules(ctx context.Context) error {
	var errs []error
	for _, r := range append(m.rules(), m.inputRule()) {
		errs = append(errs, removeRule(ctx, r))
	}
	m.rulesMu.Lock()
	m.rulesOK = false
	m.rulesMu.Unlock()
	return errors.Join(errs...)
}

func removeRule(ctx context.Context, r rule) error {
	for {
		ok, err := hasRule(ctx, r)
		if err != nil || !ok {
			return err
		}
		if err := iptables(ctx, r.table, append([]string{"-D"}, r.spec...)...); err != nil {
			return err
		}
	}
}

// hasRule reports whether r is there.
func hasRule(ctx context.Context, r rule) (bool, error) {
	err := iptables(ctx, r.table, append([]string{"-C"}, r.spec...)...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, nil // "Bad rule (does a matching rule exist in that chain?)"
	}
	return false, err
}

// iptables runs iptables on table, waiting for its lock. The error keeps the exit status
// (an *exec.ExitError) and tells what iptables printed.
func iptables(ctx context.Context, table string, args ...string) error {
	args = append([]string{"-w", "-t", table}, args...)
	cmd := exec.CommandContext(ctx, "iptables", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(out.String()); msg != "" {
			return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, msg)
		}
		return fmt.Errorf("iptables %s: %w", strings.Join(args, " "), err)
	}
	return nil
}
