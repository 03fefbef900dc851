package fsm

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// chunked is c reserved by chunks of chunk seconds.
func chunked(c *StartCall, chunk int) *StartCall {
	c.Chunk = chunk
	return c
}

// quotaCall starts an answered call of from to number reserved by chunks
// of chunk seconds, charging from alone.
func quotaCall(t testing.TB, s *State, id, from, number string, chunk int) Call {
	t.Helper()
	mustApply(t, s, chunked(offnet(id, from, number), chunk))
	return *mustApply(t, s, &AnswerCall{ID: id, ConnectAt: t0}).Call
}

func quotaOf(t testing.TB, s *State, id string) CallQuota {
	t.Helper()
	q, ok := s.CallQuota(id)
	if !ok {
		t.Fatalf("call %s has no quota", id)
	}
	return q
}

// A call reserved by chunks holds its first chunk (connect fee included)
// at setup, not what the whole balance buys; the call view says so.
func TestStartCallReservesTheFirstChunk(t *testing.T) {
	s := callState(t) // 1001: 1.00 prepaid on "out": 0.01 a call and 1000 µ a second
	c := quotaCall(t, s, "q", "1001", "555", 60)
	if c.MaxDuration != 60 || c.Charges[0].Reserved != 70_000 || s.Reserved("1001") != 70_000 {
		t.Fatalf("call pays %d s, reserves %d (account holds %d): want 60 s for 0.07", c.MaxDuration, c.Charges[0].Reserved, s.Reserved("1001"))
	}
	if q := quotaOf(t, s, "q"); q != (CallQuota{Chunk: 60, MaxSeconds: 14400}) {
		t.Fatalf("quota %+v", q)
	}
	// A StartCall without a chunk (and the version 1 command) reserves
	// the whole call, as before.
	whole := mustApply(t, s, (&StartCall{ID: "w", Direction: DirOutgoing, Account: "1002", CLD: "555", MaxSeconds: 14400, Now: t0,
		Charges: []ChargeRequest{{Account: "1002", Role: RoleOutgoing, Number: "555"}}}).V1()).Call
	if whole.MaxDuration != 990 || s.Reserved("1002") != 1_000_000 {
		t.Fatalf("a version 1 call pays %d s and holds %d", whole.MaxDuration, s.Reserved("1002"))
	}
	if _, ok := s.CallQuota("w"); ok {
		t.Fatal("a call without a chunk has a quota")
	}
	// A balance short of the first chunk gets what it buys, final at once.
	mustApply(t, s, &Topup{Account: "1003", Amount: 500, Key: "k", Now: t0}) // 30 s on "uk" (0.001/min)
	if c := mustApply(t, s, chunked(offnet("short", "1003", "4420"), 60)).Call; c.MaxDuration != 30 || !quotaOf(t, s, "short").Final {
		t.Fatalf("short first chunk: %d s, quota %+v", c.MaxDuration, quotaOf(t, s, "short"))
	}
}

