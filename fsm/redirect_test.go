package fsm

import (
	"reflect"
	"testing"

	"github.com/troika-sip/troika/billing"
)

// redirectState is callState plus account 800 (prepaid 10.00, tariff_out
// "out", tariff_in "in") and a call c1 from 1001 to 800: 1001 holds 1.00
// for 990 s, 800 holds 0.02/min for 14400 s (4.80).
func redirectState(t *testing.T) *State {
	t.Helper()
	s := callState(t)
	mustApply(t, s, &CreateAccount{Now: t0, Account: Account{ID: "800", Credentials: creds("800", "p"), Billing: Prepaid, Balance: 10_000_000,
		TariffOut: "out", TariffIn: "in"}})
	c := mustApply(t, s, start("c1", "1001", "800")).Call
	if c.MaxDuration != 990 || s.Reserved("800") != 4_800_000 {
		t.Fatalf("call %+v, 800 reserved %d", c, s.Reserved("800"))
	}
	return s
}

func newAuth(index int, number string) *RedirectCall {
	return &RedirectCall{ID: "c1", Index: index, Target: "sip:" + number + "@198.51.100.7", Decision: billing.DecisionNewAuth,
		Charge: &ChargeRequest{Account: "800", Role: RoleOutgoing, Number: number}, MaxSeconds: 14400}
}

func record(index int, target, decision string) *RedirectCall {
	return &RedirectCall{ID: "c1", Index: index, Target: target, Decision: decision, MaxSeconds: 14400}
}

func apply(s *State, c Command) Result {
	data, err := Encode(c)
	if err != nil {
		panic(err)
	}
	r, err := s.Apply(data)
	if err != nil {
		panic(err)
	}
	return r
}

// Records are appended in order; replaying one changes nothing; another
// record at a taken index, or a gap, is refused.
func TestRedirectCallRecords(t *testing.T) {
	s := redirectState(t)
	trusted := record(0, "sip:12035554433@193.148.210.22", billing.DecisionTrusted)
	c := mustApply(t, s, trusted).Call
	if !reflect.DeepEqual(c.Redirects, []Redirect{{"sip:12035554433@193.148.210.22", "trusted"}}) || c.MaxDuration != 990 || len(c.Charges) != 2 {
		t.Fatalf("call %+v", c)
	}
	if again := mustApply(t, s, trusted).Call; !reflect.DeepEqual(again, c) {
		t.Fatalf("replay changed the call: %+v", again)
	}
	if r := apply(s, record(0, "sip:x@192.0.2.1", billing.DecisionLoop)); r.Err == nil || r.Err.Code != CodeConflict {
		t.Errorf("other record at a taken index: %+v", r.Err)
	}
	if r := apply(s, record(2, "sip:x@192.0.2.1", billing.DecisionLoop)); r.Err == nil || r.Err.Code != CodeConflict {
		t.Errorf("gap: %+v", r.Err)
	}
	mustApply(t, s, record(1, "sip:x@192.0.2.1", billing.DecisionLoop))
	x := mustApply(t, s, &EndCall{ID: "c1", DisconnectAt: t0 + 1000, Cause: 480}).XDR
	if len(x.Redirects) != 2 || x.Redirects[1].Decision != billing.DecisionLoop || x.Amount != 0 {
		t.Fatalf("xdr %+v", x)
	}
	if r := apply(s, record(2, "sip:y@192.0.2.1", billing.DecisionLoop)); r.Err == nil || r.Err.Code != CodeNotFound {
		t.Errorf("record for an ended call: %+v", r.Err)
	}
}

