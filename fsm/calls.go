package fsm

import (
	"fmt"
	"slices"

	"github.com/troika-sip/troika/billing"
)

// Call directions, as xDRs report them.
const (
	DirOutgoing   = "outgoing"    // the caller's account pays by its outgoing tariff
	DirIncoming   = "incoming"    // the called account pays by its incoming tariff
	DirFromVendor = "from-vendor" // a vendor handed the call in; the called account pays by its incoming tariff
)

// Roles of a charge within a call.
const (
	RoleOutgoing = "outgoing" // rated by the account's tariff_out
	RoleIncoming = "incoming" // rated by the account's tariff_in; no tariff_in: free
)

// ChargeRequest asks StartCall to bill one account for the call.
type ChargeRequest struct {
	Account string
	Role    string // RoleOutgoing or RoleIncoming
	Number  string // the destination rated, e.g. the dialed number
}

// Charge is one account's billing session inside a call: the rate fixed at
// setup and the money held for it.
type Charge struct {
	Account     string
	Role        string
	Number      string
	Tariff      string
	Rate        Rate
	Reserved    int64 // micro-units held against the balance until the call ends
	MaxDuration int   // seconds the reservation pays for
}

// Leg is one side of an answered call, as the B2BUA needs it to send
// in-dialog requests (BYE, re-INVITE) from any node.
type Leg struct {
	Role         string // "caller" or "callee"
	CallID       string
	LocalTag     string
	RemoteTag    string
	LocalURI     string // our From (or To) as this leg sees it
	RemoteURI    string
	RemoteTarget string   // the peer's Contact URI
	RouteSet     []string // Record-Route, in the order requests use them
	Ingress      string   // our socket on this leg, e.g. "udp:127.0.0.2:5070"
	Destination  string   // ip:port requests go to
	Transport    string
	LocalCSeq    uint32
	RemoteCSeq   uint32
}

// Call is a call in progress: its billing sessions from setup, and once
// answered the dialog state of both legs.
type Call struct {
	ID            string // the caller leg's Call-ID
	Direction     string // DirOutgoing, DirIncoming or DirFromVendor
	Account       string // the account the xDR is filed under
	CLI           string
	CLD           string   // as dialed
	CLDTranslated string   // after translation rules (vendor calls)
	Parties       []string // accounts taking part (max_calls counts these)
	Charges       []Charge
	MaxDuration   int // seconds: the shortest the charges' reservations pay for, at most StartCall.MaxSeconds
	SetupAt       int64
	ConnectAt     int64  // 0 until answered
	Node          string // the node running the call: the one that started it, or its adopter (AdoptCall)
	Legs          []Leg
	Vendor        string
	Connection    string
	VendorTariff  string
	VendorRate    *Rate
	Redirects     []Redirect
}

// Redirect records a 3xx target the B2BUA acted on and what it decided.
type Redirect struct {
	Target   string
	Decision string // e.g. "trusted", "new_call_authorization", "rejected"
}

// XDRCharge is what one charge of a finished call cost.
type XDRCharge struct {
	Account string
	Role    string
	Number  string
	Tariff  string
	Prefix  string
	Seconds int   // charged seconds after intervals and free seconds
	Amount  int64 // micro-units debited
}

// XDR is the record of one finished (or failed) call.
type XDR struct {
	Seq            uint64 // unique, increasing: the xDR id
	CallID         string
	Account        string
	Direction      string
	CLI            string
	CLD            string
	CLDTranslated  string
	SetupAt        int64
	ConnectAt      int64
	DisconnectAt   int64
	Duration       int // seconds, as rated (0 when not answered)
	Charges        []XDRCharge
	Amount         int64 // the total of Charges
	Cause          int   // SIP status that ended the call (200 for a normal hang-up after answer)
	CauseText      string
	DisconnectedBy string // caller, callee, timer, system
	Vendor         string
	Connection     string
	VendorCost     int64
	Redirects      []Redirect
	Node           string // the node that ran the call to its end (its adopter, if adopted)
}

