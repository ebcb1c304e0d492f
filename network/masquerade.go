package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// masqueradeRule is the one rule of the subnet in the nat table's POSTROUTING chain: what
// the steps send out of the host through any other device than the bridge leaves with
// the host's address. Traffic between steps stays on the bridge and keeps its addresses.
func (m *Manager) masqueradeRule() []string {
	return []string{"POSTROUTING", "-s", m.subnet.String(), "!", "-o", m.cfg.Bridge,
		"-m", "comment", "--comment", "crun-ci " + m.subnet.String(), "-j", "MASQUERADE"}
}

// ensureMasquerade appends the masquerade rule unless it is there. A lock file in the
// state directory keeps two crun-ci processes from both appending it; `iptables -w`
// waits for other users of iptables.
func (m *Manager) ensureMasquerade(ctx context.Context) error {
	if err := os.MkdirAll(m.cniDir(), 0o700); err != nil {
		return fmt.Errorf("masquerade %s: %w", m.subnet, err)
	}
	lock, err := os.OpenFile(m.cniDir("masquerade.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("masquerade %s: %w", m.subnet, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("masquerade %s: lock %s: %w", m.subnet, lock.Name(), err)
	}
	ok, err := m.hasMasquerade(ctx)
	if err != nil || ok {
		return err
	}
	if err := iptables(ctx, append([]string{"-A"}, m.masqueradeRule()...)...); err != nil {
		return fmt.Errorf("masquerade %s: %w", m.subnet, err)
	}
	return nil
}

// hasMasquerade reports whether the masquerade rule is there.
func (m *Manager) hasMasquerade(ctx context.Context) (bool, error) {
	err := iptables(ctx, append([]string{"-C"}, m.masqueradeRule()...)...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, nil // "Bad rule (does a matching rule exist in that chain?)"
	}
	return false, fmt.Errorf("masquerade %s: %w", m.subnet, err)
}

// removeMasquerade deletes the masquerade rule, every copy of it. Builds never do: the
// rule stays for the next build, like the bridge.
func (m *Manager) removeMasquerade(ctx context.Context) error {
	for {
		ok, err := m.hasMasquerade(ctx)
		if err != nil || !ok {
			return err
		}
		if err := iptables(ctx, append([]string{"-D"}, m.masqueradeRule()...)...); err != nil {
			return fmt.Errorf("remove masquerade of %s: %w", m.subnet, err)
		}
	}
}

// iptables runs iptables on the nat table, waiting for its lock. The error keeps the exit
// status (an *exec.ExitError) and tells what iptables printed.
func iptables(ctx context.Context, args ...string) error {
	args = append([]string{"-w", "-t", "nat"}, args...)
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