// ExtendCall, step by step: each applies once whatever the retries, the
// last chunk the balance cannot pay in full gets what it can, and then the
// call is at its end.
func TestExtendCall(t *testing.T) {
	s := callState(t)
	mustApply(t, s, &Topup{Account: "1001", Amount: -840_000, Key: "k", Now: t0}) // 0.16 left: 0.01 + 150 s
	quotaCall(t, s, "q", "1001", "555", 60)
	steps := []struct {
		name      string
		cmd       *ExtendCall
		code      ErrCode // refusal, "" for none
		maxDur    int     // the call's MaxDuration after the step
		reserved  int64
		wantQuota CallQuota
	}{
		{"first extension", &ExtendCall{ID: "q", Seq: 1}, "", 120, 130_000, CallQuota{60, 14400, 1, false}},
		{"the same again", &ExtendCall{ID: "q", Seq: 1}, "", 120, 130_000, CallQuota{60, 14400, 1, false}},
		{"a step skipped", &ExtendCall{ID: "q", Seq: 3}, CodeConflict, 120, 130_000, CallQuota{60, 14400, 1, false}},
		{"partial last chunk", &ExtendCall{ID: "q", Seq: 2}, "", 150, 160_000, CallQuota{60, 14400, 2, true}},
		{"its retry", &ExtendCall{ID: "q", Seq: 2}, "", 150, 160_000, CallQuota{60, 14400, 2, true}},
		{"past the end", &ExtendCall{ID: "q", Seq: 3}, CodeConflict, 150, 160_000, CallQuota{60, 14400, 2, true}},
		{"seq 0", &ExtendCall{ID: "q"}, CodeInvalid, 150, 160_000, CallQuota{60, 14400, 2, true}},
	}
	for _, st := range steps {
		r := apply(s, st.cmd)
		switch {
		case st.code == "" && r.Err != nil:
			t.Fatalf("%s: %v", st.name, r.Err)
		case st.code != "" && (r.Err == nil || r.Err.Code != st.code):
			t.Fatalf("%s: got %v, want %s", st.name, r.Err, st.code)
		}
		c, _ := s.Call("q")
		if c.MaxDuration != st.maxDur || c.Charges[0].MaxDuration != st.maxDur || c.Charges[0].Reserved != st.reserved ||
			s.Reserved("1001") != st.reserved || quotaOf(t, s, "q") != st.wantQuota {
			t.Fatalf("%s: pays %d s (charge %d s), reserves %d (account %d), quota %+v; want %d s, %d, %+v", st.name,
				c.MaxDuration, c.Charges[0].MaxDuration, c.Charges[0].Reserved, s.Reserved("1001"), quotaOf(t, s, "q"),
				st.maxDur, st.reserved, st.wantQuota)
		}
	}
	// Cut at 150 s, a little late: charged the 150 s paid for, the whole
	// balance, nothing left reserved.
	x := mustApply(t, s, &EndCall{ID: "q", DisconnectAt: t0 + 151_700, Cause: 200, CauseText: "Out of Credit", DisconnectedBy: "timer"}).XDR
	if x.Amount != 160_000 || balance(s, "1001") != 0 || s.Reserved("1001") != 0 {
		t.Fatalf("charged %d, balance %d, reserved %d", x.Amount, balance(s, "1001"), s.Reserved("1001"))
	}
	if _, ok := s.CallQuota("q"); ok {
		t.Fatal("an ended call keeps its quota")
	}
}

// Calls that cannot be extended: refused, nothing changes.
func TestExtendCallRefusals(t *testing.T) {
	s := callState(t)
	quotaCall(t, s, "answered", "1001", "555", 60)
	mustApply(t, s, chunked(offnet("ringing", "1001", "555"), 60))
	mustApply(t, s, offnet("whole", "2001", "555")) // no chunk
	mustApply(t, s, &AnswerCall{ID: "whole", ConnectAt: t0})
	mustApply(t, s, chunked(offnet("ended", "1002", "555"), 60))
	mustApply(t, s, &EndCall{ID: "ended", DisconnectAt: t0, Cause: 487})
	before := contentsOf(s)
	for _, c := range []struct {
		cmd  *ExtendCall
		code ErrCode
	}{
		{&ExtendCall{ID: "nobody", Seq: 1}, CodeNotFound},
		{&ExtendCall{ID: "ended", Seq: 1}, CodeNotFound},
		{&ExtendCall{ID: "ringing", Seq: 1}, CodeConflict},
		{&ExtendCall{ID: "whole", Seq: 1}, CodeConflict},
		{&ExtendCall{ID: "", Seq: 1}, CodeInvalid},
		{&ExtendCall{ID: "answered", Seq: -1}, CodeInvalid},
	} {
		if r := apply(s, c.cmd); r.Err == nil || r.Err.Code != c.code {
			t.Errorf("%+v: got %v, want %s", c.cmd, r.Err, c.code)
		}
	}
	if !reflect.DeepEqual(contentsOf(s), before) {
		t.Fatal("a refused ExtendCall changed the state")
	}
}

// When the balance is held by other calls, an extension reserves nothing:
// the call is final at the end it has.
func TestExtendCallWithNothingLeft(t *testing.T) {
	s := callState(t)
	mustApply(t, s, &Topup{Account: "1001", Amount: -860_000, Key: "k", Now: t0}) // 0.14: two calls' first minute
	quotaCall(t, s, "a", "1001", "555", 60)
	quotaCall(t, s, "b", "1001", "555", 60)
	if r := apply(s, offnet("c", "1001", "555")); r.Err == nil || r.Err.Code != CodeInsufficientFunds {
		t.Fatalf("a third call with nothing left: %v", r.Err)
	}
	c := mustApply(t, s, &ExtendCall{ID: "a", Seq: 1}).Call
	if q := quotaOf(t, s, "a"); c.MaxDuration != 60 || !q.Final || q.Extensions != 1 || s.Reserved("1001") != 140_000 {
		t.Fatalf("extension with nothing left: %d s, quota %+v, reserved %d", c.MaxDuration, q, s.Reserved("1001"))
	}
	// Ending b frees what it did not use; a has been told it is final.
	mustApply(t, s, &EndCall{ID: "b", DisconnectAt: t0 + 20_000, Cause: 200})
	if s.Reserved("1001") != 70_000 || balance(s, "1001") != 140_000-30_000 {
		t.Fatalf("after b: reserved %d, balance %d", s.Reserved("1001"), balance(s, "1001"))
	}
	if r := apply(s, &ExtendCall{ID: "a", Seq: 2}); r.Err == nil || r.Err.Code != CodeConflict {
		t.Fatalf("a final call extended: %v", r.Err)
	}
}

