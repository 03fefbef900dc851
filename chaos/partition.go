//go:build linux

package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Partition is a set of iptables rules that cut some nodes off from the
// others. The client namespace still reaches every node.
type Partition struct {
	c     *Cluster
	side  string // the cut-off nodes, "n1" or "n1,n2"
	label string
	mu    sync.Mutex
	rules []iptRule // the rules added, in order
}

type iptRule struct {
	ns   string
	spec []string // after -I/-D: chain and match, e.g. INPUT -s A -j DROP
}

// Partition cuts the given nodes off from every other node: in each given
// node's namespace, iptables DROP rules for packets from (INPUT) and to
// (OUTPUT) each other node's address. Both directions of every flow, TCP
// and UDP (raft, write forwarding, gossip), established connections
// included. ARP is not filtered, and the rules match node addresses only:
// traffic that a node sends from another source address (a virtual IP it
// holds) to a peer is not cut. Heal deletes exactly these rules.
func (c *Cluster) Partition(side ...*Node) (*Partition, error) {
	return c.partition(side, true, " | ")
}

// PartitionInbound cuts one direction only: the given nodes hear nothing
// from the other nodes (iptables INPUT DROP rules in their namespaces),
// while what they send still arrives. An asymmetric split: a leader cut
// off this way still reaches its followers but never hears their
// answers. Heal deletes the rules.
func (c *Cluster) PartitionInbound(side ...*Node) (*Partition, error) {
	return c.partition(side, false, " <- (dropped) ")
}

func (c *Cluster) partition(side []*Node, both bool, sep string) (*Partition, error) {
	if len(side) == 0 {
		return nil, errors.New("Partition: no node given")
	}
	others := c.Others(side...)
	p := &Partition{c: c, side: names(side), label: names(side) + sep + names(others)}
	for _, n := range side {
		for _, o := range others {
			a := o.Addr.String()
			specs := [][]string{{"INPUT", "-s", a, "-j", "DROP"}}
			if both {
				specs = append(specs, []string{"OUTPUT", "-d", a, "-j", "DROP"})
			}
			for _, spec := range specs {
				if _, err := run(context.Background(), "ip", append([]string{"netns", "exec", n.NS, "iptables", "-w", "-I"}, spec...)...); err != nil {
					return p, errors.Join(err, p.Heal())
				}
				p.rules = append(p.rules, iptRule{ns: n.NS, spec: spec})
			}
		}
	}
	c.event(names(side), "partition", fmt.Sprintf("%s (%d iptables rules)", p.label, len(p.rules)))
	return p, nil
}

// Heal deletes the partition's rules (each exactly once: a rule added
// twice by two partitions stays until both heal). Healing twice is a no-op.
func (p *Partition) Heal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.rules) == 0 {
		return nil
	}
	var errs []error
	for i := len(p.rules) - 1; i >= 0; i-- {
		r := p.rules[i]
		if _, err := run(context.Background(), "ip", append([]string{"netns", "exec", r.ns, "iptables", "-w", "-D"}, r.spec...)...); err != nil {
			errs = append(errs, err)
		}
	}
	p.rules = nil
	p.c.event(p.side, "heal", p.label)
	return errors.Join(errs...)
}
