package cluster

import (
	"strings"
	"testing"

	"github.com/troika-sip/troika/fsm"
)

func TestPlace(t *testing.T) {
	const vip, alias, alias2 = "10.0.0.100", "10.0.0.150", "10.0.0.151"
	all := func(h NodeHealth) map[string]NodeHealth {
		return map[string]NodeHealth{"n1": h, "n2": h, "n3": h}
	}
	healthy := all(Healthy)
	with := func(m map[string]NodeHealth, node string, h NodeHealth) map[string]NodeHealth {
		out := map[string]NodeHealth{}
		for k, v := range m {
			out[k] = v
		}
		out[node] = h
		return out
	}
	at := func(ip, node string, epoch uint64) fsm.Assignment {
		return fsm.Assignment{IP: ip, Node: node, Epoch: epoch}
	}
	cur := func(as ...fsm.Assignment) map[string]fsm.Assignment {
		m := map[string]fsm.Assignment{}
		for _, a := range as {
			m[a.IP] = a
		}
		return m
	}
	cases := []struct {
		name string
		in   PlacementInput
		want []string // PlacementChange.String() prefixes: "ip: from -> to"
	}{
		{
			name: "initial spread keeps off the leader and puts the alias elsewhere",
			in:   PlacementInput{Addresses: []string{vip, alias}, Nodes: healthy, Leader: "n1", Settled: true},
			want: []string{vip + ": nobody -> n2", alias + ": nobody -> n3"},
		},
		{
			name: "ties go to a follower rather than the leader",
			in:   PlacementInput{Addresses: []string{vip, alias, alias2}, Nodes: healthy, Leader: "n1", Settled: true},
			want: []string{vip + ": nobody -> n2", alias + ": nobody -> n3", alias2 + ": nobody -> n2"},
		},
		{
			name: "sticky: healthy holders keep their addresses, even the leader and against prefer",
			in: PlacementInput{Addresses: []string{vip, alias}, Current: cur(at(vip, "n1", 1), at(alias, "n1", 2)),
				Nodes: healthy, Leader: "n1", Prefer: map[string]string{vip: "n3"}, Settled: true},
			want: nil,
		},
		{
			name: "prefer wins at placement",
			in: PlacementInput{Addresses: []string{vip, alias}, Nodes: healthy, Leader: "n1",
				Prefer: map[string]string{vip: "n1"}, Settled: true},
			want: []string{vip + ": nobody -> n1", alias + ": nobody -> n2"},
		},
		{
			name: "prefer for an unhealthy node falls back to spread",
			in: PlacementInput{Addresses: []string{vip}, Nodes: with(healthy, "n3", Failed), Leader: "n1",
				Prefer: map[string]string{vip: "n3"}, Settled: true},
			want: []string{vip + ": nobody -> n2"},
		},
		{
			name: "a failed holder's addresses move; the others stay",
			in: PlacementInput{Addresses: []string{vip, alias}, Current: cur(at(vip, "n2", 1), at(alias, "n3", 2)),
				Nodes: with(healthy, "n2", Failed), Leader: "n1", Settled: true},
			want: []string{vip + ": n2 -> n3 (n2 failed)"},
		},
		{
			name: "a failed holder's addresses move even before the leader settled",
			in: PlacementInput{Addresses: []string{vip, alias}, Current: cur(at(vip, "n2", 1)),
				Nodes: map[string]NodeHealth{"n1": Healthy, "n2": Failed, "n3": HealthUnknown}, Leader: "n1", Settled: false},
			want: []string{vip + ": n2 -> n1 (n2 failed)"},
		},
		{
			name: "unsettled: nobody's addresses wait for the voters",
			in: PlacementInput{Addresses: []string{vip, alias}, Nodes: with(healthy, "n3", HealthUnknown),
				Leader: "n1", Settled: false},
			want: nil,
		},
		{
			name: "a holder of unknown health keeps its address",
			in: PlacementInput{Addresses: []string{vip}, Current: cur(at(vip, "n2", 1)),
				Nodes: with(healthy, "n2", HealthUnknown), Leader: "n1", Settled: true},
			want: nil,
		},
		{
			name: "a holder that is no longer a voter counts as failed",
			in: PlacementInput{Addresses: []string{vip}, Current: cur(at(vip, "n9", 4)),
				Nodes: healthy, Leader: "n1", Settled: true},
			want: []string{vip + ": n9 -> n2 (n9 failed)"},
		},
		{
			name: "no healthy node: unassigned",
			in: PlacementInput{Addresses: []string{vip, alias}, Current: cur(at(vip, "n2", 1)),
				Nodes: all(Failed), Leader: "n1", Settled: true},
			want: []string{vip + ": n2 -> nobody", alias + ": nobody -> nobody"},
		},
		{
			name: "already unassigned and still nobody healthy: no change",
			in: PlacementInput{Addresses: []string{vip}, Current: cur(at(vip, "", 3)),
				Nodes: all(Failed), Leader: "n1", Settled: true},
			want: nil,
		},
		{
			name: "unassigned gets a node when one is healthy",
			in: PlacementInput{Addresses: []string{vip}, Current: cur(at(vip, "", 3)),
				Nodes: with(all(Failed), "n3", Healthy), Leader: "n1", Settled: true},
			want: []string{vip + ": nobody -> n3"},
		},
		{
			name: "an address no longer managed is removed",
			in: PlacementInput{Addresses: []string{vip}, Current: cur(at(vip, "n2", 1), at(alias, "n3", 2)),
				Nodes: healthy, Leader: "n1", Settled: true},
			want: []string{alias + ": remove"},
		},
		{
			name: "single keeps everything with the first address's node",
			in: PlacementInput{Addresses: []string{vip, alias, alias2}, Nodes: healthy, Leader: "n1",
				Policy: PlacementSingle, Settled: true},
			want: []string{vip + ": nobody -> n2", alias + ": nobody -> n2", alias2 + ": nobody -> n2"},
		},
		{
			name: "single: a failed holder's addresses move together",
			in: PlacementInput{Addresses: []string{vip, alias}, Current: cur(at(vip, "n2", 1), at(alias, "n2", 2)),
				Nodes: with(healthy, "n2", Failed), Leader: "n1", Policy: PlacementSingle, Settled: true},
			want: []string{vip + ": n2 -> n3", alias + ": n2 -> n3"},
		},
		{
			name: "a lone leader takes everything",
			in: PlacementInput{Addresses: []string{vip, alias}, Nodes: map[string]NodeHealth{"n1": Healthy},
				Leader: "n1", Settled: true},
			want: []string{vip + ": nobody -> n1", alias + ": nobody -> n1"},
		},
		{
			name: "a draining follower's addresses move to the healthy nodes, ties to a follower",
			in: PlacementInput{Addresses: []string{vip, alias}, Current: cur(at(vip, "n2", 1), at(alias, "n2", 2)),
				Nodes: map[string]NodeHealth{"n1": Healthy, "n2": Draining, "n3": Healthy}, Leader: "n1", Settled: true},
			want: []string{vip + ": n2 -> n3 (n2 draining)", alias + ": n2 -> n3 (n2 draining)"},
		},
		{
			name: "a draining leader's address moves",
			in: PlacementInput{Addresses: []string{vip, alias}, Current: cur(at(vip, "n1", 1), at(alias, "n3", 2)),
				Nodes: map[string]NodeHealth{"n1": Draining, "n2": Healthy, "n3": Healthy}, Leader: "n1", Settled: true},
			want: []string{vip + ": n1 -> n2 (n1 draining)"},
		},
		{
			name: "single: a draining holder's addresses move together",
			in: PlacementInput{Addresses: []string{vip, alias}, Current: cur(at(vip, "n2", 1), at(alias, "n2", 2)),
				Nodes: map[string]NodeHealth{"n1": Healthy, "n2": Draining, "n3": Healthy}, Leader: "n1",
				Policy: PlacementSingle, Settled: true},
			want: []string{vip + ": n2 -> n3", alias + ": n2 -> n3"},
		},
		{
			name: "no healthy node: a draining holder keeps its addresses",
			in: PlacementInput{Addresses: []string{vip}, Current: cur(at(vip, "n2", 1)),
				Nodes: map[string]NodeHealth{"n1": Failed, "n2": Draining, "n3": HealthUnknown}, Leader: "n1", Settled: true},
			want: nil,
		},
		{
			name: "a draining node gets no new address",
			in: PlacementInput{Addresses: []string{vip}, Nodes: map[string]NodeHealth{"n1": Draining, "n2": Failed},
				Leader: "n1", Settled: true},
			want: []string{vip + ": nobody -> nobody"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Place(c.in)
			if len(got) != len(c.want) {
				t.Fatalf("got %d changes %v, want %v", len(got), got, c.want)
			}
			for i, ch := range got {
				if !strings.HasPrefix(ch.String(), c.want[i]) {
					t.Errorf("change %d: %q, want it to start with %q", i, ch.String(), c.want[i])
				}
				if prev, ok := c.in.Current[ch.IP]; ok && ch.PrevEpoch != prev.Epoch {
					t.Errorf("change %d: PrevEpoch %d, want the current epoch %d", i, ch.PrevEpoch, prev.Epoch)
				}
			}
			// Applying the changes and placing again changes nothing.
			s := fsm.New()
			var seed []fsm.AddressChange
			for _, a := range c.in.Current {
				seed = append(seed, fsm.AddressChange{IP: a.IP, Node: a.Node})
			}
			s.ApplyCommand(&fsm.AssignAddresses{Changes: seed})
			next := map[string]fsm.Assignment{}
			for _, a := range s.Assignments() {
				next[a.IP] = a
			}
			var cmd fsm.AssignAddresses
			for _, ch := range got {
				ch.PrevEpoch = next[ch.IP].Epoch
				cmd.Changes = append(cmd.Changes, ch.AddressChange)
			}
			if r := s.ApplyCommand(&cmd); r.Err != nil {
				t.Fatalf("the changes do not apply: %v", r.Err)
			}
			in := c.in
			in.Current = map[string]fsm.Assignment{}
			for _, a := range s.Assignments() {
				in.Current[a.IP] = a
			}
			if again := Place(in); len(again) != 0 {
				t.Errorf("placing again after applying: %v", again)
			}
		})
	}
}