// A new authorization reserves like StartCall, shortens the call, and is
// released by the next record; the one that is answered is debited at the
// end by the account's outgoing tariff.
func TestRedirectCallNewAuthorization(t *testing.T) {
	s := redirectState(t)
	// 999 costs 6.00 a minute in 60 s steps: 10.00 - 4.80 held buys 0 whole
	// minutes: refused, and nothing changes.
	before, _ := s.Call("c1")
	if r := apply(s, newAuth(0, "9995551234")); r.Err == nil || r.Err.Code != CodeInsufficientFunds {
		t.Fatalf("want insufficient funds, got %+v", r.Err)
	}
	if after, _ := s.Call("c1"); !reflect.DeepEqual(after, before) || s.Reserved("800") != 4_800_000 {
		t.Fatalf("a refusal changed the call: %+v", after)
	}
	mustApply(t, s, record(0, "sip:9995551234@198.51.100.7", billing.DecisionNewAuthRefused))

	// 1203... by the "" rate: 0.01 fee + 0.06/min per second: 5.20 left
	// buys 5190 s.
	c := mustApply(t, s, newAuth(1, "12035554433")).Call
	ch := c.Charges[len(c.Charges)-1]
	if len(c.Charges) != 3 || ch.Account != "800" || ch.Role != RoleOutgoing || ch.Number != "12035554433" || ch.Tariff != "out" ||
		ch.MaxDuration != 5190 || ch.Reserved != 5_200_000 || c.MaxDuration != 990 {
		t.Fatalf("call %+v", c)
	}
	if s.Reserved("800") != 10_000_000 {
		t.Fatalf("800 reserved %d", s.Reserved("800"))
	}
	if again := mustApply(t, s, newAuth(1, "12035554433")).Call; !reflect.DeepEqual(again, c) || s.Reserved("800") != 10_000_000 {
		t.Fatal("replayed authorization reserved again")
	}
	// Its leg failed: the next target's record releases it.
	c = mustApply(t, s, record(2, "sip:12065551201@195.111.134.55", billing.DecisionTrusted)).Call
	if len(c.Charges) != 2 || s.Reserved("800") != 4_800_000 || c.MaxDuration != 990 {
		t.Fatalf("charge not released: %+v, reserved %d", c, s.Reserved("800"))
	}
	// A second authorization, answered: debited by the outgoing tariff.
	c = mustApply(t, s, newAuth(3, "12065551201")).Call
	if len(c.Charges) != 3 || s.Reserved("800") != 10_000_000 {
		t.Fatalf("call %+v", c)
	}
	mustApply(t, s, &AnswerCall{ID: "c1", ConnectAt: t0 + 1000})
	if r := apply(s, record(4, "sip:x@192.0.2.1", billing.DecisionTrusted)); r.Err == nil || r.Err.Code != CodeConflict {
		t.Errorf("record after the answer: %+v", r.Err)
	}
	x := mustApply(t, s, &EndCall{ID: "c1", DisconnectAt: t0 + 1000 + 30_000, Cause: 200}).XDR
	// 30 s: 1001 pays 0.01 + 0.03; 800 pays 1 minute incoming (0.02) and
	// 0.01 + 0.03 outgoing.
	if len(x.Charges) != 3 || x.Charges[2].Amount != 40_000 || x.Charges[1].Amount != 20_000 || x.Amount != 100_000 {
		t.Fatalf("xdr %+v", x)
	}
	if balance(s, "800") != 10_000_000-60_000 || s.Reserved("800") != 0 || s.Reserved("1001") != 0 {
		t.Fatalf("800 balance %d reserved %d", balance(s, "800"), s.Reserved("800"))
	}
	if len(x.Redirects) != 4 || x.Redirects[3].Decision != billing.DecisionNewAuth {
		t.Fatalf("redirects %+v", x.Redirects)
	}
}

// The shortest reservation bounds the call; releasing it gives the time
// back.
func TestRedirectCallMaxDuration(t *testing.T) {
	s := redirectState(t)
	mustApply(t, s, &UpdateAccount{ID: "800", Patch: AccountPatch{TariffIn: ptr("")}})
	mustApply(t, s, &EndCall{ID: "c1", DisconnectAt: t0, Cause: 487})
	mustApply(t, s, start("c1b", "2001", "800")) // postpaid caller: 0.50 credit at 0.06/min
	c, _ := s.Call("c1b")
	base := c.MaxDuration
	// 800 has 10.00 and pays 6.00/min to 999: one minute.
	r := mustApply(t, s, &RedirectCall{ID: "c1b", Target: "sip:999@h", Decision: billing.DecisionNewAuth, MaxSeconds: 14400,
		Charge: &ChargeRequest{Account: "800", Role: RoleOutgoing, Number: "999"}})
	if r.Call.MaxDuration != 60 || base <= 60 {
		t.Fatalf("max duration %d (was %d)", r.Call.MaxDuration, base)
	}
	r = mustApply(t, s, &RedirectCall{ID: "c1b", Index: 1, Target: "sip:1@h", Decision: billing.DecisionRejected, MaxSeconds: 14400})
	if r.Call.MaxDuration != base || s.Reserved("800") != 0 {
		t.Fatalf("max duration %d, want %d back; 800 reserved %d", r.Call.MaxDuration, base, s.Reserved("800"))
	}
}

