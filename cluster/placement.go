package cluster

import (
	"fmt"
	"slices"

	"github.com/troika-sip/troika/fsm"
)

// NodeHealth is the leader's view of one voter, for placing addresses.
type NodeHealth int

const (
	// HealthUnknown: not known to have failed, but not eligible for new
	// addresses either (not seen in gossip yet, still starting, or not
	// managing addresses). Its current addresses stay where they are.
	HealthUnknown NodeHealth = iota
	// Healthy: alive in gossip, started, managing addresses, and (for
	// the leader) answering raft heartbeats.
	Healthy
	// Failed: dead or gone in gossip, or not answering raft heartbeats:
	// its addresses move.
	Failed
	// Draining: alive and going away (a planned stop, node/drain.go): its
	// addresses move to a healthy node, and stay with it while there is
	// none; it gets no new ones.
	Draining
)

func (h NodeHealth) String() string {
	switch h {
	case Healthy:
		return "healthy"
	case Failed:
		return "failed"
	case Draining:
		return "draining"
	}
	return "unknown"
}

// Placement policies.
const (
	// PlacementSpread puts each address on the healthy node holding the
	// fewest (the leader counting one extra), so the main virtual IP and
	// the aliases spread over the cluster.
	PlacementSpread = "spread"
	// PlacementSingle keeps every address on one node, as VRRP would.
	PlacementSingle = "single"
)

// PlacementInput is everything the leader's placement decision depends on.
type PlacementInput struct {
	// Addresses are the managed addresses in placement order: the main
	// virtual IPs first, then the aliases.
	Addresses []string
	// Current is the replicated ownership map.
	Current map[string]fsm.Assignment
	// Nodes is the health of every voter; a holder missing here (no
	// longer a voter) counts as failed.
	Nodes map[string]NodeHealth
	// Leader is the node deciding (it gets one address's worth of extra
	// load under spread: it already carries raft).
	Leader string
	// Prefer names the node an address goes to when it is placed and that
	// node is healthy.
	Prefer map[string]string
	// Policy is PlacementSpread (default) or PlacementSingle.
	Policy string
	// Settled: every voter is healthy, or the leader has waited long
	// enough for them. Until then addresses that nobody holds are left
	// unplaced, so that a leader that starts first does not take them all;
	// addresses of failed holders move regardless.
	Settled bool
}

// PlacementChange is one change the leader proposes, with why.
type PlacementChange struct {
	fsm.AddressChange
	From string // the previous holder ("" none)
	Why  string
}

func (c PlacementChange) String() string {
	switch {
	case c.Remove:
		return fmt.Sprintf("%s: remove (%s)", c.IP, c.Why)
	case c.Node == "":
		return fmt.Sprintf("%s: %s -> nobody (%s)", c.IP, orNone(c.From), c.Why)
	}
	return fmt.Sprintf("%s: %s -> %s (%s)", c.IP, orNone(c.From), c.Node, c.Why)
}

func orNone(s string) string {
	if s == "" {
		return "nobody"
	}
	return s
}

// Place computes the changes to the ownership map. It is pure and sticky:
// an address whose holder has not failed never moves (no failback to a
// preferred node: moving a healthy holder's address costs an outage).
// Addresses no longer managed are removed; addresses of failed holders go
// to a healthy node, or to nobody when there is none; addresses of a
// draining holder go to a healthy node, and stay where they are when there
// is none.
func Place(in PlacementInput) []PlacementChange {
	health := func(node string) NodeHealth {
		h, ok := in.Nodes[node]
		if !ok {
			return Failed
		}
		return h
	}
	var healthy []string
	for node, h := range in.Nodes {
		if h == Healthy {
			healthy = append(healthy, node)
		}
	}
	slices.Sort(healthy)
	managed := map[string]bool{}
	load := map[string]int{}
	keep := map[string]bool{}
	for _, ip := range in.Addresses {
		managed[ip] = true
		cur, ok := in.Current[ip]
		if !ok || cur.Node == "" {
			continue
		}
		if h := health(cur.Node); h == Healthy || h == HealthUnknown || (h == Draining && len(healthy) == 0) {
			keep[ip] = true
			load[cur.Node]++
		}
	}
	var out []PlacementChange

	var gone []string
	for ip := range in.Current {
		if !managed[ip] {
			gone = append(gone, ip)
		}
	}
	slices.SortFunc(gone, fsm.CompareAddr)
	for _, ip := range gone {
		cur := in.Current[ip]
		out = append(out, PlacementChange{
			AddressChange: fsm.AddressChange{IP: ip, Remove: true, PrevEpoch: cur.Epoch},
			From:          cur.Node, Why: "no longer managed",
		})
	}

	choose := func(ip string) string {
		if len(healthy) == 0 {
			return ""
		}
		if p := in.Prefer[ip]; p != "" && slices.Contains(healthy, p) {
			return p
		}
		if in.Policy == PlacementSingle {
			best, most := "", 0
			for _, n := range healthy {
				if load[n] > most {
					best, most = n, load[n]
				}
			}
			if best != "" {
				return best
			}
		}
		best, bestCost := "", 0
		for _, n := range healthy {
			cost := load[n]
			if n == in.Leader {
				cost++
			}
			better := best == "" || cost < bestCost ||
				(cost == bestCost && best == in.Leader && n != in.Leader)
			if better {
				best, bestCost = n, cost
			}
		}
		return best
	}

	seen := map[string]bool{}
	for _, ip := range in.Addresses {
		if keep[ip] || seen[ip] {
			continue
		}
		seen[ip] = true
		cur, ok := in.Current[ip]
		hadHolder := ok && cur.Node != ""
		if !hadHolder && !in.Settled {
			continue
		}
		why := "unassigned"
		if hadHolder {
			why = cur.Node + " failed"
			if health(cur.Node) == Draining {
				why = cur.Node + " draining"
			}
		}
		target := choose(ip)
		if target == "" {
			if ok && cur.Node == "" {
				continue
			}
			out = append(out, PlacementChange{
				AddressChange: fsm.AddressChange{IP: ip, PrevEpoch: cur.Epoch},
				From:          cur.Node, Why: why + "; no healthy node",
			})
			continue
		}
		load[target]++
		if in.Prefer[ip] == target {
			why += "; preferred node"
		}
		out = append(out, PlacementChange{
			AddressChange: fsm.AddressChange{IP: ip, Node: target, PrevEpoch: cur.Epoch},
			From:          cur.Node, Why: why,
		})
	}
	return out
}
