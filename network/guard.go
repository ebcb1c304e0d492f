package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// containerMAC is the MAC address of a container's eth0: locally administered, with its
// address in the last four bytes, so that it is unique where the address is.
func containerMAC(ip net.IP) net.HardwareAddr {
	ip4 := ip.To4()
	return net.HardwareAddr{0x02, 0xc1, ip4[0], ip4[1], ip4[2], ip4[3]}
}

// The guard: an nftables table of the bridge family per state directory,
// crun_ci_<prefix>, whose chain "guard" (at prerouting, so before any bridging) checks
// every frame that a container sends into its bridge, as CNI's macspoofchk and a
// source check together would. Per container (its host veth), rules drop a frame whose
// source MAC is not the container's; an IPv4 packet whose source address is not the
// container's; an ARP packet whose sender MAC or address is not the container's; and
// anything else but IPv4 and ARP. So within a step network a container cannot pose as
// another, by address, MAC or ARP. The rules carry the veth's name as their user data,
// by which they are removed.

// guardTable is the state directory's table.
func (m *Manager) guardTable() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyBridge, Name: "crun_ci_" + m.cfg.Bridge}
}

func guardChain(t *nftables.Table) *nftables.Chain {
	return &nftables.Chain{Name: "guard", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityFilter}
}

// ensureGuard makes the table and chain unless they are there.
func (m *Manager) ensureGuard() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	t := c.AddTable(m.guardTable())
	c.AddChain(guardChain(t))
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", t.Name, err)
	}
	return nil
}

// guard adds the rules of the container with mac and ip behind veth.
func (m *Manager) guard(veth string, mac net.HardwareAddr, ip net.IP) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	t := m.guardTable()
	ch := guardChain(t)
	name := make([]byte, unix.IFNAMSIZ)
	copy(name, veth)
	port := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
	}
	ipProto := binary.BigEndian.AppendUint16(nil, unix.ETH_P_IP)
	arpProto := binary.BigEndian.AppendUint16(nil, unix.ETH_P_ARP)
	proto := func(p []byte) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p}}
	}
	not := func(base expr.PayloadBase, off, n uint32, want []byte) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: want},
		}
	}
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	rule := func(parts ...[]expr.Any) {
		exprs := append([]expr.Any{}, port...)
		for _, p := range parts {
			exprs = append(exprs, p...)
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(exprs, drop), UserData: []byte(veth)})
	}
	ip4 := ip.To4()
	rule(not(expr.PayloadBaseLLHeader, 6, 6, mac))
	rule(proto(ipProto), not(expr.PayloadBaseNetworkHeader, 12, 4, ip4))
	rule(proto(arpProto), not(expr.PayloadBaseNetworkHeader, 8, 6, mac))
	rule(proto(arpProto), not(expr.PayloadBaseNetworkHeader, 14, 4, ip4))
	rule([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ipProto},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: arpProto},
	})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables rules of %s: %w", veth, err)
	}
	return nil
}

// unguard removes the rules of the veths named; a table that is not there has none. A
// listing of the chain can miss rules while other containers' rules change (a dump that
// the kernel interrupts), so it lists again until none of the veths' is left.
func (m *Manager) unguard(veths ...string) error {
	if len(veths) == 0 {
		return nil
	}
	gone := map[string]bool{}
	for _, v := range veths {
		gone[v] = true
	}
	for try := 0; try < 20; try++ {
		c, err := nftables.New()
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		t := m.guardTable()
		rules, err := c.GetRules(t, guardChain(t))
		if err != nil {
			c.CloseLasting()
			return nil // no table, no chain: no rules
		}
		n := 0
		for _, r := range rules {
			if gone[string(r.UserData)] {
				if err := c.DelRule(r); err != nil {
					c.CloseLasting()
					return err
				}
				n++
			}
		}
		if n == 0 {
			c.CloseLasting()
			return nil
		}
		err = c.Flush()
		c.CloseLasting()
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove nftables rules: %w", err)
		}
	}
	return fmt.Errorf("remove nftables rules of %v: still there after 20 tries", veths)
}

// GuardRules counts the rules of the guard, for tests and leak checks.
func (m *Manager) GuardRules() (int, error) {
	c, err := nftables.New()
	if err != nil {
		return 0, err
	}
	defer c.CloseLasting()
	t := m.guardTable()
	rules, err := c.GetRules(t, guardChain(t))
	if err != nil {
		return 0, nil
	}
	return len(rules), nil
}

// removeGuard deletes the table.
func (m *Manager) removeGuard() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if _, err := c.ListTableOfFamily(m.guardTable().Name, nftables.TableFamilyBridge); err != nil {
		return nil // not there
	}
	c.DelTable(m.guardTable())
	return c.Flush()
}
