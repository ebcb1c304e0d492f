package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// A rule is one iptables rule of the state directory's step networks: its table and its
// chain and match, as iptables -C, -I and -D take them.
type rule struct {
	table string
	// insert puts it first in its chain (ahead of what Docker or a firewall put there)
	// instead of appending it.
	insert bool
	spec   []string
}

// rules are the iptables rules of the step networks, the same for all of a state
// directory, made once and kept for later builds. They match the bridges by their
// prefix (-i PREFIX+) and carry the comment "crun-ci PREFIX SUBNET":
//
//   - nat POSTROUTING: what the steps send out of the host leaves with the host's
//     address (not between step networks, which FORWARD rejects anyway).
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
	r := func(table string, insert bool, spec ...string) rule {
		return rule{table, insert, append(spec, "-m", "comment", "--comment", m.comment())}
	}
	rs := []rule{
		r("nat", false, "POSTROUTING", "-s", sub, "!", "-d", sub, "-j", "MASQUERADE"),
		// Inserted in reverse: each goes first.
		r("filter", true, "FORWARD", "-d", sub, "-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
		r("filter", true, "FORWARD", "-s", sub, "-i", br, "!", "-o", br, "-j", "ACCEPT"),
		r("filter", true, "FORWARD", "-i", br, "-o", br, "-j", "REJECT"),
		r("filter", true, "FORWARD", "-i", br, "-o", br, "-m", "physdev", "--physdev-is-bridged", "-j", "ACCEPT"),
	}
	if m.cfg.HostAccess == HostAccessNone {
		rs = append(rs, r("filter", true, "INPUT", "-i", br, "-m", "conntrack", "--ctstate", "NEW", "-j", "REJECT"))
	}
	return rs
}

// comment marks the rules of the state directory: "crun-ci PREFIX SUBNET".
func (m *Manager) comment() string {
	return "crun-ci " + m.cfg.Bridge + " " + m.subnet.String()
}

// ensureRules makes the rules that are missing, once per Manager, and turns on IPv4
// forwarding. Rules of the bridge prefix that are not wanted (of another subnet, or the
// input rule with HostAccessGateway) are removed first. A lock file in the state
// directory keeps two crun-ci processes from both adding a rule; `iptables -w` waits for
// other users of iptables.
//
// It reads the tables with one iptables-save. When the rules of its comment are, line
// for line, those it found after it last checked them one by one (the state
// directory's record of them), they are in place; otherwise each rule is checked with
// iptables -C (and made when missing), and the record written again. Every crun-ci
// command that runs a build does this: one execution instead of eight.
func (m *Manager) ensureRules(ctx context.Context) error {
	m.rulesMu.Lock()
	defer m.rulesMu.Unlock()
	if m.rulesOK {
		return nil
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("turn on IPv4 forwarding: %w", err)
	}
	unlock, err := m.lockRules()
	if err != nil {
		return err
	}
	defer unlock()
	if err := m.ensureGuard(); err != nil {
		return err
	}
	want := m.rules()
	tables, err := saveTables(ctx)
	if err != nil {
		return err
	}
	removed, err := m.removeRules(ctx, want, tables)
	if err != nil {
		return err
	}
	record := m.rulesRecord()
	if removed == 0 {
		if seen, err := os.ReadFile(record); err == nil && string(seen) == recordOf(want, m.ourLines(tables)) {
			m.rulesOK = true
			return nil
		}
	}
	for _, r := range want {
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
	// What the checked rules look like, for the next crun-ci.
	if tables, err = saveTables(ctx); err != nil {
		return err
	}
	if err := os.WriteFile(record, []byte(recordOf(want, m.ourLines(tables))), 0o600); err != nil {
		return fmt.Errorf("record the network rules: %w", err)
	}
	m.rulesOK = true
	return nil
}

// rulesRecord is the state directory's record of its checked rules (ensureRules).
func (m *Manager) rulesRecord() string {
	return filepath.Join(m.cfg.StateDir, "net", "rules.checked")
}

// recordOf is the record of the rules want, checked, as lines shows them: the wanted
// rules first, so that a record of another set (another --host-access) never stands
// for this one.
func recordOf(want []rule, lines string) string {
	var b strings.Builder
	for _, r := range want {
		fmt.Fprintf(&b, "want %s %t %q\n", r.table, r.insert, r.spec)
	}
	return b.String() + lines
}

// ourLines are the lines of the tables with the Manager's comment, as iptables-save
// prints them, each after its table's name; "" when there are none.
func (m *Manager) ourLines(tables map[string][]string) string {
	mark := `--comment "` + m.comment() + `"`
	var b strings.Builder
	for _, table := range []string{"filter", "nat"} {
		for _, line := range tables[table] {
			if strings.Contains(line, mark) {
				b.WriteString(table + " " + line + "\n")
			}
		}
	}
	return b.String()
}

// saveTables reads the filter and nat tables with one iptables-save: their rules'
// lines (as iptables -S prints them) by table.
func saveTables(ctx context.Context) (map[string][]string, error) {
	cmd := exec.CommandContext(ctx, "iptables-save")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("iptables-save: %w: %s", err, strings.TrimSpace(errOut.String()))
	}
	tables := map[string][]string{"filter": nil, "nat": nil}
	table := ""
	for _, line := range strings.Split(out.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, "-A "):
			if _, ok := tables[table]; ok {
				tables[table] = append(tables[table], line)
			}
		}
	}
	return tables, nil
}

