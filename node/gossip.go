package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/troika-sip/troika/cluster"
)

// Gossip (memberlist): this node's addresses in it, the metadata it
// announces (version, roles, health, load) and what it reads from the
// others' (who is alive and runs calls, which command versions every voter
// applies).

// GossipAddrs are the gossip (memberlist) addresses of this node and of
// the members it joins.
type GossipAddrs struct {
	Bind, Advertise string
	Join            []string
}

// GossipAddrs derives the gossip addresses: by default the cluster port
// plus one, on the same hosts.
func (c *Config) GossipAddrs() (GossipAddrs, error) {
	cc := c.Cluster
	var g GossipAddrs
	plusOne := func(key, hostport string) (string, error) {
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			return "", fmt.Errorf("%s %q: %w", key, hostport, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65534 {
			return "", fmt.Errorf("%s %q: bad port", key, hostport)
		}
		if p == 0 {
			return net.JoinHostPort(host, "0"), nil
		}
		return net.JoinHostPort(host, strconv.Itoa(p+1)), nil
	}
	var err error
	if g.Bind = cc.GossipBind; g.Bind == "" {
		if g.Bind, err = plusOne("cluster.bind", cc.Bind); err != nil {
			return g, err
		}
		if host, _, _ := net.SplitHostPort(g.Bind); host == "" {
			g.Bind = "0.0.0.0" + g.Bind
		}
	}
	host, port, err := net.SplitHostPort(g.Bind)
	if err != nil {
		return g, fmt.Errorf("cluster.gossip_bind %q: %w", g.Bind, err)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return g, fmt.Errorf("cluster.gossip_bind %q: needs an IP address (set cluster.gossip_bind)", g.Bind)
	}
	if g.Advertise = cc.GossipAdvertise; g.Advertise == "" {
		advHost := host
		if a := cc.Advertise; a != "" {
			if h, _, err := net.SplitHostPort(a); err == nil {
				advHost = h
			}
		}
		g.Advertise = net.JoinHostPort(advHost, port)
	}
	if ap, err := netip.ParseAddrPort(g.Advertise); err != nil {
		return g, fmt.Errorf("cluster.gossip_advertise %q: needs an IP address and port", g.Advertise)
	} else if ap.Addr().IsUnspecified() {
		return g, fmt.Errorf("cluster.gossip_advertise %q: the others cannot reach a wildcard address: set cluster.advertise or cluster.gossip_advertise", g.Advertise)
	}
	if len(cc.GossipJoin) > 0 {
		g.Join = cc.GossipJoin
		for _, j := range g.Join {
			if _, _, err := net.SplitHostPort(j); err != nil {
				return g, fmt.Errorf("cluster.gossip_join %q: %w", j, err)
			}
		}
		return g, nil
	}
	peers, err := c.ClusterPeers()
	if err != nil {
		return g, err
	}
	for _, p := range peers {
		if p.ID == c.NodeID {
			continue
		}
		j, err := plusOne("cluster.peers", p.Addr)
		if err != nil {
			return g, err
		}
		g.Join = append(g.Join, j)
	}
	for _, a := range cc.Join {
		j, err := plusOne("cluster.join", a)
		if err != nil {
			return g, err
		}
		g.Join = append(g.Join, j)
	}
	return g, nil
}

// meta is this node's gossip metadata.
func (n *Node) meta(health string) cluster.NodeMeta {
	b := Build()
	m := cluster.NodeMeta{Version: b.Version, Roles: []string{"dispatcher", "processor", roleAdoptCall, roleCredentials, roleQuota}, Health: health, Addrs: n.cfg.VIP != nil}
	if b.Commit != "" {
		m.Commit = b.ShortCommit()
	}
	if n.cluster != nil {
		idx := n.cluster.Indexes()
		m.CommitIndex, m.AppliedIndex = idx.Commit, idx.Applied
	}
	if n.dispatch != nil {
		m.Roles = append(m.Roles, roleDispatch)
	}
	if n.sip != nil {
		m.Load = n.sip.ActiveCalls()
	}
	if n.owner != nil {
		m.SetHeld(n.owner.Held()) // last: cut short to fit
	}
	return m
}

// Metadata is published every metaEvery (load, raft indexes), and at
// once when the addresses this node holds change (checked every
// metaHeldCheck).
const (
	metaEvery     = 2 * time.Second
	metaHeldCheck = 100 * time.Millisecond
)

// metaLoop keeps the gossiped load, indexes and held addresses current.
func (n *Node) metaLoop(ctx context.Context) {
	t := time.NewTicker(metaHeldCheck)
	defer t.Stop()
	last := time.Now()
	held := n.heldKey()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now, h := time.Now(), n.heldKey()
		if h == held && now.Sub(last) < metaEvery && !n.updateInStep() {
			continue
		}
		last, held = now, h
		if err := n.publishMeta(); err != nil {
			n.log.Debug("gossip: updating this node's metadata failed", "error", err)
		}
	}
}

