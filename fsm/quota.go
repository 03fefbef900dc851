package fsm

// Quota reservations: a call started with StartCall.Chunk reserves its
// money a chunk of call time at a time, not all its balance buys at
// setup, so many calls of one account share its balance (parallel prepaid
// calls, as RFC 4006 credit control grants quotas). The node running the
// call asks for the next chunk before the current one runs out
// (ExtendCall); when the money cannot pay a whole chunk the call gets
// what it can pay and is cut there. EndCall charges each call what it
// used and releases the rest.
//
// A call's quota (CallQuota) is kept beside the call, not in it: Call
// travels in Results between nodes of different builds during a rolling
// upgrade, and its layout stays the one every build decodes.

// CallQuota is how a call in progress reserves its money by chunks.
type CallQuota struct {
	Chunk      int // seconds of call time each reservation step pays for (StartCall.Chunk)
	MaxSeconds int // the longest the call may last (StartCall.MaxSeconds): no step reserves past it
	Extensions int // ExtendCall steps applied: the next one's Seq is Extensions+1
	// Final: a step found the money short of a whole chunk and reserved
	// what it could pay; the call's MaxDuration is where it is cut, and it
	// is extended no more.
	Final bool
}

// Extendable reports whether ExtendCall can still add time to a call
// with this quota that pays through maxDuration seconds.
func (q CallQuota) Extendable(maxDuration int) bool { return !q.Final && maxDuration < q.MaxSeconds }

// ExtendCall reserves the next chunk of an answered call reserved by
// chunks (StartCall.Chunk): each charge of the call is made to pay
// through the call's MaxDuration plus Chunk seconds (at most the quota's
// MaxSeconds), its account paying from what it can still spend: a prepaid
// account its balance less what its calls hold, a postpaid one that plus
// its credit limit, a blocked one nothing. When the accounts cannot pay a
// whole chunk, the call gets the furthest end they can pay for together
// (possibly no further than it had) and its quota becomes Final: the
// B2BUA cuts the call there. Many calls of one account share its balance
// this way; when it runs dry each of them ends at what it paid for.
//
// Idempotency: Seq numbers a call's extensions from 1. One the quota
// counts already (Seq ≤ Extensions) returns the call unchanged, so a
// retried ExtendCall, or the same extension asked for by the call's node
// and by its adopter, reserves once; a Seq past the next one is refused.
type ExtendCall struct {
	ID  string
	Seq int
}

func (*ExtendCall) Type() Type { return TypeExtendCall }

func (c *ExtendCall) apply(s *State) Result {
	if c.ID == "" || c.Seq < 1 {
		return refuse(CodeInvalid, "seq", "a call id and a positive seq are required")
	}
	call, ok := s.calls[c.ID]
	if !ok {
		if _, done := s.xdrByCall[c.ID]; done {
			return refuse(CodeNotFound, "id", "call %s has ended", c.ID)
		}
		return refuse(CodeNotFound, "id", "no call %s in progress", c.ID)
	}
	q, ok := s.quotas[c.ID]
	switch {
	case !ok:
		return refuse(CodeConflict, "id", "call %s reserved its whole length at setup: it has no chunks to extend", c.ID)
	case c.Seq <= q.Extensions:
		return callResult(call) // applied before
	case c.Seq > q.Extensions+1:
		return refuse(CodeConflict, "seq", "call %s has %d extensions: %d would skip one", c.ID, q.Extensions, c.Seq)
	case call.ConnectAt == 0:
		return refuse(CodeConflict, "id", "call %s is not answered: its first chunk runs from the answer", c.ID)
	case !q.Extendable(call.MaxDuration):
		return refuse(CodeConflict, "id", "call %s is at its end: it pays through %d s", c.ID, call.MaxDuration)
	}
	target := min(call.MaxDuration+q.Chunk, q.MaxSeconds)
	end := s.reachableEnd(call, target)
	next := call.clone()
	for i := range next.Charges {
		ch := &next.Charges[i]
		if ch.MaxDuration >= end {
			continue
		}
		through := toBillingRate(ch.Rate).Charge(end)
		if more := through - ch.Reserved; more != 0 {
			s.reserved[ch.Account] += more
		}
		ch.Reserved, ch.MaxDuration = through, end
	}
	next.MaxDuration = end
	nq := *q
	nq.Extensions = c.Seq
	nq.Final = end < target
	s.putCall(&next)
	s.quotas[c.ID] = &nq
	return callResult(&next)
}

// reachableEnd is the furthest end, in seconds after the answer, from the
// call's MaxDuration up to target, that the accounts of the call's
// charges can pay for together: a charge paying through end holds its
// rate's Charge(end). A charge costs no less for a longer call, so the
// ends they can pay for run from MaxDuration up to some top, which a
// binary search finds.
func (s *State) reachableEnd(call *Call, target int) int {
	lo, hi := call.MaxDuration, target // lo can be paid for: it is
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if s.canPayThrough(call, mid) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// canPayThrough reports whether each account charged by the call can hold
// what paying through end seconds adds to its reservations.
func (s *State) canPayThrough(call *Call, end int) bool {
	extra := map[string]int64{}
	for _, ch := range call.Charges {
		if ch.MaxDuration < end {
			extra[ch.Account] += toBillingRate(ch.Rate).Charge(end) - ch.Reserved
		}
	}
	for acct, more := range extra {
		if more > 0 && more > s.spendable(acct) {
			return false
		}
	}
	return true
}

// spendable is what an account can still reserve: its balance less what
// its calls hold, plus its credit limit when postpaid; nothing for a
// blocked or deleted account.
func (s *State) spendable(id string) int64 {
	a, ok := s.accounts[id]
	if !ok || a.Blocked {
		return 0
	}
	v := a.Balance - s.reserved[id]
	if a.Billing == Postpaid {
		v += a.CreditLimit
	}
	return v
}

// StartCallV1 is StartCall as builds before quota reservations knew it
// (type 0x0c): no Chunk, so the call reserves what the money buys up to
// MaxSeconds at setup. Logs that hold it replay as they were applied. A
// current build proposes it for a call without a chunk, and for every
// call while a voter may run such a build (a rolling upgrade).
type StartCallV1 struct {
	ID            string
	Direction     string
	Account       string
	CLI           string
	CLD           string
	CLDTranslated string
	Charges       []ChargeRequest
	MaxSeconds    int
	Now           int64
	Node          string
	Vendor        string
	Connection    string
	VendorTariff  string
}

func (*StartCallV1) Type() Type { return TypeStartCallV1 }

func (c *StartCallV1) apply(s *State) Result {
	return (&StartCall{ID: c.ID, Direction: c.Direction, Account: c.Account, CLI: c.CLI, CLD: c.CLD,
		CLDTranslated: c.CLDTranslated, Charges: c.Charges, MaxSeconds: c.MaxSeconds, Now: c.Now, Node: c.Node,
		Vendor: c.Vendor, Connection: c.Connection, VendorTariff: c.VendorTariff}).apply(s)
}

// V1 returns c as StartCallV1, without its Chunk: the whole call reserved
// at setup.
func (c *StartCall) V1() *StartCallV1 {
	return &StartCallV1{ID: c.ID, Direction: c.Direction, Account: c.Account, CLI: c.CLI, CLD: c.CLD,
		CLDTranslated: c.CLDTranslated, Charges: c.Charges, MaxSeconds: c.MaxSeconds, Now: c.Now, Node: c.Node,
		Vendor: c.Vendor, Connection: c.Connection, VendorTariff: c.VendorTariff}
}