// StartCall authorizes a call and reserves money for each charge: for a
// prepaid account as much as its available balance buys up to MaxSeconds
// (with Chunk, up to Chunk seconds: a quota, quota.go); for a postpaid one
// as much as its credit limit allows. Everything is decided here, in
// Apply, from the replicated balances, so concurrent calls of one account
// can never overspend it. Applying it again for a call that exists returns
// the call unchanged.
type StartCall struct {
	ID            string
	Direction     string
	Account       string
	CLI           string
	CLD           string
	CLDTranslated string
	Charges       []ChargeRequest
	MaxSeconds    int // longest call the switch allows (e.g. 4 h)
	Now           int64
	Node          string
	Vendor        string
	Connection    string
	VendorTariff  string
	// Chunk is the seconds of call time each reservation of the call pays
	// for: at setup, the first Chunk seconds after the answer (connect fee
	// included); ExtendCall adds a chunk at a time. 0: the call reserves
	// what the money buys up to MaxSeconds at setup and is never extended
	// (as StartCallV1).
	Chunk int
}

func (*StartCall) Type() Type { return TypeStartCall }

// Refusal codes of StartCall, mapped to SIP by the B2BUA.
const (
	CodeBlocked           ErrCode = "blocked"            // 403
	CodeNoRate            ErrCode = "no_rate"            // 403: the account may not call this destination
	CodeInsufficientFunds ErrCode = "insufficient_funds" // 402
	CodeTooManyCalls      ErrCode = "too_many_calls"     // 403 (486 in some networks)
)

func (c *StartCall) apply(s *State) Result {
	if old, ok := s.calls[c.ID]; ok {
		return callResult(old)
	}
	if _, done := s.xdrByCall[c.ID]; done {
		return refuse(CodeConflict, "id", "call %s already ended", c.ID)
	}
	if c.ID == "" || c.MaxSeconds <= 0 {
		return refuse(CodeInvalid, "id", "a call needs an id and a positive MaxSeconds")
	}
	if c.Chunk < 0 {
		return refuse(CodeInvalid, "chunk", "cannot be negative")
	}
	// What each charge reserves now: the first chunk, or the whole call.
	reserveFor := c.MaxSeconds
	if c.Chunk > 0 {
		reserveFor = min(c.Chunk, c.MaxSeconds)
	}
	call := &Call{
		ID: c.ID, Direction: c.Direction, Account: c.Account, CLI: c.CLI, CLD: c.CLD, CLDTranslated: c.CLDTranslated,
		SetupAt: c.Now, Node: c.Node, Vendor: c.Vendor, Connection: c.Connection, VendorTariff: c.VendorTariff,
		MaxDuration: c.MaxSeconds,
	}
	if c.VendorTariff != "" {
		t, ok := s.tariffs[c.VendorTariff]
		if !ok {
			return refuse(CodeNoRate, "vendor_tariff", "no tariff %s", c.VendorTariff)
		}
		r, err := billing.Lookup(toBillingRates(t.Rates), numberFor(c.CLDTranslated, c.CLD))
		if err != nil {
			return refuse(CodeNoRate, "vendor_tariff", "tariff %s has no rate for %s", c.VendorTariff, numberFor(c.CLDTranslated, c.CLD))
		}
		vr := fromBillingRate(r)
		call.VendorRate = &vr
	}
	held := map[string]int64{} // reservations of this call per account, for accounts charged twice
	for i, req := range c.Charges {
		ch, charged, r := s.authorizeCharge(req, fmt.Sprintf("charges[%d]", i), reserveFor, -held[req.Account], false)
		if r.Err != nil {
			return r
		}
		if !slices.Contains(call.Parties, req.Account) {
			call.Parties = append(call.Parties, req.Account)
		}
		if !charged {
			continue // incoming calls are free for accounts without tariff_in
		}
		held[ch.Account] += ch.Reserved
		call.Charges = append(call.Charges, ch)
		call.MaxDuration = min(call.MaxDuration, ch.MaxDuration)
	}
	s.putCall(call)
	if c.Chunk > 0 {
		s.quotas[c.ID] = &CallQuota{Chunk: c.Chunk, MaxSeconds: c.MaxSeconds, Final: call.MaxDuration < reserveFor}
	}
	for _, ch := range call.Charges {
		s.reserved[ch.Account] += ch.Reserved
	}
	for _, acct := range call.Parties {
		s.activeCalls[acct]++
	}
	return callResult(call)
}

