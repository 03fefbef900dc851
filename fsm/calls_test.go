package fsm

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// callState: tariffs "out" (1/1 at 0.06/min = 1000 µ/s, fee 0.01) and
// "in" (60/60 at 0.02/min); prepaid 1001 with 1.00, postpaid 2001 with a
// 0.50 credit limit, 1002 with an incoming tariff, 1003 without.
func callState(t testing.TB) *State {
	t.Helper()
	s := New()
	mustApply(t, s, &PutTariff{Tariff: Tariff{ID: "out", Currency: "USD", Rates: []Rate{
		{Prefix: "", PerMinute: 60_000, ConnectFee: 10_000, FirstInterval: 1, NextInterval: 1},
		{Prefix: "999", PerMinute: 6_000_000, FirstInterval: 60, NextInterval: 60},
	}}})
	mustApply(t, s, &PutTariff{Tariff: Tariff{ID: "in", Currency: "USD", Rates: []Rate{{Prefix: "", PerMinute: 20_000, FirstInterval: 60, NextInterval: 60}}}})
	mustApply(t, s, &PutTariff{Tariff: Tariff{ID: "uk", Currency: "USD", Rates: []Rate{{Prefix: "44", PerMinute: 1_000, FirstInterval: 1, NextInterval: 1}}}})
	mustApply(t, s, &CreateAccounts{Now: t0, Accounts: []Account{
		{ID: "1001", Credentials: creds("1001", "p"), Billing: Prepaid, Balance: 1_000_000, TariffOut: "out"},
		{ID: "1002", Credentials: creds("1002", "p"), Billing: Prepaid, Balance: 1_000_000, TariffOut: "out", TariffIn: "in"},
		{ID: "1003", Credentials: creds("1003", "p"), Billing: Prepaid, Balance: 0, TariffOut: "uk"},
		{ID: "2001", Credentials: creds("2001", "p"), Billing: Postpaid, CreditLimit: 500_000, TariffOut: "out"},
	}})
	return s
}

func start(id, from, to string) *StartCall {
	return &StartCall{ID: id, Direction: DirOutgoing, Account: from, CLI: from, CLD: to, MaxSeconds: 14400, Now: t0, Node: "n1",
		Charges: []ChargeRequest{{Account: from, Role: RoleOutgoing, Number: to}, {Account: to, Role: RoleIncoming, Number: to}}}
}

func offnet(id, from, to string) *StartCall {
	c := start(id, from, to)
	c.Charges = c.Charges[:1]
	return c
}

func balance(s *State, id string) int64 { a, _ := s.Account(id); return a.Balance }

func TestPrepaidCallLifecycle(t *testing.T) {
	s := callState(t)
	r := mustApply(t, s, start("c1", "1001", "1002"))
	c := r.Call
	// 1.00 - 0.01 fee = 0.99 at 1000 µ/s buys 990 s; 1002 pays incoming at
	// 0.02/min in whole minutes: 1.00 buys 50 minutes.
	if len(c.Charges) != 2 || c.Charges[0].MaxDuration != 990 || c.Charges[0].Reserved != 1_000_000 ||
		c.Charges[1].MaxDuration != 3000 || c.MaxDuration != 990 {
		t.Fatalf("call %+v", c)
	}
	if s.Reserved("1001") != 1_000_000 || balance(s, "1001") != 1_000_000 {
		t.Fatal("reservation must hold money without moving it")
	}
	if again := mustApply(t, s, start("c1", "1001", "1002")); !reflect.DeepEqual(again.Call, c) {
		t.Fatal("retried StartCall changed the call")
	}
	mustApply(t, s, &AnswerCall{ID: "c1", ConnectAt: t0 + 2_000, Legs: []Leg{{Role: "callee", CallID: "x"}}})
	end := &EndCall{ID: "c1", DisconnectAt: t0 + 2_000 + 61_400, Cause: 200, CauseText: "BYE", DisconnectedBy: "caller"}
	x := mustApply(t, s, end).XDR
	// 61.4 s rounds to 61 s: 1001 pays 0.01 + 61 * 0.001; 1002 pays 2 minutes at 0.02.
	if x.Duration != 61 || x.Charges[0].Amount != 71_000 || x.Charges[1].Amount != 40_000 || x.Amount != 111_000 {
		t.Fatalf("xdr %+v", x)
	}
	if balance(s, "1001") != 929_000 || balance(s, "1002") != 960_000 || s.Reserved("1001") != 0 || s.Reserved("1002") != 0 {
		t.Fatalf("balances %d %d, reserved %d %d", balance(s, "1001"), balance(s, "1002"), s.Reserved("1001"), s.Reserved("1002"))
	}
	if again := mustApply(t, s, end).XDR; !reflect.DeepEqual(again, x) || balance(s, "1001") != 929_000 || s.Counts().XDRs != 1 {
		t.Fatal("a second EndCall changed something")
	}
	if _, ok := s.Call("c1"); ok {
		t.Fatal("ended call still in progress")
	}
}

