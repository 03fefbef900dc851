package cluster

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/troika-sip/troika/internal/testkit"
)

// histogramCount is the sample count of histogram name in g.
func histogramCount(g prometheus.Gatherer, name string) uint64 {
	mfs, _ := g.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name && mf.GetType() == dto.MetricType_HISTOGRAM && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// The raft metrics of a three-node cluster: one leader, the same term
// everywhere, indexes as raft has them; proposals through a follower are
// timed there and applied everywhere; a snapshot's size and time are
// recorded where it is taken, and a restart restores it (counted).
func TestRaftMetrics(t *testing.T) {
	var mu sync.Mutex
	regs := map[string]*prometheus.Registry{} // by node id, the registry of its current run
	c, ctx, leader := newLedCluster(t, func(cfg *Config) {
		reg := prometheus.NewRegistry()
		mu.Lock()
		regs[cfg.NodeID] = reg
		mu.Unlock()
		cfg.Metrics = reg
	}, 45*time.Second)
	reg := func(i int) *prometheus.Registry {
		mu.Lock()
		defer mu.Unlock()
		return regs[c.nodes[i].cfg.NodeID]
	}
	follower := c.follower(leader)
	fn := c.nodes[follower].node
	proposedBefore := histogramCount(reg(follower), "troika_raft_apply_seconds")
	accounts := createAccounts(ctx, t, fn, "m", 5)
	var acks ackLog
	registerMany(ctx, t, fn, accounts, 0, 20, 4, &acks)
	if got := histogramCount(reg(follower), "troika_raft_apply_seconds") - proposedBefore; got != 25 {
		t.Errorf("troika_raft_apply_seconds counted %d proposals on the follower, want 25", got)
	}
	leaders := 0.0
	for i, tn := range c.nodes {
		r := reg(i)
		testkit.WaitFor(t, 5*time.Second, tn.cfg.NodeID+" to apply everything", func() bool {
			return testkit.Metric(r, "troika_raft_applied_index") == float64(c.nodes[leader].node.Indexes().Commit)
		})
		leaders += testkit.Metric(r, "troika_raft_leader")
		if got := testkit.Metric(r, "troika_raft_has_leader"); got != 1 {
			t.Errorf("%s: troika_raft_has_leader = %v", tn.cfg.NodeID, got)
		}
		if got, want := testkit.Metric(r, "troika_raft_term"), float64(c.nodes[leader].node.raft.CurrentTerm()); got != want {
			t.Errorf("%s: troika_raft_term = %v, want %v", tn.cfg.NodeID, got, want)
		}
		if got := histogramCount(r, "troika_raft_fsm_apply_seconds"); got < 25 {
			t.Errorf("%s: troika_raft_fsm_apply_seconds counted %d entries, want at least 25", tn.cfg.NodeID, got)
		}
	}
	if leaders != 1 {
		t.Errorf("troika_raft_leader sums to %v over the nodes, want 1", leaders)
	}

	n := c.nodes[follower].node
	if got := testkit.Metric(reg(follower), "troika_raft_snapshot_last_bytes"); got != 0 {
		t.Fatalf("snapshot size %v before any snapshot", got)
	}
	if err := n.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	size := testkit.Metric(reg(follower), "troika_raft_snapshot_last_bytes")
	if size <= 0 || histogramCount(reg(follower), "troika_raft_snapshot_persist_seconds") != 1 {
		t.Fatalf("after a snapshot: size %v, persist count %d", size, histogramCount(reg(follower), "troika_raft_snapshot_persist_seconds"))
	}
	snaps, err := n.snaps.List()
	if err != nil || len(snaps) != 1 || float64(snaps[0].Size) != size {
		t.Fatalf("snapshot size %v, the store has %+v (%v)", size, snaps, err)
	}
	c.stop(follower)
	fresh := prometheus.NewRegistry() // a restart registers its metrics again
	mu.Lock()
	regs[c.nodes[follower].cfg.NodeID] = fresh
	mu.Unlock()
	c.nodes[follower].cfg.Metrics = fresh
	c.start(follower)
	if got := testkit.Metric(reg(follower), "troika_raft_snapshot_restores_total"); got != 1 {
		t.Errorf("restarted from its snapshot: troika_raft_snapshot_restores_total = %v, want 1", got)
	}
}
