package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/troika-sip/troika/cluster"
	"github.com/troika-sip/troika/fsm"
)

// Raft timing defaults, tuned for failover on a LAN: a follower starts an
// election 0.3-0.9 s after it last heard from the leader (raft waits a
// random 1-2 heartbeat timeouts, re-armed while contact is recent), so an
// election ends well within vip.lease and address holders keep their
// addresses through it; a leader that cannot reach a quorum steps down
// within about 150 ms.
const (
	DefaultHeartbeatTimeout   = 300 * time.Millisecond
	DefaultElectionTimeout    = 300 * time.Millisecond
	DefaultLeaderLeaseTimeout = 150 * time.Millisecond
)

// VIPConfig is the [vip] section: the node adds and removes the cluster's
// virtual IPs and IP aliases on Interface as the replicated ownership map
// says (cluster/ownership.go). Without it the node listens on
// sip.addresses (and, with sip.serve_aliases, on the aliases) directly,
// which needs no privileges: development and tests.
type VIPConfig struct {
	// Interface is where the addresses are added, e.g. "eth0" or "bond0".
	Interface string `toml:"interface"`
	// Addresses are the main virtual IPs with their prefix length, e.g.
	// ["10.0.0.100/24"]. The same on every node. May be empty: only the
	// aliases are then managed.
	Addresses []string `toml:"addresses"`
	// Lease: how long a node keeps its addresses without hearing from
	// the leader. Default 1s.
	Lease time.Duration `toml:"lease"`
	// Margin is added to the handover wait (lease + leader_lease_timeout
	// + margin) a new holder observes. Default 250ms.
	Margin time.Duration `toml:"margin"`
	// Placement: "spread" (default) or "single".
	Placement string `toml:"placement"`
	// Prefer maps an address to the node it goes to when it is placed,
	// e.g. {"10.0.0.100" = "sip1"}. There is no failback: an address stays
	// with a healthy holder.
	Prefer map[string]string `toml:"prefer"`
	// GARPCount gratuitous ARPs (unsolicited NAs for IPv6), GARPInterval
	// apart, announce an address this node takes. Default 3, 500ms.
	GARPCount    int           `toml:"garp_count"`
	GARPInterval time.Duration `toml:"garp_interval"`
	// Settle is how long a new leader waits for every voter to be up
	// before it places addresses nobody holds. Default 5s.
	Settle time.Duration `toml:"settle"`
}

// Defaults of the [vip] section.
const (
	DefaultVIPLease  = time.Second
	DefaultVIPMargin = 250 * time.Millisecond
)

func (c *Config) applyClusterDefaults() {
	cc := &c.Cluster
	if cc.HeartbeatTimeout == 0 {
		cc.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if cc.ElectionTimeout == 0 {
		cc.ElectionTimeout = DefaultElectionTimeout
	}
	if cc.LeaderLeaseTimeout == 0 {
		cc.LeaderLeaseTimeout = min(DefaultLeaderLeaseTimeout, cc.HeartbeatTimeout)
	}
	if v := c.VIP; v != nil {
		if v.Lease == 0 {
			v.Lease = DefaultVIPLease
		}
		if v.Margin == 0 {
			v.Margin = DefaultVIPMargin
		}
		if v.Placement == "" {
			v.Placement = cluster.PlacementSpread
		}
		if v.GARPCount == 0 {
			v.GARPCount = 3
		}
		if v.GARPInterval == 0 {
			v.GARPInterval = 500 * time.Millisecond
		}
		if v.Settle == 0 {
			v.Settle = 5 * time.Second
		}
	}
}

// LeaseTiming is the self-fencing timing of the [vip] section.
func (c *Config) LeaseTiming() cluster.LeaseTiming {
	t := cluster.LeaseTiming{LeaderLeaseTimeout: c.Cluster.LeaderLeaseTimeout}
	if c.VIP != nil {
		t.Lease, t.Margin = c.VIP.Lease, c.VIP.Margin
	}
	return t
}

// VIPPrefixes parses vip.addresses.
func (c *Config) VIPPrefixes() ([]netip.Prefix, error) {
	if c.VIP == nil {
		return nil, nil
	}
	var out []netip.Prefix
	for _, s := range c.VIP.Addresses {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				return nil, fmt.Errorf("vip.addresses: %q is not an address with a prefix length such as 10.0.0.100/24", s)
			}
		}
		a := p.Addr()
		if a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			return nil, fmt.Errorf("vip.addresses: %s is not a unicast address", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), p.Bits()))
	}
	return out, nil
}