// authorizeCharge authorizes and rates one charge of a call, for
// StartCall and RedirectCall alike. The account must exist, not be
// blocked, have room under max_calls unless party (it takes part in the
// call already), and have a rate for the number in the tariff of the
// charge's role. The reservation is what its available money buys up to
// maxSeconds: the balance less what its calls hold, plus own (money this
// very command holds, negative, or releases, positive, for the account),
// plus the credit limit when postpaid. charged is false, with nothing
// reserved, for an incoming charge of an account without tariff_in: free.
// Refusals name field (e.g. "charges[0]") in their field.
func (s *State) authorizeCharge(req ChargeRequest, field string, maxSeconds int, own int64, party bool) (ch Charge, charged bool, r Result) {
	a, ok := s.accounts[req.Account]
	if !ok {
		return Charge{}, false, refuse(CodeNotFound, field+".account", "no account %s", req.Account)
	}
	if a.Blocked {
		return Charge{}, false, refuse(CodeBlocked, field+".account", "account %s is blocked", a.ID)
	}
	if !party && a.MaxCalls > 0 && s.activeCalls[a.ID] >= a.MaxCalls {
		return Charge{}, false, refuse(CodeTooManyCalls, field+".account", "account %s already has %d calls (max_calls)", a.ID, a.MaxCalls)
	}
	tariffID := a.TariffOut
	if req.Role == RoleIncoming {
		tariffID = a.TariffIn
		if tariffID == "" {
			return Charge{}, false, Result{}
		}
	} else if req.Role != RoleOutgoing {
		return Charge{}, false, refuse(CodeInvalid, field+".role", "unknown role %q", req.Role)
	}
	if tariffID == "" {
		return Charge{}, false, refuse(CodeNoRate, field+".account", "account %s has no %s tariff", a.ID, req.Role)
	}
	t, ok := s.tariffs[tariffID]
	if !ok {
		return Charge{}, false, refuse(CodeNoRate, field+".account", "tariff %s of account %s is missing", tariffID, a.ID)
	}
	rate, err := billing.Lookup(toBillingRates(t.Rates), req.Number)
	if err != nil {
		return Charge{}, false, refuse(CodeNoRate, field+".number", "tariff %s has no rate for %s", tariffID, req.Number)
	}
	available := a.Balance - s.reserved[a.ID] + own
	if a.Billing == Postpaid {
		available += a.CreditLimit
	}
	maxDur := rate.MaxDuration(max(available, 0), maxSeconds)
	if maxDur <= 0 {
		return Charge{}, false, refuse(CodeInsufficientFunds, field+".account", "account %s cannot pay for a call to %s", a.ID, req.Number)
	}
	return Charge{Account: a.ID, Role: req.Role, Number: req.Number, Tariff: tariffID, Rate: fromBillingRate(rate),
		Reserved: rate.Charge(maxDur), MaxDuration: maxDur}, true, Result{}
}

func numberFor(translated, dialed string) string {
	if translated != "" {
		return translated
	}
	return dialed
}

func callResult(c *Call) Result {
	cp := c.clone()
	return Result{Call: &cp}
}

// AnswerCall records that the call was answered and the dialog state of
// both legs. Applying it again changes nothing.
type AnswerCall struct {
	ID        string
	ConnectAt int64
	Legs      []Leg
}

func (*AnswerCall) Type() Type { return TypeAnswerCall }

func (c *AnswerCall) apply(s *State) Result {
	old, ok := s.calls[c.ID]
	if !ok {
		return refuse(CodeNotFound, "id", "no call %s in progress", c.ID)
	}
	if old.ConnectAt != 0 {
		return callResult(old)
	}
	call := old.clone()
	call.ConnectAt = c.ConnectAt
	call.Legs = cloneLegs(c.Legs)
	s.putCall(&call)
	return callResult(&call)
}

