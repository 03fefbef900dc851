package node

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/troika-sip/troika/cluster"
	"github.com/troika-sip/troika/sipstack"
)

// The dispatcher's cluster side (sipstack/dispatch.go does the SIP side):
// the link that carries dispatch frames between nodes (cluster.Link), the
// list of processing nodes (from gossip), and who holds each socket (the
// ownership map for virtual IPs and aliases; a node's own sockets, on
// sip.addresses, as its link hello says).

// roleDispatch in a node's gossip roles: it runs the dispatch link and
// processes frames. Only such nodes get datagrams, so nodes of an older
// version are left out during a rolling upgrade.
const roleDispatch = "dispatch1"

// DispatchEnabled reports whether this node dispatches: sip.dispatch, or
// by default whether the cluster has more than one node.
func (c *Config) DispatchEnabled() bool {
	if c.SIP.Dispatch != nil {
		return *c.SIP.Dispatch
	}
	peers, _ := c.ClusterPeers()
	return len(peers) > 1 || len(c.Cluster.Join) > 0 || c.Cluster.AwaitAdd
}

// dispatch implements sipstack.Peers.
type dispatch struct {
	n    *Node
	link atomic.Pointer[cluster.Link]
	own  map[string]bool // this node's own sockets (sip.addresses × ports), by name

	mu      sync.RWMutex
	fixed   map[string]string   // socket name -> node: the peers' own sockets, from their link hellos
	sockets map[string][]string // node -> its own sockets
}

func newDispatch(n *Node) *dispatch {
	d := &dispatch{n: n, own: map[string]bool{}, fixed: map[string]string{}, sockets: map[string][]string{}}
	for _, a := range n.cfg.SIP.Addresses {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		for transport, ports := range map[string][]int{"udp": n.cfg.SIP.UDPPorts, "tcp": n.cfg.SIP.TCPPorts, "tls": n.cfg.SIP.TLSPorts} {
			for _, p := range ports {
				d.own[transport+":"+netip.AddrPortFrom(ip.Unmap(), uint16(p)).String()] = true
			}
		}
	}
	return d
}

// Send implements sipstack.Peers.
func (d *dispatch) Send(node string, frame []byte) bool {
	l := d.link.Load()
	return l != nil && l.Send(node, frame)
}

// Dispatches implements sipstack.Peers: node is alive in gossip and runs
// the dispatch link (a link being down for a moment is not enough to
// skip it: the link reconnects, and SIP retransmits).
func (d *dispatch) Dispatches(node string) bool {
	for _, m := range d.n.gossip.Members() {
		if m.ID == node {
			return m.State == cluster.MemberAlive && slices.Contains(m.Meta.Roles, roleDispatch)
		}
	}
	return false
}

// Holder implements sipstack.Peers: the ownership map's holder of a
// virtual IP or alias, else the node whose own socket it is.
func (d *dispatch) Holder(socket string) (string, bool) {
	if d.own[socket] {
		return d.n.cfg.NodeID, true
	}
	_, hp, _ := strings.Cut(socket, ":")
	if ap, err := netip.ParseAddrPort(hp); err == nil {
		if a, ok := d.n.state.Assignment(ap.Addr().String()); ok && a.Node != "" {
			return a.Node, true
		}
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	node, ok := d.fixed[socket]
	return node, ok
}

// hello is this node's link hello: its own socket names.
func (d *dispatch) hello() []byte {
	var names []string
	for name := range d.own {
		names = append(names, name)
	}
	slices.Sort(names)
	var b []byte
	for _, name := range names {
		if len(b)+1+len(name) > 4000 { // the link's hello limit is 4 KiB
			d.n.log.Warn("dispatch: too many SIP sockets to list in the link hello; the others learn the rest from dispatched frames")
			break
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = append(b, name...)
	}
	return b
}

func (d *dispatch) onHello(from string, hello []byte) {
	var names []string
	for _, s := range strings.Split(string(hello), ",") {
		if t, _, _ := strings.Cut(s, ":"); (t == "udp" || t == "tcp" || t == "tls") && len(s) <= 64 {
			names = append(names, s)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, name := range d.sockets[from] {
		if d.fixed[name] == from {
			delete(d.fixed, name)
		}
	}
	d.sockets[from] = names
	for _, name := range names {
		d.fixed[name] = from
	}
}

// startDispatchLink starts the link (once the cluster and the SIP server
// exist) and registers its metrics in reg (a fresh registry: registering
// cannot clash).
func (n *Node) startDispatchLink(reg prometheus.Registerer) error {
	d := n.dispatch
	l, err := n.cluster.StartLink(cluster.LinkConfig{
		OnMessage: n.sip.HandleFrame,
		Hello:     d.hello(),
		OnHello:   d.onHello,
		QueueLen:  n.cfg.SIP.DispatchQueue,
		Logger:    n.log.With("component", "cluster"),
	})
	if err != nil {
		return err
	}
	d.link.Store(l)
	stat := func(f func(cluster.LinkStats) float64) func() float64 {
		return func() float64 { return f(l.Stats()) }
	}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "troika", Subsystem: "cluster", Name: name, Help: help}
	}
	auto := promauto.With(reg)
	auto.NewCounterFunc(prometheus.CounterOpts(opts("link_sent_total", "Dispatch frames written to other nodes' links.")),
		stat(func(s cluster.LinkStats) float64 { return float64(s.Sent) }))
	auto.NewCounterFunc(prometheus.CounterOpts(opts("link_received_total", "Dispatch frames received from other nodes.")),
		stat(func(s cluster.LinkStats) float64 { return float64(s.Received) }))
	auto.NewCounterFunc(prometheus.CounterOpts(opts("link_dropped_total",
		"Dispatch frames the link dropped: refused (queue full, peer not connected) or queued when a connection broke.")),
		stat(func(s cluster.LinkStats) float64 { return float64(s.Dropped) }))
	auto.NewGaugeFunc(prometheus.GaugeOpts(opts("link_peers_connected", "Other nodes this node's dispatch link is connected to.")),
		stat(func(s cluster.LinkStats) float64 { return float64(s.Connected) }))
	return nil
}

// processorsLoop keeps the dispatcher's list of processing nodes in step
// with gossip: alive members running the dispatch link whose health is ok
// (or draining: they keep their dialogs, get nothing new).
func (n *Node) processorsLoop(ctx context.Context) {
	for {
		ch := n.gossip.Changed()
		n.sip.SetProcessors(processors(n.gossip.Members()))
		select {
		case <-ctx.Done():
			return
		case <-ch:
			// Metadata changes often (load): look at most 20 times a second.
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func processors(members []cluster.Member) []sipstack.Processor {
	var out []sipstack.Processor
	for _, m := range members {
		if m.State != cluster.MemberAlive || !slices.Contains(m.Meta.Roles, roleDispatch) {
			continue
		}
		switch m.Meta.Health {
		case cluster.HealthOK:
			out = append(out, sipstack.Processor{ID: m.ID})
		case cluster.HealthDraining:
			out = append(out, sipstack.Processor{ID: m.ID, Draining: true})
		}
	}
	return out
}
