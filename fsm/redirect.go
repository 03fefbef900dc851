package fsm

import (
	"regexp"
	"slices"

	"github.com/troika-sip/troika/billing"
)

// MaxCallRedirects bounds the redirect records of one call (and so of its
// xDR). The B2BUA stops recording dropped targets well before it.
const MaxCallRedirects = 64

var decisionPattern = regexp.MustCompile(`^[a-z][a-z_]{0,63}$`)

// RedirectCall records, for a call not yet answered, what the B2BUA did
// with one target it did not get from the called account's own delivery:
// a 3xx Contact (trusted, new_call_authorization, rejected, loop, ...) or
// a follow-me entry (follow_me). The record lands in Call.Redirects and,
// when the call ends, in its xDR.
//
// Charges. The B2BUA tries such targets one at a time, so a new record
// means the target recorded before it is done with (it failed, or was
// never tried). A new_call_authorization record carries Charge: the
// redirected leg rated as a new call of that account (RoleOutgoing, the
// target's user part as the number). Its reservation is computed here
// exactly like StartCall's (blocked, max_calls for an account not yet in
// the call, rate by longest prefix, what the available balance or credit
// buys up to MaxSeconds, or for a call reserved by chunks up to its first
// chunk: quota.go) and the call's MaxDuration becomes the shortest
// of its charges'. That charge stays pending while its leg is tried: the
// next RedirectCall of the call releases it first (its leg failed), while
// an answer keeps it and EndCall debits it like any other charge. So at
// most one redirect charge is ever held, always the call's last, and it
// belongs to the record that is the call's last.
//
// A refused authorization (no rate, insufficient funds, blocked, ...)
// changes nothing; the B2BUA then records the refusal with a record of
// its own, without Charge.
//
// Idempotency: Index is the record's position in Call.Redirects. Applying
// a record already there returns the call unchanged; an index taken by
// another record, or one past the end, is refused.
type RedirectCall struct {
	ID         string
	Index      int
	Target     string         // the target as the B2BUA called (or refused to call) it
	Decision   string         // billing.Decision*
	Charge     *ChargeRequest // with Decision billing.DecisionNewAuth, and only then
	MaxSeconds int            // longest call the switch allows, as StartCall's
}

func (*RedirectCall) Type() Type { return TypeRedirectCall }

func (c *RedirectCall) apply(s *State) Result {
	if r := c.validate(); r.Err != nil {
		return r
	}
	call, ok := s.calls[c.ID]
	if !ok {
		return refuse(CodeNotFound, "id", "no call %s in progress", c.ID)
	}
	rec := Redirect{Target: c.Target, Decision: c.Decision}
	switch n := len(call.Redirects); {
	case c.Index < n:
		if call.Redirects[c.Index] == rec {
			return callResult(call) // applied before
		}
		return refuse(CodeConflict, "index", "redirect %d of call %s is already recorded as %s (%s)",
			c.Index, c.ID, call.Redirects[c.Index].Target, call.Redirects[c.Index].Decision)
	case c.Index > n:
		return refuse(CodeConflict, "index", "call %s has %d redirects recorded: %d would leave a gap", c.ID, n, c.Index)
	case n >= MaxCallRedirects:
		return refuse(CodeInvalid, "index", "call %s already has %d redirects recorded (the most kept)", c.ID, n)
	}
	if call.ConnectAt != 0 {
		return refuse(CodeConflict, "id", "call %s is answered: it is redirected no more", c.ID)
	}

	next := call.clone()
	// The pending redirect charge, if any, is released: its leg is over.
	var freed *Charge
	if k := len(next.Redirects); k > 0 && next.Redirects[k-1].Decision == billing.DecisionNewAuth && len(next.Charges) > 0 {
		ch := next.Charges[len(next.Charges)-1]
		freed = &ch
		next.Charges = next.Charges[:len(next.Charges)-1]
	}
	// A call reserved by chunks reserves its first chunk for the
	// redirected leg too (it is not answered: it has no other yet).
	q := s.quotas[c.ID]
	maxSeconds, reserveFor := c.MaxSeconds, c.MaxSeconds
	if q != nil {
		maxSeconds, reserveFor = q.MaxSeconds, min(q.Chunk, q.MaxSeconds)
	}
	var added *Charge
	newParty := false
	if c.Charge != nil {
		var own int64 // the freed reservation is the account's again
		if freed != nil && freed.Account == c.Charge.Account {
			own = freed.Reserved
		}
		ch, charged, r := s.authorizeCharge(*c.Charge, "charge", reserveFor, own, slices.Contains(next.Parties, c.Charge.Account))
		if r.Err != nil {
			return r
		}
		if !slices.Contains(next.Parties, c.Charge.Account) {
			next.Parties = append(next.Parties, c.Charge.Account)
			newParty = true
		}
		if charged {
			added = &ch
			next.Charges = append(next.Charges, ch)
		}
	}
	switch {
	case freed != nil:
		next.MaxDuration = maxSeconds
		for _, ch := range next.Charges {
			next.MaxDuration = min(next.MaxDuration, ch.MaxDuration)
		}
	case added != nil:
		next.MaxDuration = min(next.MaxDuration, added.MaxDuration)
	}
	next.Redirects = append(next.Redirects, rec)

	// Committed: nothing below can fail.
	if freed != nil {
		if s.reserved[freed.Account] -= freed.Reserved; s.reserved[freed.Account] == 0 {
			delete(s.reserved, freed.Account)
		}
	}
	if added != nil {
		s.reserved[added.Account] += added.Reserved
	}
	if newParty {
		s.activeCalls[c.Charge.Account]++
	}
	if q != nil && (freed != nil || added != nil) {
		nq := *q
		nq.Final = next.MaxDuration < reserveFor
		s.quotas[c.ID] = &nq
	}
	s.putCall(&next)
	return callResult(&next)
}

func (c *RedirectCall) validate() Result {
	switch {
	case c.ID == "":
		return refuse(CodeInvalid, "id", "is required")
	case c.Index < 0:
		return refuse(CodeInvalid, "index", "cannot be negative")
	case c.Target == "" || len(c.Target) > 512 || !printable(c.Target):
		return refuse(CodeInvalid, "target", "must be 1-512 printable characters")
	case !decisionPattern.MatchString(c.Decision):
		return refuse(CodeInvalid, "decision", "must be a lower-case word such as %q", billing.DecisionTrusted)
	case (c.Charge != nil) != (c.Decision == billing.DecisionNewAuth):
		return refuse(CodeInvalid, "charge", "a charge comes with decision %q, and only with it", billing.DecisionNewAuth)
	case c.MaxSeconds <= 0:
		return refuse(CodeInvalid, "max_seconds", "must be positive")
	}
	if ch := c.Charge; ch != nil {
		switch {
		case ch.Role != RoleOutgoing && ch.Role != RoleIncoming:
			return refuse(CodeInvalid, "charge.role", "unknown role %q", ch.Role)
		case ch.Number == "" || len(ch.Number) > 64 || !printable(ch.Number):
			return refuse(CodeInvalid, "charge.number", "must be 1-64 printable characters")
		}
	}
	return Result{}
}