// lockRules takes the lock of the state directory's rules.
func (m *Manager) lockRules() (unlock func(), err error) {
	dir := filepath.Join(m.cfg.StateDir, "net")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "rules.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	return func() { lock.Close() }, nil
}

// InUse counts the step networks of the state directory that are allocated.
func (m *Manager) InUse() int {
	entries, _ := os.ReadDir(m.slicesDir())
	return len(entries)
}

// RemoveRules deletes every rule of the state directory's bridge prefix, of whatever
// subnet, and the guard's table (see guard.go). Builds never do: the rules stay for the next build; `crun-ci cleanup
// --network` does, once no build runs (InUse is 0).
func (m *Manager) RemoveRules(ctx context.Context) error {
	m.rulesMu.Lock()
	defer m.rulesMu.Unlock()
	m.rulesOK = false
	if m.cfg.StateDir != "" {
		unlock, err := m.lockRules()
		if err != nil {
			return err
		}
		defer unlock()
	}
	tables, err := saveTables(ctx)
	if err == nil {
		_, err = m.removeRules(ctx, nil, tables)
	}
	if m.cfg.StateDir != "" {
		if rerr := os.Remove(m.rulesRecord()); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	return errors.Join(err, m.removeGuard())
}

// removeRules deletes the rules of the bridge prefix whose comment and chain are not
// those of a rule in keep, from the filter and nat tables as read (saveTables), and says
// how many it deleted.
func (m *Manager) removeRules(ctx context.Context, keep []rule, tables map[string][]string) (int, error) {
	mark := "crun-ci " + m.cfg.Bridge + " "
	wanted := map[string]bool{}
	for _, r := range keep {
		wanted[r.table+" "+r.spec[0]] = true
	}
	removed := 0
	for _, table := range []string{"filter", "nat"} {
		for _, line := range tables[table] {
			args := splitRule(line)
			i := slices.Index(args, "--comment")
			if len(args) < 2 || args[0] != "-A" || i < 0 || i+1 >= len(args) || !strings.HasPrefix(args[i+1], mark) {
				continue
			}
			if args[i+1] == m.comment() && wanted[table+" "+args[1]] {
				continue // ensureRules checks the rule itself
			}
			if err := iptables(ctx, table, append([]string{"-D"}, args[1:]...)...); err != nil {
				return removed, err
			}
			removed++
		}
	}
	return removed, nil
}

// splitRule splits a line of iptables -S into its words; iptables quotes a word that
// holds spaces with double quotes.
func splitRule(line string) []string {
	var out []string
	var word strings.Builder
	quoted, inWord := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				out = append(out, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, word.String())
	}
	return out
}

// removeRule deletes every copy of r.
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
	_, err := iptablesOutput(ctx, table, args...)
	return err
}

// iptablesOutput is iptables with its output.
func iptablesOutput(ctx context.Context, table string, args ...string) (string, error) {
	args = append([]string{"-w", "-t", table}, args...)
	cmd := exec.CommandContext(ctx, "iptables", args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(errOut.String() + out.String()); msg != "" {
			return "", fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, msg)
		}
		return "", fmt.Errorf("iptables %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), nil
}