// A new authorization for an account outside the call makes it a party,
// subject to its max_calls; a blocked account is refused.
func TestRedirectCallParties(t *testing.T) {
	s := redirectState(t)
	mustApply(t, s, &UpdateAccount{ID: "1002", Patch: AccountPatch{MaxCalls: ptr(1)}})
	mustApply(t, s, start("busy", "2001", "1002"))
	other := &RedirectCall{ID: "c1", Target: "sip:44@h", Decision: billing.DecisionNewAuth, MaxSeconds: 14400,
		Charge: &ChargeRequest{Account: "1002", Role: RoleOutgoing, Number: "44"}}
	if r := apply(s, other); r.Err == nil || r.Err.Code != CodeTooManyCalls {
		t.Fatalf("want too many calls, got %+v", r.Err)
	}
	mustApply(t, s, &EndCall{ID: "busy", DisconnectAt: t0, Cause: 487})
	c := mustApply(t, s, other).Call
	if !reflect.DeepEqual(c.Parties, []string{"1001", "800", "1002"}) {
		t.Fatalf("parties %v", c.Parties)
	}
	if r := apply(s, start("busy2", "2001", "1002")); r.Err == nil || r.Err.Code != CodeTooManyCalls {
		t.Fatalf("1002 in a call through a redirect: %+v", r.Err)
	}
	mustApply(t, s, &EndCall{ID: "c1", DisconnectAt: t0, Cause: 480})
	mustApply(t, s, start("busy2", "2001", "1002"))

	blocked := true
	mustApply(t, s, start("c2", "1001", "800"))
	mustApply(t, s, &UpdateAccount{ID: "800", Patch: AccountPatch{Blocked: &blocked}})
	r := apply(s, &RedirectCall{ID: "c2", Target: "sip:1@h", Decision: billing.DecisionNewAuth, MaxSeconds: 14400,
		Charge: &ChargeRequest{Account: "800", Role: RoleOutgoing, Number: "1"}})
	if r.Err == nil || r.Err.Code != CodeBlocked {
		t.Fatalf("blocked account: %+v", r.Err)
	}
}

func TestRedirectCallInvalid(t *testing.T) {
	s := redirectState(t)
	cases := map[string]*RedirectCall{
		"no id":          {Target: "sip:a@h", Decision: "trusted", MaxSeconds: 1},
		"no target":      {ID: "c1", Decision: "trusted", MaxSeconds: 1},
		"bad decision":   {ID: "c1", Target: "sip:a@h", Decision: "Trusted!", MaxSeconds: 1},
		"charge":         {ID: "c1", Target: "sip:a@h", Decision: "trusted", MaxSeconds: 1, Charge: &ChargeRequest{Account: "800", Role: RoleOutgoing, Number: "1"}},
		"no charge":      {ID: "c1", Target: "sip:a@h", Decision: billing.DecisionNewAuth, MaxSeconds: 1},
		"no number":      {ID: "c1", Target: "sip:a@h", Decision: billing.DecisionNewAuth, MaxSeconds: 1, Charge: &ChargeRequest{Account: "800", Role: RoleOutgoing}},
		"bad role":       {ID: "c1", Target: "sip:a@h", Decision: billing.DecisionNewAuth, MaxSeconds: 1, Charge: &ChargeRequest{Account: "800", Role: "x", Number: "1"}},
		"no max seconds": {ID: "c1", Target: "sip:a@h", Decision: "trusted"},
		"negative index": {ID: "c1", Index: -1, Target: "sip:a@h", Decision: "trusted", MaxSeconds: 1},
	}
	for name, c := range cases {
		if r := apply(s, c); r.Err == nil || r.Err.Code != CodeInvalid {
			t.Errorf("%s: %+v", name, r.Err)
		}
	}
	for i := 0; i < MaxCallRedirects; i++ {
		mustApply(t, s, record(i, "sip:a@h", billing.DecisionLoop))
	}
	if r := apply(s, record(MaxCallRedirects, "sip:a@h", billing.DecisionLoop)); r.Err == nil || r.Err.Code != CodeInvalid {
		t.Errorf("record past the limit: %+v", r.Err)
	}
}

// A snapshot taken with a redirect charge pending restores the same
// reservations.
func TestRedirectCallSnapshot(t *testing.T) {
	s := redirectState(t)
	mustApply(t, s, newAuth(0, "12035554433"))
	fresh := restored(t, snapshotBytes(t, s))
	if fresh.Reserved("800") != s.Reserved("800") || !reflect.DeepEqual(fresh.Calls(), s.Calls()) {
		t.Fatalf("restored reserved %d, want %d", fresh.Reserved("800"), s.Reserved("800"))
	}
}