func (c *Config) validateClusterAndVIP() error {
	cc := c.Cluster
	switch {
	case cc.HeartbeatTimeout < 50*time.Millisecond || cc.ElectionTimeout < 50*time.Millisecond:
		return errors.New("cluster.heartbeat_timeout and election_timeout: at least 50ms")
	case cc.ElectionTimeout < cc.HeartbeatTimeout:
		return errors.New("cluster.election_timeout: cannot be shorter than heartbeat_timeout")
	case cc.LeaderLeaseTimeout < 10*time.Millisecond || cc.LeaderLeaseTimeout > cc.HeartbeatTimeout:
		return errors.New("cluster.leader_lease_timeout: between 10ms and heartbeat_timeout")
	}
	if _, err := c.GossipAddrs(); err != nil {
		return err
	}
	v := c.VIP
	if v == nil {
		return nil
	}
	if v.Interface == "" {
		return errors.New("vip.interface: required (the interface the virtual IPs are added to, e.g. eth0)")
	}
	vips, err := c.VIPPrefixes()
	if err != nil {
		return err
	}
	seen := map[netip.Addr]bool{}
	for _, p := range vips {
		if seen[p.Addr()] {
			return fmt.Errorf("vip.addresses: %s is listed twice", p.Addr())
		}
		seen[p.Addr()] = true
		for _, a := range c.SIP.Addresses {
			if sa, err := netip.ParseAddr(a); err == nil && sa.Unmap() == p.Addr() {
				return fmt.Errorf("vip.addresses: %s is also in sip.addresses: a virtual IP is served only by the node that holds it; "+
					"list the node's own address in sip.addresses", p.Addr())
			}
		}
	}
	if c.SIP.ServeAliases {
		return errors.New("sip.serve_aliases: the [vip] section manages the aliases' addresses and sockets: remove serve_aliases")
	}
	switch v.Placement {
	case cluster.PlacementSpread, cluster.PlacementSingle:
	default:
		return fmt.Errorf("vip.placement: %q must be %q or %q", v.Placement, cluster.PlacementSpread, cluster.PlacementSingle)
	}
	peers, _ := c.ClusterPeers()
	for ip, node := range v.Prefer {
		if a, err := netip.ParseAddr(ip); err != nil || a.String() != ip {
			return fmt.Errorf("vip.prefer: key %q: must be an IP address in canonical form", ip)
		}
		if !fsm.ValidID(node) {
			return fmt.Errorf("vip.prefer[%q]: %q is not a node id", ip, node)
		}
		if len(peers) > 0 && !slices.ContainsFunc(peers, func(p Peer) bool { return p.ID == node }) {
			return fmt.Errorf("vip.prefer[%q]: %q is not in cluster.peers", ip, node)
		}
	}
	switch {
	case v.GARPCount < 1 || v.GARPCount > 10:
		return errors.New("vip.garp_count: 1-10")
	case v.GARPInterval < 10*time.Millisecond || v.GARPInterval > 10*time.Second:
		return errors.New("vip.garp_interval: between 10ms and 10s")
	case v.Settle < 0 || v.Settle > 5*time.Minute:
		return errors.New("vip.settle: between 0 and 5m")
	}
	if err := c.LeaseTiming().Validate(); err != nil {
		return fmt.Errorf("vip.lease: %w", err)
	}
	return nil
}

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

// newOwner prepares the address owner (started once the SIP server runs).
func (n *Node) newOwner() error {
	v := n.cfg.VIP
	vips, err := n.cfg.VIPPrefixes()
	if err != nil {
		return err
	}
	n.owner, err = cluster.NewOwner(cluster.OwnerConfig{
		VIPs:         vips,
		Timing:       n.cfg.LeaseTiming(),
		Placement:    v.Placement,
		Prefer:       v.Prefer,
		GARPCount:    v.GARPCount,
		GARPInterval: v.GARPInterval,
		Settle:       v.Settle,
		Addrs:        n.addrOps,
		Sockets:      n.sip,
		Logger:       n.log.With("component", "cluster"),
	}, n.cluster, n.state, n.gossip)
	if err != nil {
		return err
	}
	close(n.ownerReady)
	return nil
}

// placeAddresses runs the owner's placement loop while this node leads.
func (n *Node) placeAddresses(ctx context.Context) {
	if n.ownerReady == nil {
		return
	}
	select {
	case <-n.ownerReady:
		n.owner.Lead(ctx)
	case <-ctx.Done():
	}
}

// meta is this node's gossip metadata.
func (n *Node) meta(health string) cluster.NodeMeta {
	m := cluster.NodeMeta{Version: Version, Roles: []string{"dispatcher", "processor", roleAdoptCall}, Health: health, Addrs: n.cfg.VIP != nil}
	if n.dispatch != nil {
		m.Roles = append(m.Roles, roleDispatch)
	}
	if n.sip != nil {
		m.Load = n.sip.ActiveCalls()
	}
	return m
}

// metaLoop keeps the gossiped load current.
func (n *Node) metaLoop(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := n.publishMeta(); err != nil {
				n.log.Debug("gossip: updating this node's metadata failed", "error", err)
			}
		}
	}
}
