package fsm

import (
	"bytes"
	"reflect"
	"testing"
)

func assignmentMap(s *State) map[string]Assignment {
	out := map[string]Assignment{}
	for _, a := range s.Assignments() {
		out[a.IP] = a
	}
	return out
}

// Every change gets the next epoch; assigning the holder again, a retried
// command and a command decided on an older state change nothing.
func TestAssignAddressesEpochsAndIdempotency(t *testing.T) {
	s := New()
	watch := s.AssignmentsChanged()
	first := &AssignAddresses{Now: t0, Changes: []AddressChange{
		{IP: "10.0.0.100", Node: "sip1"},
		{IP: "10.0.0.101", Node: "sip2"},
	}}
	mustApply(t, s, first)
	select {
	case <-watch:
	default:
		t.Fatal("AssignmentsChanged not closed by a change")
	}
	got := assignmentMap(s)
	if got["10.0.0.100"] != (Assignment{IP: "10.0.0.100", Node: "sip1", Epoch: 1, AssignedAt: t0}) ||
		got["10.0.0.101"] != (Assignment{IP: "10.0.0.101", Node: "sip2", Epoch: 2, AssignedAt: t0}) || s.AddressEpoch() != 2 {
		t.Fatalf("after the first assignment: %+v epoch %d", got, s.AddressEpoch())
	}

	// The same command again (a retry after ErrLeadershipLost): nothing
	// changes, not even the watch channel.
	watch = s.AssignmentsChanged()
	mustApply(t, s, first)
	if !reflect.DeepEqual(assignmentMap(s), got) || s.AddressEpoch() != 2 {
		t.Fatalf("a retried command changed the map: %+v", assignmentMap(s))
	}
	select {
	case <-watch:
		t.Fatal("a no-op closed AssignmentsChanged")
	default:
	}

	// Move .100 to sip3 (CAS on epoch 1).
	mustApply(t, s, &AssignAddresses{Now: t0 + 1000, Changes: []AddressChange{{IP: "10.0.0.100", Node: "sip3", PrevEpoch: 1}}})
	if a, _ := s.Assignment("10.0.0.100"); a.Node != "sip3" || a.Epoch != 3 || a.AssignedAt != t0+1000 {
		t.Fatalf("move: %+v", a)
	}
	// A stale command (decided when .100 was at epoch 1) changes nothing.
	mustApply(t, s, &AssignAddresses{Now: t0 + 2000, Changes: []AddressChange{{IP: "10.0.0.100", Node: "sip1", PrevEpoch: 1}}})
	if a, _ := s.Assignment("10.0.0.100"); a.Node != "sip3" || a.Epoch != 3 {
		t.Fatalf("stale command applied: %+v", a)
	}
	// Assigning the holder again keeps the epoch.
	mustApply(t, s, &AssignAddresses{Now: t0 + 3000, Changes: []AddressChange{{IP: "10.0.0.100", Node: "sip3", PrevEpoch: 3}}})
	if a, _ := s.Assignment("10.0.0.100"); a.Epoch != 3 || a.AssignedAt != t0+1000 {
		t.Fatalf("re-assigning the holder changed the entry: %+v", a)
	}
	// Unassign, then remove; a removed entry's epoch is never reused.
	mustApply(t, s, &AssignAddresses{Now: t0 + 4000, Changes: []AddressChange{{IP: "10.0.0.101", Node: "", PrevEpoch: 2}}})
	if a, _ := s.Assignment("10.0.0.101"); a.Node != "" || a.Epoch != 4 {
		t.Fatalf("unassign: %+v", a)
	}
	mustApply(t, s, &AssignAddresses{Now: t0 + 5000, Changes: []AddressChange{{IP: "10.0.0.101", Remove: true, PrevEpoch: 4}}})
	if _, ok := s.Assignment("10.0.0.101"); ok {
		t.Fatal("removed entry still there")
	}
	mustApply(t, s, &AssignAddresses{Now: t0 + 6000, Changes: []AddressChange{{IP: "10.0.0.101", Node: "sip1"}}})
	if a, _ := s.Assignment("10.0.0.101"); a.Epoch != 5 || a.Node != "sip1" {
		t.Fatalf("re-added entry: %+v", a)
	}
	// The barrier changes nothing.
	before := assignmentMap(s)
	mustApply(t, s, &AddressBarrier{Node: "sip2", Now: t0})
	if !reflect.DeepEqual(assignmentMap(s), before) || s.AddressEpoch() != 5 {
		t.Fatal("a barrier changed the map")
	}
}

func TestAssignAddressesRefusesMalformed(t *testing.T) {
	cases := map[string][]AddressChange{
		"not an ip":     {{IP: "vip", Node: "sip1"}},
		"not canonical": {{IP: "2001:DB8::1", Node: "sip1"}},
		"multicast":     {{IP: "224.0.0.1", Node: "sip1"}},
		"twice":         {{IP: "10.0.0.1", Node: "sip1"}, {IP: "10.0.0.1", Node: "sip2"}},
		"bad node":      {{IP: "10.0.0.1", Node: "sip 1"}},
		"remove+node":   {{IP: "10.0.0.1", Node: "sip1", Remove: true}},
	}
	for name, changes := range cases {
		s := New()
		// A valid change first: nothing may be half applied.
		cmd := &AssignAddresses{Now: t0, Changes: append([]AddressChange{{IP: "10.9.9.9", Node: "sip1"}}, changes...)}
		if r := s.ApplyCommand(cmd); r.Err == nil || r.Err.Code != CodeInvalid {
			t.Errorf("%s: got %+v, want invalid", name, r.Err)
		}
		if len(s.Assignments()) != 0 || s.AddressEpoch() != 0 {
			t.Errorf("%s: a refused command changed the state", name)
		}
	}
	if r := New().ApplyCommand(&AddressBarrier{Node: ""}); r.Err == nil {
		t.Error("barrier without a node accepted")
	}
}

// The map and the epoch counter survive a snapshot; a restore wakes the
// watchers.
func TestAssignmentsSnapshot(t *testing.T) {
	s := newTestState(t)
	mustApply(t, s, &AssignAddresses{Now: t0, Changes: []AddressChange{
		{IP: "10.0.0.100", Node: "sip1"}, {IP: "2001:db8::5", Node: "sip2"}, {IP: "10.0.0.7", Node: "sip3"}}})
	mustApply(t, s, &AssignAddresses{Now: t0, Changes: []AddressChange{{IP: "10.0.0.7", Remove: true, PrevEpoch: 3}}})
	data := snapshotBytes(t, s)
	r := New()
	watch := r.AssignmentsChanged()
	if err := r.Restore(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-watch:
	default:
		t.Fatal("restore did not close AssignmentsChanged")
	}
	if !reflect.DeepEqual(r.Assignments(), s.Assignments()) || r.AddressEpoch() != 3 {
		t.Fatalf("restored %+v epoch %d, want %+v epoch 3", r.Assignments(), r.AddressEpoch(), s.Assignments())
	}
	if got := r.Assignments(); got[0].IP != "10.0.0.100" || got[1].IP != "2001:db8::5" {
		t.Fatalf("not ordered by address: %+v", got)
	}
	// The next change continues from the restored epoch.
	mustApply(t, r, &AssignAddresses{Now: t0, Changes: []AddressChange{{IP: "10.0.0.7", Node: "sip1"}}})
	if a, _ := r.Assignment("10.0.0.7"); a.Epoch != 4 {
		t.Fatalf("epoch after restore: %+v", a)
	}
}
