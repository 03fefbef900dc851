package node

import (
	"strings"
	"testing"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/cluster"
	"github.com/troika-sip/troika/fsm"
)

// A node is caught up while its applied index is within ReadyMaxLag of
// the leader's commit index (as gossiped) or of its own, whichever is
// higher; without a leader it cannot tell.
func TestCaughtUp(t *testing.T) {
	for _, tc := range []struct {
		name         string
		leader       bool
		idx          cluster.Indexes
		leaderCommit uint64
		ok           bool
		detail       string
	}{
		{"no leader", false, cluster.Indexes{Commit: 10, Applied: 10}, 0, false, "cannot tell without a leader"},
		{"level with the leader", true, cluster.Indexes{Commit: 500, Applied: 500}, 500, true, "0 behind"},
		{"the leader's gossip is older than its own commit index", true, cluster.Indexes{Commit: 520, Applied: 519}, 500, true, "its own commit index 520: 1 behind"},
		{"just within the bound of the leader", true, cluster.Indexes{Commit: 400, Applied: 400}, 400 + ReadyMaxLag, true, "100 behind"},
		{"past the bound of the leader", true, cluster.Indexes{Commit: 400, Applied: 399}, 400 + ReadyMaxLag, false, "the leader's commit index (as it last gossiped it) 500: 101 behind"},
		{"applying a backlog of its own", true, cluster.Indexes{Commit: 5000, Applied: 1000}, 0, false, "4000 behind"},
	} {
		ok, detail := caughtUp(tc.leader, tc.idx, tc.leaderCommit)
		if ok != tc.ok || !strings.Contains(detail, tc.detail) {
			t.Errorf("%s: %v %q, want %v and %q", tc.name, ok, detail, tc.ok, tc.detail)
		}
	}
}

// The failovers are the moves of an address from one node to another (or
// to nobody) between two looks at the ownership map, newest first; a
// first placement, an address placed again after nobody held it, and a
// removed address are not failovers.
func TestFailoverLog(t *testing.T) {
	var f failoverLog
	f.observe([]fsm.Assignment{{IP: "10.0.0.100", Node: "n1", Epoch: 1, AssignedAt: 1000}})
	f.observe([]fsm.Assignment{{IP: "10.0.0.100", Node: "n1", Epoch: 1, AssignedAt: 1000}, {IP: "10.0.0.150", Node: "n2", Epoch: 2, AssignedAt: 2000}})
	if got := f.recentList(); len(got) != 0 {
		t.Fatalf("failovers of first placements: %+v", got)
	}
	f.observe([]fsm.Assignment{{IP: "10.0.0.100", Node: "n3", Epoch: 3, AssignedAt: 3000}, {IP: "10.0.0.150", Node: "", Epoch: 4, AssignedAt: 4000}})
	f.observe([]fsm.Assignment{{IP: "10.0.0.100", Node: "n3", Epoch: 3, AssignedAt: 3000}, {IP: "10.0.0.150", Node: "n1", Epoch: 5, AssignedAt: 5000}})
	f.observe([]fsm.Assignment{{IP: "10.0.0.150", Node: "n1", Epoch: 5, AssignedAt: 5000}})
	got := f.recentList()
	want := []admin.Failover{{Address: "10.0.0.150", From: "n2", To: ""}, {Address: "10.0.0.100", From: "n1", To: "n3"}}
	if len(got) != len(want) {
		t.Fatalf("failovers %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Address != want[i].Address || got[i].From != want[i].From || got[i].To != want[i].To {
			t.Errorf("failover %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if got[1].At.UnixMilli() != 3000 {
		t.Errorf("failover at %v, want the assignment's time", got[1].At)
	}
	for i := range failoversKept + 5 { // back and forth between n2 and n1
		f.observe([]fsm.Assignment{{IP: "10.0.0.150", Node: []string{"n2", "n1"}[i%2], Epoch: uint64(10 + i)}})
	}
	if n := len(f.recentList()); n != failoversKept {
		t.Errorf("%d failovers kept, want %d", n, failoversKept)
	}
}