// heldKey names the set of addresses this node holds now.
func (n *Node) heldKey() string {
	if n.owner == nil {
		return ""
	}
	return strings.Join(n.owner.Held(), " ")
}

// publishMeta gossips this node's current metadata.
func (n *Node) publishMeta() error {
	n.drain.metaMu.Lock()
	defer n.drain.metaMu.Unlock()
	health := n.drain.health()
	if health == cluster.HealthOK && (!n.cluster.Member() || n.outOfStep.Load()) {
		// Not in the raft configuration (waiting to be added, or
		// removed), or cut off from the leader and not caught up since
		// (instep.go): no state to serve with, so no SIP dispatched to it.
		health = cluster.HealthStarting
	}
	return n.gossip.SetMeta(n.meta(health))
}

// nodeAlive reports whether another node is up and runs its calls: alive
// in gossip, and neither starting (a restarted node runs none yet: it
// claims its own through the log) nor leaving (sipstack.Config.NodeAlive).
func (n *Node) nodeAlive(id string) bool {
	if n.gossip == nil {
		return false
	}
	for _, m := range n.gossip.Members() {
		if m.ID == id {
			return m.State == cluster.MemberAlive && m.Meta.Health != cluster.HealthLeaving && m.Meta.Health != cluster.HealthStarting
		}
	}
	return false
}

// roleAdoptCall in a node's gossip roles: its fsm applies AdoptCall.
const roleAdoptCall = "adoptcall1"

// roleCredentials in a node's gossip roles: its fsm stores digest
// credentials, not passwords (the account, vendor and connection commands
// of version 2, InitRealm, SecureCredentials).
const roleCredentials = "credentials2"

// credentialsThroughLog reports whether every voter applies the commands
// that carry credentials.
func (n *Node) credentialsThroughLog() bool {
	if n.gossip == nil {
		return false
	}
	return everyVoterHas(roleCredentials, n.cluster.Voters(), n.gossip.Members(), n.cfg.NodeID)
}

// unboundNonces reports whether a voter may run a build that issues
// nonces bound to nothing: builds before digest credentials do, and
// every voter announcing roleCredentials says none does. The answer is
// worked out again at most every unboundRecheck: the registrar asks on
// every challenge, and a voter's roles change only when it restarts.
func (n *Node) unboundNonces() bool {
	now := time.Now()
	if c := n.unbound.Load(); c != nil && now.Sub(c.at) < unboundRecheck {
		return c.v
	}
	v := !n.credentialsThroughLog()
	n.unbound.Store(&cachedAnswer{at: now, v: v})
	return v
}

// unboundRecheck is how long unboundNonces's answer is kept.
const unboundRecheck = 500 * time.Millisecond

// cachedAnswer is a yes or no worked out at a time.
type cachedAnswer struct {
	at time.Time
	v  bool
}

// olderVoter reports whether a voter announced, in its last gossip
// metadata, roles without credentials: it runs a build that stores
// passwords (a rolling upgrade is under way). A voter not heard of yet
// says nothing either way.
func (n *Node) olderVoter() bool {
	if n.gossip == nil {
		return false
	}
	for _, m := range n.gossip.Members() {
		if m.ID != n.cfg.NodeID && slices.Contains(n.cluster.Voters(), m.ID) && len(m.Meta.Roles) > 0 &&
			!slices.Contains(m.Meta.Roles, roleCredentials) {
			return true
		}
	}
	return false
}

// adoptThroughLog reports whether every voter's fsm applies AdoptCall, as
// the voters last said in gossip (sipstack.Config.AdoptThroughLog): an
// older voter would stop at a command it does not know.
func (n *Node) adoptThroughLog() bool {
	if n.gossip == nil {
		return false
	}
	return everyVoterHas(roleAdoptCall, n.cluster.Voters(), n.gossip.Members(), n.cfg.NodeID)
}

// roleQuota in a node's gossip roles: its fsm applies the commands of
// quota reservations (StartCall with a chunk, ExtendCall).
const roleQuota = "quota1"

// quotaThroughLog reports whether every voter's fsm applies the quota
// commands, as the voters last said in gossip
// (sipstack.Config.QuotaThroughLog): until then calls reserve their
// whole length at setup, in the StartCall every version applies.
func (n *Node) quotaThroughLog() bool {
	if n.gossip == nil {
		return false
	}
	return everyVoterHas(roleQuota, n.cluster.Voters(), n.gossip.Members(), n.cfg.NodeID)
}

// everyVoterHas reports whether each voter announced role in its last
// gossip metadata (self: always; a voter never heard of: no).
func everyVoterHas(role string, voters []string, members []cluster.Member, self string) bool {
	roles := map[string][]string{self: {role}}
	for _, m := range members {
		if m.ID != self {
			roles[m.ID] = m.Meta.Roles
		}
	}
	for _, v := range voters {
		if !slices.Contains(roles[v], role) {
			return false
		}
	}
	return true
}
