package cluster

import (
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/internal/metric"
)

// The cluster's Prometheus metrics: raft (leadership, term, indexes, the
// time a proposal takes, applying entries, snapshots) and address
// ownership (who the map names for each address, what this node holds,
// failovers, the time an address assigned here was not held). They are
// registered on Config.Metrics.

type metrics struct {
	apply         prometheus.Histogram // a proposal of this node, to its result
	fsmApply      prometheus.Histogram // one committed entry applied to the state
	snapshotTime  prometheus.Histogram // writing a snapshot (Persist)
	snapshotBytes prometheus.Gauge     // the last snapshot's size
	restores      prometheus.Counter   // snapshots restored into the state
	failovers     *prometheus.CounterVec
	unheld        *prometheus.CounterVec

	owner atomic.Pointer[Owner] // set by NewOwner, for the address collector
}

// Reasons of troika_address_failovers_total.
const (
	failoverFailed   = "failed"   // the holder failed (dead in gossip, or unreachable over raft)
	failoverDraining = "draining" // the holder drains or stops
)

// latencyBuckets fit raft round trips on a LAN and fsync: 0.5 ms to 5 s.
var latencyBuckets = []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5}

func newMetrics(reg prometheus.Registerer, n *Node) *metrics {
	raftMetrics, addressMetrics := metric.New(reg, "raft"), metric.New(reg, "address")
	m := &metrics{
		apply: raftMetrics.Histogram("apply_seconds",
			"Time from a proposal made on this node (forwarded to the leader when this node does not lead) to its result: committed by a quorum and applied. Failed proposals are not observed.",
			latencyBuckets),
		fsmApply: raftMetrics.Histogram("fsm_apply_seconds",
			"Time to apply one committed log entry to this node's replica of the state.",
			[]float64{.00001, .00005, .0001, .0005, .001, .005, .01, .05, .1}),
		snapshotTime: raftMetrics.Histogram("snapshot_persist_seconds",
			"Time to write a raft snapshot of the state to disk.",
			[]float64{.01, .05, .1, .5, 1, 2, 5, 10, 30, 60}),
		snapshotBytes: raftMetrics.Gauge("snapshot_last_bytes",
			"Size of the last raft snapshot this node wrote (0 until it writes one)."),
		restores: raftMetrics.Counter("snapshot_restores_total",
			"Raft snapshots restored into this node's replica (at start, or sent by the leader to a node too far behind)."),
		failovers: addressMetrics.CounterVec("failovers_total",
			"Addresses moved from one node to another by this node's placement while it led, by address and reason (failed: the holder died or was unreachable; draining: it stopped in a planned way). Summed over the nodes: every move once.",
			"address", "reason"),
		unheld: addressMetrics.CounterVec("unheld_seconds_total",
			"Seconds during which the ownership map named this node for the address but this node did not hold it (the handover wait after a move, no contact with a leader, a failure to add it).",
			"address"),
	}
	gauge := func(name, help string, v func(r *raft.Raft) float64) {
		raftMetrics.GaugeFunc(name, help, func() float64 {
			r := n.raftRef.Load()
			if r == nil || n.alive() != nil {
				return 0
			}
			return v(r)
		})
	}
	gauge("leader", "1 while this node is the raft leader, else 0.", func(r *raft.Raft) float64 { return b2f(r.State() == raft.Leader) })
	gauge("has_leader", "1 while this node knows a raft leader (itself or another), else 0: writes fail and reads may be stale without one.",
		func(r *raft.Raft) float64 { _, id := r.LeaderWithID(); return b2f(id != "") })
	gauge("term", "The raft term this node is in.", func(r *raft.Raft) float64 { return float64(r.CurrentTerm()) })
	gauge("last_log_index", "The last index in this node's raft log.", func(r *raft.Raft) float64 { return float64(r.LastIndex()) })
	gauge("commit_index", "The last raft index this node knows to be committed.", func(r *raft.Raft) float64 { return float64(r.CommitIndex()) })
	gauge("applied_index", "The last raft index applied to this node's replica.", func(r *raft.Raft) float64 { return float64(r.AppliedIndex()) })
	gauge("last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader; -1 when it has not since it started).",
		func(r *raft.Raft) float64 {
			if r.State() == raft.Leader {
				return 0
			}
			if t := r.LastContact(); !t.IsZero() {
				return time.Since(t).Seconds()
			}
			return -1
		})
	reg.MustRegister(&addressCollector{n: n, m: m})
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// addressCollector exports, at each scrape, the ownership map's holder of
// every address and whether this node holds it.
type addressCollector struct {
	n *Node
	m *metrics
}

var (
	addressHolderDesc = prometheus.NewDesc("troika_address_holder",
		"The node the replicated ownership map assigns each virtual IP or alias to (value 1; node=\"\" when it names nobody). The node takes it once its handover wait is over: troika_address_held says who holds it.",
		[]string{"address", "node"}, nil)
	addressHeldDesc = prometheus.NewDesc("troika_address_held",
		"1 while this node holds the address (added to its interface, SIP sockets open), 0 for the other managed addresses. Summed over the nodes: 1, or 0 during a move.",
		[]string{"address"}, nil)
)

func (c *addressCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- addressHolderDesc
	ch <- addressHeldDesc
}

func (c *addressCollector) Collect(ch chan<- prometheus.Metric) {
	o := c.m.owner.Load()
	if o == nil {
		for _, a := range c.n.state.Assignments() {
			ch <- prometheus.MustNewConstMetric(addressHolderDesc, prometheus.GaugeValue, 1, a.IP, a.Node)
		}
		return
	}
	for _, s := range AddressStatuses(o, c.n.state) {
		if s.Epoch > 0 || s.Node != "" {
			ch <- prometheus.MustNewConstMetric(addressHolderDesc, prometheus.GaugeValue, 1, s.IP, s.Node)
		}
		ch <- prometheus.MustNewConstMetric(addressHeldDesc, prometheus.GaugeValue, b2f(s.HeldByMe), s.IP)
	}
}

// countFailover counts a change of the ownership map this node proposed
// that moves an address away from a holder.
func (m *metrics) countFailover(c PlacementChange, health NodeHealth) {
	if c.Remove || c.From == "" || c.Node == "" || c.From == c.Node {
		return // not a move from one node to another
	}
	reason := failoverFailed
	if health == Draining {
		reason = failoverDraining
	}
	m.failovers.WithLabelValues(c.IP, reason).Inc()
}
