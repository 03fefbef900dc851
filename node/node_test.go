package node

import (
	"testing"
	"time"

	"github.com/troika-sip/troika/cluster"
	"github.com/troika-sip/troika/fsm"
)

func TestStaleCalls(t *testing.T) {
	now := time.UnixMilli(10_000_000)
	ring := 60 * time.Second
	calls := []fsm.Call{
		{ID: "ringing-ok", SetupAt: now.UnixMilli() - 100_000},                                        // within ring timeout + grace
		{ID: "ringing-stale", SetupAt: now.UnixMilli() - 200_000},                                     // 60 s + 120 s ago
		{ID: "answered-ok", SetupAt: 1, ConnectAt: now.UnixMilli() - 3_600_000, MaxDuration: 3600},    // just at its maximum
		{ID: "answered-stale", SetupAt: 1, ConnectAt: now.UnixMilli() - 3_800_000, MaxDuration: 3600}, // 200 s past it
	}
	got := staleCalls(calls, now, ring)
	if len(got) != 2 || got[0].ID != "ringing-stale" || got[1].ID != "answered-stale" {
		t.Fatalf("stale: %+v", got)
	}
	if got[0].Cause != 408 || got[0].DisconnectAt != calls[1].SetupAt+60_000 {
		t.Errorf("ringing reap %+v", got[0])
	}
	if got[1].Cause != 200 || got[1].DisconnectAt != calls[3].ConnectAt+3_600_000 {
		t.Errorf("answered reap %+v", got[1])
	}
}

// AdoptCall is written only when every voter's version applies it, as
// the voters last said in gossip (dead ones included: a node that comes
// back replays the log).
func TestEveryVoterHas(t *testing.T) {
	m := func(id, state string, roles ...string) cluster.Member {
		return cluster.Member{ID: id, State: state, Meta: cluster.NodeMeta{Roles: roles}}
	}
	cases := []struct {
		name    string
		voters  []string
		members []cluster.Member
		want    bool
	}{
		{"all new", []string{"a", "b", "c"}, []cluster.Member{m("a", "alive"), m("b", "alive", roleAdoptCall), m("c", "alive", "x", roleAdoptCall)}, true},
		{"dead voter of the new version", []string{"a", "b", "c"}, []cluster.Member{m("b", "alive", roleAdoptCall), m("c", "dead", roleAdoptCall)}, true},
		{"an old voter", []string{"a", "b", "c"}, []cluster.Member{m("b", "alive", roleAdoptCall), m("c", "alive", "dispatcher", "processor")}, false},
		{"a voter never heard of", []string{"a", "b", "c"}, []cluster.Member{m("b", "alive", roleAdoptCall)}, false},
		{"alone", []string{"a"}, nil, true},
		{"a non-voter of an old version does not count", []string{"a", "b"}, []cluster.Member{m("b", "alive", roleAdoptCall), m("z", "alive")}, true},
	}
	for _, c := range cases {
		if got := everyVoterHas(roleAdoptCall, c.voters, c.members, "a"); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

// A call reserved by chunks whose node vanished without anyone adopting
// it holds a chunk, not its whole balance, and the leader's reaper ends
// it a little after that chunk ran out: charged the chunk, nothing left
// reserved, the rest of the balance free for the account's other calls.
func TestReapReleasesAnOrphanedChunk(t *testing.T) {
	st := fsm.New()
	apply := func(c fsm.Command) fsm.Result {
		t.Helper()
		res := st.ApplyCommand(c)
		if res.Err != nil {
			t.Fatalf("%T: %v", c, res.Err)
		}
		return res
	}
	apply(&fsm.PutTariff{Tariff: fsm.Tariff{ID: "t", Currency: "USD", Rates: []fsm.Rate{{PerMinute: 600_000, FirstInterval: 1, NextInterval: 1}}}})
	apply(&fsm.CreateAccount{Now: 1, Account: fsm.Account{ID: "a", Credentials: fsm.HashCredentials("a", "troika", "pw"),
		Billing: fsm.Prepaid, Balance: 60_000_000, TariffOut: "t"}}) // 100 minutes
	connect := time.UnixMilli(1_700_000_000_000)
	apply(&fsm.StartCall{ID: "orphan", Direction: fsm.DirOutgoing, Account: "a", CLD: "555", MaxSeconds: 14400,
		Now: connect.UnixMilli(), Node: "gone", Chunk: 300,
		Charges: []fsm.ChargeRequest{{Account: "a", Role: fsm.RoleOutgoing, Number: "555"}}})
	apply(&fsm.AnswerCall{ID: "orphan", ConnectAt: connect.UnixMilli()})
	if held := st.Reserved("a"); held != 3_000_000 {
		t.Fatalf("the call holds %d, want its 5-minute chunk (3000000)", held)
	}
	if got := staleCalls(st.Calls(), connect.Add(300*time.Second+reapGrace), time.Minute); len(got) != 0 {
		t.Fatalf("reaped at the end of its chunk + grace: %+v", got)
	}
	got := staleCalls(st.Calls(), connect.Add(300*time.Second+reapGrace+time.Second), time.Minute)
	if len(got) != 1 {
		t.Fatalf("stale calls %+v, want the orphan", got)
	}
	x := apply(got[0]).XDR
	if a, _ := st.Account("a"); x.Amount != 3_000_000 || a.Balance != 57_000_000 || st.Reserved("a") != 0 || x.DisconnectedBy != "system" {
		t.Fatalf("reaped: xDR %+v, balance %d, reserved %d", x, a.Balance, st.Reserved("a"))
	}
}
