package node

import (
	"fmt"
	"slices"
	"strings"

	"github.com/troika-sip/troika/cluster"
)

// Whether a drain may begin: a drain that would stop the service is
// refused before anything changes (unless forced).

// inService lists the other voters alive in gossip with health ok, and
// among them those that manage addresses.
func (n *Node) inService() (voters, up, takers []string) {
	members := map[string]cluster.Member{}
	for _, m := range n.gossip.Members() {
		members[m.ID] = m
	}
	voters = n.cluster.Voters()
	for _, v := range voters {
		m, ok := members[v]
		if v == n.cfg.NodeID || !ok || m.State != cluster.MemberAlive || m.Meta.Health != cluster.HealthOK {
			continue
		}
		up = append(up, v)
		if m.Meta.Addrs {
			takers = append(takers, v)
		}
	}
	return voters, up, takers
}

// myAddresses lists the addresses assigned to or held by this node.
func (n *Node) myAddresses() []string {
	set := map[string]bool{}
	for _, a := range n.state.Assignments() {
		if a.Node == n.cfg.NodeID {
			set[a.IP] = true
		}
	}
	if n.owner != nil {
		for _, ip := range n.owner.Held() {
			set[ip] = true
		}
	}
	out := make([]string, 0, len(set))
	for ip := range set {
		out = append(out, ip)
	}
	slices.Sort(out)
	return out
}

// drainPreflight returns why draining this node now would stop the
// service (and what to do), or "".
func (n *Node) drainPreflight() string {
	self := n.cfg.NodeID
	if id, _ := n.cluster.Leader(); id == "" {
		return "no raft leader is known: addresses cannot move and leadership cannot be handed over; " +
			"fix the cluster first (troika cluster status), or drain with --force"
	}
	voters, up, takers := n.inService()
	if n.owner != nil && len(takers) == 0 {
		if mine := n.myAddresses(); len(mine) > 0 {
			return fmt.Sprintf("no other healthy node to take %s: start another node or use --force", strings.Join(mine, ", "))
		}
	}
	if slices.Contains(voters, self) {
		need := len(voters)/2 + 1
		if len(voters) == 1 {
			return "this is the cluster's only node: draining it stops the switch; drain with --force to stop it anyway"
		}
		if len(up) < need {
			return fmt.Sprintf("without %s, %d of the %d voters would be in service (%s), fewer than the %d raft needs: "+
				"the cluster would stop taking writes and moving addresses; start the other nodes (and wait until they are healthy), "+
				"or drain with --force", self, len(up), len(voters), listOrNone(up), need)
		}
	}
	return ""
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