// A postpaid account extends up to its credit limit; a blocked account
// is extended no more.
func TestExtendCallPostpaidAndBlocked(t *testing.T) {
	s := callState(t) // 2001: postpaid, 0.50 credit, 0 balance
	quotaCall(t, s, "p", "2001", "555", 300)
	c := mustApply(t, s, &ExtendCall{ID: "p", Seq: 1}).Call
	// 0.50 - 0.01 fee buys 490 s in all.
	if q := quotaOf(t, s, "p"); c.MaxDuration != 490 || !q.Final || s.Reserved("2001") != 500_000 {
		t.Fatalf("postpaid: %d s, quota %+v, reserved %d", c.MaxDuration, q, s.Reserved("2001"))
	}
	mustApply(t, s, &EndCall{ID: "p", DisconnectAt: t0 + 600_000, Cause: 200})
	if b := balance(s, "2001"); b != -500_000 {
		t.Fatalf("balance %d, want the credit limit used up exactly", b)
	}

	quotaCall(t, s, "b", "1002", "555", 60)
	mustApply(t, s, &UpdateAccount{ID: "1002", Patch: AccountPatch{Blocked: ptr(true)}})
	if c := mustApply(t, s, &ExtendCall{ID: "b", Seq: 1}).Call; c.MaxDuration != 60 || !quotaOf(t, s, "b").Final {
		t.Fatalf("blocked account extended to %d s", c.MaxDuration)
	}
}

// Every charge of the call is extended to one end: the one the accounts
// can pay for together. Here the callee's incoming tariff (60/60) limits
// it: 1002 has money for 2 minutes in all.
func TestExtendCallEveryCharge(t *testing.T) {
	s := callState(t)
	mustApply(t, s, &Topup{Account: "1002", Amount: -960_000, Key: "k", Now: t0}) // 0.04: two minutes at 0.02
	first := mustApply(t, s, chunked(start("q", "1001", "1002"), 90)).Call
	mustApply(t, s, &AnswerCall{ID: "q", ConnectAt: t0})
	// 1002 pays whole minutes: 90 s costs 2, all it has.
	if first.MaxDuration != 90 || first.Charges[1].Reserved != 40_000 {
		t.Fatalf("first chunk %+v", first)
	}
	c := mustApply(t, s, &ExtendCall{ID: "q", Seq: 1}).Call
	// 120 s is the furthest 1002 can pay (still two minutes); 1001 follows.
	if c.MaxDuration != 120 || c.Charges[0].MaxDuration != 120 || c.Charges[0].Reserved != 130_000 ||
		c.Charges[1].MaxDuration != 120 || !quotaOf(t, s, "q").Final {
		t.Fatalf("extended call %+v, quota %+v", c, quotaOf(t, s, "q"))
	}
}

// A call reserved by chunks is charged up to its end at most, even for a
// charge that holds more: the callee here pays one minute, the caller
// holds a 90 s chunk; cut late at 75 s, the caller pays 60 s.
func TestQuotaCallChargedToItsEnd(t *testing.T) {
	s := callState(t)
	mustApply(t, s, &Topup{Account: "1002", Amount: -980_000, Key: "k", Now: t0}) // 0.02: one minute at 0.02
	c := mustApply(t, s, chunked(start("q", "1001", "1002"), 90)).Call
	if c.MaxDuration != 60 || c.Charges[0].MaxDuration != 90 || !quotaOf(t, s, "q").Final {
		t.Fatalf("call %+v, quota %+v", c, quotaOf(t, s, "q"))
	}
	mustApply(t, s, &AnswerCall{ID: "q", ConnectAt: t0})
	x := mustApply(t, s, &EndCall{ID: "q", DisconnectAt: t0 + 75_000, Cause: 200}).XDR
	if x.Charges[0].Amount != 70_000 || x.Charges[1].Amount != 20_000 || balance(s, "1001") != 930_000 || balance(s, "1002") != 0 {
		t.Fatalf("xDR charges %+v; balances %d %d", x.Charges, balance(s, "1001"), balance(s, "1002"))
	}
}