// EndCall finishes a call in one step: it debits each charge for the
// rated duration, releases the reservations, and files exactly one xDR.
// Applying it again, or for a call already ended, returns that xDR and
// changes nothing.
type EndCall struct {
	ID             string
	DisconnectAt   int64
	Cause          int
	CauseText      string
	DisconnectedBy string
}

func (*EndCall) Type() Type { return TypeEndCall }

func (c *EndCall) apply(s *State) Result {
	call, ok := s.calls[c.ID]
	if !ok {
		if seq, done := s.xdrByCall[c.ID]; done {
			if x, ok := s.xdrs.get(seq); ok {
				cp := x.clone()
				return Result{XDR: &cp}
			}
			return Result{} // ended long ago and trimmed
		}
		return refuse(CodeNotFound, "id", "no call %s in progress", c.ID)
	}
	duration := 0
	if call.ConnectAt != 0 && c.DisconnectAt > call.ConnectAt {
		duration = int((c.DisconnectAt - call.ConnectAt + 500) / 1000) // nearest second
	}
	s.xdrSeq++
	x := &XDR{
		Seq: s.xdrSeq, CallID: call.ID, Account: call.Account, Direction: call.Direction,
		CLI: call.CLI, CLD: call.CLD, CLDTranslated: call.CLDTranslated,
		SetupAt: call.SetupAt, ConnectAt: call.ConnectAt, DisconnectAt: c.DisconnectAt,
		Cause: c.Cause, CauseText: c.CauseText, DisconnectedBy: c.DisconnectedBy,
		Vendor: call.Vendor, Connection: call.Connection, Redirects: cloneRedirects(call.Redirects), Node: call.Node,
	}
	if call.ConnectAt != 0 {
		x.Duration = duration
		if call.VendorRate != nil {
			x.VendorCost = toBillingRate(*call.VendorRate).Charge(duration)
		}
	}
	// A call reserved by chunks is cut at its MaxDuration: no charge pays
	// past it, even one that holds more (a partial last chunk of another
	// charge set the call's end).
	billable := duration
	if _, quota := s.quotas[c.ID]; quota {
		billable = min(duration, call.MaxDuration)
	}
	for _, ch := range call.Charges {
		s.reserved[ch.Account] -= ch.Reserved
		if s.reserved[ch.Account] == 0 {
			delete(s.reserved, ch.Account)
		}
		xc := XDRCharge{Account: ch.Account, Role: ch.Role, Number: ch.Number, Tariff: ch.Tariff, Prefix: ch.Rate.Prefix}
		if call.ConnectAt != 0 {
			// The switch cuts a call at MaxDuration; seconds past it are
			// its own lateness, never the customer's debt.
			d := min(billable, ch.MaxDuration)
			r := toBillingRate(ch.Rate)
			xc.Seconds = r.ChargedSeconds(d)
			xc.Amount = min(r.Charge(d), ch.Reserved)
		}
		if xc.Amount > 0 {
			if a, ok := s.accounts[ch.Account]; ok {
				na := a.clone()
				na.Balance -= xc.Amount
				s.accounts[na.ID] = &na
			}
		}
		x.Charges = append(x.Charges, xc)
		x.Amount += xc.Amount
	}
	for _, acct := range call.Parties {
		if s.activeCalls[acct]--; s.activeCalls[acct] <= 0 {
			delete(s.activeCalls, acct)
		}
	}
	s.dropCall(c.ID)
	delete(s.quotas, c.ID)
	s.xdrs.add(x)
	s.xdrByCall[x.CallID] = x.Seq
	cp := x.clone()
	return Result{XDR: &cp}
}

// Topup adds money to (or, negative, takes it from) an account's balance,
// as a recorded transaction. Key makes it idempotent: a second Topup with
// the same key changes nothing.
type Topup struct {
	Account string
	Amount  int64
	Key     string
	Now     int64
	Note    string
}

func (*Topup) Type() Type { return TypeTopup }

// TopupV1 is Topup as builds before the credit rule applied it (type 0x0f):
// a debit of a postpaid account was not bounded by its credit limit. Logs
// that hold it replay as they were applied.
type TopupV1 Topup

