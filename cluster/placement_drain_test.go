package cluster

import (
	"strings"
	"testing"

	"github.com/troika-sip/troika/fsm"
)

// A draining holder's addresses move to a healthy node (spread or single),
// stay put while no node is healthy, and a draining node gets no new
// address.
func TestPlaceDraining(t *testing.T) {
	const vip, alias = "10.0.0.100", "10.0.0.150"
	cur := func(as ...fsm.Assignment) map[string]fsm.Assignment {
		m := map[string]fsm.Assignment{}
		for _, a := range as {
			m[a.IP] = a
		}
		return m
	}
	at := func(ip, node string, epoch uint64) fsm.Assignment {
		return fsm.Assignment{IP: ip, Node: node, Epoch: epoch}
	}
	cases := []struct {
		name string
		in   PlacementInput
		want []string
	}{
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
			}
		})
	}
}
