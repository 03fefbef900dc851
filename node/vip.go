package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/troika-sip/troika/cluster"
	"github.com/troika-sip/troika/fsm"
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

func (c *Config) applyVIPDefaults() {
	v := c.VIP
	if v == nil {
		return
	}
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

func (c *Config) validateVIP() error {
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