func (*TopupV1) Type() Type { return TypeTopupV1 }

func (c *TopupV1) apply(s *State) Result { return (*Topup)(c).applyWith(s, false) }

func (c *Topup) apply(s *State) Result { return c.applyWith(s, true) }

// applyWith applies a top-up; creditRule: a debit may not take what the
// account can spend (its balance, plus its credit limit when postpaid)
// below what its calls hold.
func (c *Topup) applyWith(s *State, creditRule bool) Result {
	if c.Key == "" || len(c.Key) > 128 {
		return refuse(CodeInvalid, "key", "an idempotency key of 1-128 characters is required")
	}
	if _, done := s.txKeys[c.Key]; done && !reappliesTopup() { // the hook: a deliberately broken build only, chaosbroken_bank.go
		a, _ := s.accounts[c.Account]
		if a == nil {
			return Result{}
		}
		return accountResult(a)
	}
	a, ok := s.accounts[c.Account]
	if !ok {
		return refuse(CodeNotFound, "account", "no account %s", c.Account)
	}
	if c.Amount == 0 || c.Amount > billing.MaxAmount || c.Amount < -billing.MaxAmount {
		return refuse(CodeInvalid, "amount", "must be non-zero and at most %s", billing.FormatMoney(billing.MaxAmount))
	}
	na := a.clone()
	na.Balance += c.Amount
	if na.Billing == Prepaid && na.Balance-s.reserved[na.ID] < 0 {
		return refuse(CodeInsufficientFunds, "amount", "would leave account %s's prepaid balance below what its calls hold", a.ID)
	}
	if creditRule && c.Amount < 0 && na.Billing == Postpaid && na.Balance+na.CreditLimit-s.reserved[na.ID] < 0 {
		return refuse(CodeInsufficientFunds, "amount", "would take account %s past its credit limit of %s: raise credit_limit first",
			a.ID, billing.FormatMoney(na.CreditLimit))
	}
	if na.Balance > billing.MaxAmount {
		return refuse(CodeInvalid, "amount", "balance would exceed %s", billing.FormatMoney(billing.MaxAmount))
	}
	s.accounts[na.ID] = &na
	s.txKeys[c.Key] = c.Now
	return accountResult(&na)
}

// TrimRecords bounds the stored history: xDRs beyond MaxXDRs (oldest
// first) and idempotency keys older than KeepKeysUntil are dropped. The
// leader proposes it; xDRs should have been exported before.
type TrimRecords struct {
	MaxXDRs       int
	KeepKeysAfter int64 // unix ms: keys applied before it are forgotten
}

func (*TrimRecords) Type() Type { return TypeTrimRecords }

func (c *TrimRecords) apply(s *State) Result {
	if c.MaxXDRs < 1 {
		return refuse(CodeInvalid, "max_xdrs", "must be positive")
	}
	n := 0
	for s.xdrs.len() > c.MaxXDRs {
		x := s.xdrs.popOldest()
		if s.xdrByCall[x.CallID] == x.Seq {
			delete(s.xdrByCall, x.CallID)
		}
		n++
	}
	for k, at := range s.txKeys {
		if at < c.KeepKeysAfter {
			delete(s.txKeys, k)
		}
	}
	return Result{Purged: n}
}

func toBillingRates(rs []Rate) []billing.Rate {
	out := make([]billing.Rate, len(rs))
	for i, r := range rs {
		out[i] = toBillingRate(r)
	}
	return out
}

func toBillingRate(r Rate) billing.Rate {
	return billing.Rate{Prefix: r.Prefix, PerMinute: r.PerMinute, ConnectFee: r.ConnectFee,
		FirstInterval: r.FirstInterval, NextInterval: r.NextInterval, FreeSeconds: r.FreeSeconds}
}

func fromBillingRate(r billing.Rate) Rate {
	return Rate{Prefix: r.Prefix, PerMinute: r.PerMinute, ConnectFee: r.ConnectFee,
		FirstInterval: r.FirstInterval, NextInterval: r.NextInterval, FreeSeconds: r.FreeSeconds}
}