func TestCallRefusals(t *testing.T) {
	s := callState(t)
	mustApply(t, s, &UpdateAccount{ID: "1002", Patch: AccountPatch{MaxCalls: ptr(1)}})
	cases := []struct {
		cmd   *StartCall
		code  ErrCode
		field string
	}{
		{start("r1", "1003", "1002"), CodeNoRate, "charges[0].number"},              // 1003's tariff only rates 44
		{offnet("r2", "1003", "4420"), CodeInsufficientFunds, "charges[0].account"}, // rated, but 0 balance
		{start("r3", "1001", "9990"), CodeInsufficientFunds, "charges[0].account"},  // a minute costs 6.00
		{start("r4", "nobody", "1002"), CodeNotFound, "charges[0].account"},
	}
	for _, c := range cases {
		r := s.ApplyCommand(c.cmd)
		if r.Err == nil || r.Err.Code != c.code || r.Err.Field != c.field {
			t.Errorf("%s: got %v, want %s on %s", c.cmd.ID, r.Err, c.code, c.field)
		}
	}
	mustApply(t, s, start("busy1", "1001", "1002"))
	if r := s.ApplyCommand(start("busy2", "2001", "1002")); r.Err == nil || r.Err.Code != CodeTooManyCalls || r.Err.Field != "charges[1].account" {
		t.Fatalf("max_calls: %v", r.Err)
	}
	mustApply(t, s, &UpdateAccount{ID: "2001", Patch: AccountPatch{Blocked: ptr(true)}})
	if r := s.ApplyCommand(start("blk", "2001", "1003")); r.Err == nil || r.Err.Code != CodeBlocked {
		t.Fatalf("blocked: %v", r.Err)
	}
	if s.Counts().Calls != 1 || s.Reserved("2001") != 0 || s.Reserved("1003") != 0 {
		t.Fatal("refused calls left state behind")
	}
}

func TestUnansweredCallCostsNothing(t *testing.T) {
	s := callState(t)
	mustApply(t, s, start("c", "1001", "1002"))
	x := mustApply(t, s, &EndCall{ID: "c", DisconnectAt: t0 + 30_000, Cause: 487, CauseText: "Request Terminated", DisconnectedBy: "caller"}).XDR
	if x.Amount != 0 || x.Duration != 0 || x.Cause != 487 || balance(s, "1001") != 1_000_000 || s.Reserved("1001") != 0 {
		t.Fatalf("xdr %+v", x)
	}
}

func TestPostpaidCreditLimit(t *testing.T) {
	s := callState(t)
	c := mustApply(t, s, start("p1", "2001", "1003")).Call
	// 0.50 credit - 0.01 fee = 490 s.
	if c.MaxDuration != 490 {
		t.Fatalf("max duration %d", c.MaxDuration)
	}
	mustApply(t, s, &AnswerCall{ID: "p1", ConnectAt: t0})
	mustApply(t, s, &EndCall{ID: "p1", DisconnectAt: t0 + 600_000, Cause: 200})
	if b := balance(s, "2001"); b != -500_000 {
		t.Fatalf("balance %d: a call cut late must not go past the credit limit", b)
	}
	if r := s.ApplyCommand(start("p2", "2001", "1003")); r.Err == nil || r.Err.Code != CodeInsufficientFunds {
		t.Fatalf("over the credit limit: %v", r.Err)
	}
}