// max_calls still bounds the calls of an account reserved by chunks.
func TestQuotaCallsKeepMaxCalls(t *testing.T) {
	s := callState(t)
	mustApply(t, s, &UpdateAccount{ID: "1001", Patch: AccountPatch{MaxCalls: ptr(2)}})
	quotaCall(t, s, "a", "1001", "555", 60)
	quotaCall(t, s, "b", "1001", "555", 60)
	if r := apply(s, chunked(offnet("c", "1001", "555"), 60)); r.Err == nil || r.Err.Code != CodeTooManyCalls {
		t.Fatalf("third call: %v", r.Err)
	}
}

// 20 calls of one prepaid balance, extended chunk by chunk in random
// order and ended at random times, some cut when the money runs out:
// the balance never drops below zero, every call is charged only what it
// used of what it held, the xDRs add up to what the balance lost, and
// nothing stays reserved. Two replicas applying the same commands (one
// restored from a snapshot half way) end identical.
func TestQuotaCallsShareOneBalance(t *testing.T) {
	const start, chunk = 12_000_000, 60 // 12.00 at 0.06/min (+0.01 a call)
	s, replica := callState(t), callState(t)
	rng := rand.New(rand.NewPCG(3, 4))
	var log []Command
	do := func(c Command) Result {
		log = append(log, c)
		r := apply(s, c)
		if r2 := apply(replica, c); !reflect.DeepEqual(r, r2) {
			t.Fatalf("%T: replicas answered %+v and %+v", c, r, r2)
		}
		return r
	}
	mustApply(t, s, &Topup{Account: "1001", Amount: start - 1_000_000, Key: "k", Now: t0})
	mustApply(t, replica, &Topup{Account: "1001", Amount: start - 1_000_000, Key: "k", Now: t0})
	live := map[string]int64{} // call -> when it is hung up (ms after t0), or 0 for "only when cut"
	for i := range 20 {
		id := fmt.Sprintf("c%02d", i)
		if r := do(chunked(offnet(id, "1001", "555"), chunk)); r.Err != nil {
			t.Fatal(r.Err)
		}
		do(&AnswerCall{ID: id, ConnectAt: t0})
		live[id] = 0
		if i%3 == 0 {
			live[id] = int64(30_000 + rng.IntN(400_000))
		}
	}
	var charged int64
	for now := int64(0); len(live) > 0; now += 5_000 {
		if now == 300_000 {
			replica = restored(t, snapshotBytes(t, replica))
		}
		ids := make([]string, 0, len(live))
		for id := range live {
			ids = append(ids, id)
		}
		rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		for _, id := range ids {
			c, _ := s.Call(id)
			q := quotaOf(t, s, id)
			end := int64(c.MaxDuration) * 1000
			hangup := live[id]
			switch {
			case hangup != 0 && now >= hangup || now >= end:
				at := t0 + min(now, end+700) // a cut comes a little late
				if hangup != 0 && hangup < end {
					at = t0 + hangup
				}
				x := do(&EndCall{ID: id, DisconnectAt: at, Cause: 200}).XDR
				if want := toBillingRate(c.Charges[0].Rate).Charge(min(x.Duration, c.MaxDuration)); x.Amount != want {
					t.Fatalf("%s lasted %d s (paid through %d): charged %d, want %d", id, x.Duration, c.MaxDuration, x.Amount, want)
				}
				charged += x.Amount
				delete(live, id)
			case end-now <= 15_000 && q.Extendable(c.MaxDuration):
				do(&ExtendCall{ID: id, Seq: q.Extensions + 1})
				if rng.IntN(4) == 0 {
					do(&ExtendCall{ID: id, Seq: q.Extensions + 1}) // a retry
				}
			}
			if b := balance(s, "1001"); b < 0 || s.Reserved("1001") > b {
				t.Fatalf("balance %d, reserved %d", b, s.Reserved("1001"))
			}
		}
	}
	if b := balance(s, "1001"); b+charged != start || s.Reserved("1001") != 0 {
		t.Fatalf("balance %d + charged %d != %d (reserved %d)", b, charged, start, s.Reserved("1001"))
	}
	if balance(s, "1001") > 70_000 {
		t.Errorf("%d left: the cut calls should have used the balance up", balance(s, "1001"))
	}
	if !reflect.DeepEqual(contentsOf(s), contentsOf(replica)) {
		t.Fatal("the replicas differ")
	}
	t.Logf("%d commands; charged %d of %d, %d left", len(log), charged, start, balance(s, "1001"))
}