// 200 simultaneous calls of one prepaid account, ended in random order
// with random durations: the balance never drops below zero and every
// micro-unit is accounted for.
func TestConcurrentCallsNeverOverspend(t *testing.T) {
	s := callState(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var started []string
	for i := range 200 {
		id := fmt.Sprintf("k%d", i)
		r := s.ApplyCommand(&StartCall{ID: id, Direction: DirOutgoing, Account: "1001", CLD: "555", MaxSeconds: 60 + rng.IntN(120), Now: t0,
			Charges: []ChargeRequest{{Account: "1001", Role: RoleOutgoing, Number: "555"}}})
		if r.Err == nil {
			started = append(started, id)
			mustApply(t, s, &AnswerCall{ID: id, ConnectAt: t0})
		} else if r.Err.Code != CodeInsufficientFunds {
			t.Fatal(r.Err)
		}
		if s.Reserved("1001") > balance(s, "1001") {
			t.Fatalf("reserved %d over balance %d", s.Reserved("1001"), balance(s, "1001"))
		}
	}
	if len(started) < 2 || len(started) == 200 {
		t.Fatalf("%d calls started: the test needs some to run out of money", len(started))
	}
	rng.Shuffle(len(started), func(i, j int) { started[i], started[j] = started[j], started[i] })
	var charged int64
	for _, id := range started {
		x := mustApply(t, s, &EndCall{ID: id, DisconnectAt: t0 + int64(rng.IntN(400_000)), Cause: 200}).XDR
		charged += x.Amount
	}
	if b := balance(s, "1001"); b < 0 || b+charged != 1_000_000 || s.Reserved("1001") != 0 {
		t.Fatalf("balance %d + charged %d != 1.00 (reserved %d)", b, charged, s.Reserved("1001"))
	}
}

func TestTopup(t *testing.T) {
	s := callState(t)
	tp := &Topup{Account: "1003", Amount: 2_500_000, Key: "pay-1", Now: t0}
	mustApply(t, s, tp)
	mustApply(t, s, tp)
	if balance(s, "1003") != 2_500_000 {
		t.Fatalf("balance %d after a repeated top-up", balance(s, "1003"))
	}
	mustApply(t, s, offnet("c", "1003", "4420"))
	res := s.ApplyCommand(&Topup{Account: "1003", Amount: -2_400_000, Key: "fix-1", Now: t0}) // the call holds 0.24
	if res.Err == nil || res.Err.Code != CodeInsufficientFunds {
		t.Fatalf("taking back money a call holds: %v", res.Err)
	}
	for _, bad := range []*Topup{{Account: "1003", Amount: 1, Now: t0}, {Account: "1003", Key: "z", Now: t0}, {Account: "x", Amount: 1, Key: "y", Now: t0}} {
		if r := s.ApplyCommand(bad); r.Err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	mustApply(t, s, &TrimRecords{MaxXDRs: 10, KeepKeysAfter: t0 + 1})
	mustApply(t, s, tp) // forgotten key: applies again
	if balance(s, "1003") != 5_000_000 {
		t.Fatalf("balance %d", balance(s, "1003"))
	}
}

func TestXDRRetentionAndQueries(t *testing.T) {
	s := callState(t)
	for i := range 5 {
		id := fmt.Sprintf("q%d", i)
		mustApply(t, s, start(id, "2001", "1002"))
		mustApply(t, s, &EndCall{ID: id, DisconnectAt: t0 + int64(i)*1000, Cause: 486})
	}
	if got := s.XDRs(XDRFilter{AfterSeq: 2, Limit: 2}); len(got) != 2 || got[0].Seq != 3 || got[1].Seq != 4 {
		t.Fatalf("after 2, limit 2: %+v", got)
	}
	if got := s.XDRs(XDRFilter{Account: "1002"}); len(got) != 5 {
		t.Fatalf("xDRs charging the callee: %d", len(got))
	}
	if got := s.XDRs(XDRFilter{Since: t0 + 3000}); len(got) != 2 {
		t.Fatalf("since: %d", len(got))
	}
	r := mustApply(t, s, &TrimRecords{MaxXDRs: 2, KeepKeysAfter: 0})
	if r.Purged != 3 || s.Counts().XDRs != 2 {
		t.Fatalf("trim purged %d, %d left", r.Purged, s.Counts().XDRs)
	}
	if _, ok := s.XDRForCall("q0"); ok {
		t.Fatal("trimmed xDR still found")
	}
	if x, ok := s.XDRForCall("q4"); !ok || x.Seq != 5 {
		t.Fatalf("kept xDR: %+v %v", x, ok)
	}
}

func TestSnapshotKeepsCallsAndMoney(t *testing.T) {
	s := callState(t)
	mustApply(t, s, start("live", "1001", "1002"))
	mustApply(t, s, start("done", "2001", "1003"))
	mustApply(t, s, &EndCall{ID: "done", DisconnectAt: t0, Cause: 480})
	mustApply(t, s, &Topup{Account: "1003", Amount: 1, Key: "k", Now: t0})
	r := restored(t, snapshotBytes(t, s))
	if !reflect.DeepEqual(r.Calls(), s.Calls()) || r.Reserved("1001") != s.Reserved("1001") || r.Reserved("1002") != s.Reserved("1002") ||
		!reflect.DeepEqual(r.XDRs(XDRFilter{}), s.XDRs(XDRFilter{})) {
		t.Fatal("restored calls, reservations or xDRs differ")
	}
	// Derived counters and sequences continue where they were.
	mustApply(t, r, &Topup{Account: "1003", Amount: 1, Key: "k", Now: t0})
	x := mustApply(t, r, &EndCall{ID: "live", DisconnectAt: t0, Cause: 487}).XDR
	if x.Seq != 2 || balance(r, "1003") != 1 || r.Reserved("1001") != 0 {
		t.Fatalf("after restore: seq %d balance %d reserved %d", x.Seq, balance(r, "1003"), r.Reserved("1001"))
	}
}

func TestCallForDialog(t *testing.T) {
	s := callState(t)
	mustApply(t, s, start("caller-cid", "1001", "1002"))
	mustApply(t, s, &AnswerCall{ID: "caller-cid", ConnectAt: t0, Legs: []Leg{{Role: "caller", CallID: "caller-cid"}, {Role: "callee", CallID: "b-leg"}}})
	for _, id := range []string{"caller-cid", "b-leg"} {
		if c, ok := s.CallForDialog(id); !ok || c.ID != "caller-cid" {
			t.Errorf("%s: %+v %v", id, c.ID, ok)
		}
	}
	if _, ok := s.CallForDialog("nope"); ok {
		t.Error("an unknown Call-ID found a call")
	}
	// A restored state finds the call by its legs too.
	r := restored(t, snapshotBytes(t, s))
	if c, ok := r.CallForDialog("b-leg"); !ok || c.ID != "caller-cid" {
		t.Errorf("restored, b-leg: %+v %v", c.ID, ok)
	}
	// Adopted elsewhere, the call is still found by its legs; ended, by
	// none of them.
	mustApply(t, s, &AdoptCall{ID: "caller-cid", From: "n1", To: "n2"})
	if c, ok := s.CallForDialog("b-leg"); !ok || c.Node != "n2" {
		t.Errorf("adopted, b-leg: %+v %v", c.Node, ok)
	}
	mustApply(t, s, &EndCall{ID: "caller-cid", DisconnectAt: t0 + 1000, Cause: 200})
	for _, id := range []string{"caller-cid", "b-leg"} {
		if _, ok := s.CallForDialog(id); ok {
			t.Errorf("%s: an ended call found", id)
		}
	}
}

// Adoption moves an answered call to one node: the first adopter wins,
// a second adopter (or the original node coming back) is refused, and a
// repeat by the winner changes nothing.
func TestAdoptCall(t *testing.T) {
	s := callState(t)
	mustApply(t, s, offnet("ringing", "1001", "1002"))
	mustApply(t, s, start("c1", "2001", "1002"))
	mustApply(t, s, &AnswerCall{ID: "c1", ConnectAt: t0, Legs: []Leg{{Role: "caller", CallID: "c1"}, {Role: "callee", CallID: "b-leg"}}})
	steps := []struct {
		cmd      *AdoptCall
		wantErr  ErrCode
		wantNode string
	}{
		{&AdoptCall{ID: "nope", From: "n1", To: "n2"}, CodeNotFound, ""},
		{&AdoptCall{ID: "c1", From: "n1"}, CodeInvalid, ""},
		{&AdoptCall{ID: "ringing", From: "n1", To: "n2"}, CodeConflict, ""},
		{&AdoptCall{ID: "c1", From: "n9", To: "n2"}, CodeConflict, "n1"},
		{&AdoptCall{ID: "c1", From: "n1", To: "n2"}, "", "n2"},
		{&AdoptCall{ID: "c1", From: "n1", To: "n2"}, "", "n2"}, // again: same answer
		{&AdoptCall{ID: "c1", From: "n1", To: "n3"}, CodeConflict, "n2"},
		{&AdoptCall{ID: "c1", From: "n1", To: "n1"}, CodeConflict, "n2"}, // n1 came back
	}
	for i, st := range steps {
		r := apply(s, st.cmd)
		switch {
		case st.wantErr == "" && r.Err != nil:
			t.Fatalf("step %d %+v: %v", i, st.cmd, r.Err)
		case st.wantErr != "" && (r.Err == nil || r.Err.Code != st.wantErr):
			t.Fatalf("step %d %+v: got %v, want %s", i, st.cmd, r.Err, st.wantErr)
		}
		if st.wantNode != "" {
			if c, _ := s.Call("c1"); c.Node != st.wantNode {
				t.Fatalf("step %d: call on %q, want %q", i, c.Node, st.wantNode)
			}
		}
	}
	// The xDR names the node that ended the call.
	r := mustApply(t, s, &EndCall{ID: "c1", DisconnectAt: t0 + 5_000, Cause: 200, DisconnectedBy: "caller"})
	if r.XDR.Node != "n2" {
		t.Errorf("xDR node %q, want the adopter n2", r.XDR.Node)
	}
}

// A debit never takes a postpaid account past its credit limit (it did
// before TopupV2: three debits took one to -3,000,000,000.00 with a credit
// limit of 10); a log written then replays as it was applied.
func TestPostpaidDebitStopsAtCreditLimit(t *testing.T) {
	s := callState(t) // 2001: postpaid, credit limit 0.50, balance 0
	if r := s.ApplyCommand(&Topup{Account: "2001", Amount: -400_000, Key: "d1", Now: t0}); r.Err != nil {
		t.Fatalf("a debit within the credit limit: %v", r.Err)
	}
	r := s.ApplyCommand(&Topup{Account: "2001", Amount: -1_000_000_000_000_000, Key: "d2", Now: t0})
	if r.Err == nil || r.Err.Code != CodeInsufficientFunds {
		t.Fatalf("a debit past the credit limit: %v", r.Err)
	}
	if a, _ := s.Account("2001"); a.Balance != -400_000 {
		t.Fatalf("balance %d after a refused debit, want -400000", a.Balance)
	}
	mustApply(t, s, &TopupV1{Account: "2001", Amount: -1_000_000_000_000_000, Key: "d3", Now: t0})
	if a, _ := s.Account("2001"); a.Balance != -1_000_000_000_400_000 {
		t.Fatalf("a version 1 debit replayed to %d", a.Balance)
	}
}
