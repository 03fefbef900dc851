package b2bua

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
)

// Delivery steps and follow-me (an account's follow_me list). A call to an
// account is offered in steps, one after the other:
//
//  1. the account's own delivery: every current binding at once, or its
//     static contact; and the 3xx targets those answer with
//     (b2bua_redirect.go);
//  2. then each follow-me entry in order: an account id (that account's
//     own delivery, its 3xx judged by its own service policy), or a sip:
//     or sips: URI, called directly from the main socket of its transport
//     (its 3xx judged by the called account's policy).
//
// Timing rule. Without follow-me entries the own delivery rings until
// Timer C. With entries, the own delivery rings for DeliveryConfig.OwnRing
// (20 s) and each entry for its timeout_s; an entry naming the called
// account itself puts the own delivery at its place, for its timeout,
// instead of first (so [{self, 10}, {sip:mobile@gw, 25}] rings the phones
// for 10 s, then the mobile for 25 s). A step ends early when every leg
// of it has failed (no binding, busy, rejected, ...): the next one starts
// at once. Timer C (RingTimeout) still bounds the whole call, so long
// lists need a longer one.
//
// Billing: the call stays what StartCall made it (the called account's
// incoming call); a follow-me target account is not charged. Each entry
// tried is recorded in the call and its xDR (fsm.RedirectCall, decision
// follow_me). An entry that names neither an account (nor a usable URI)
// is logged and skipped; a URI that does not resolve or points at the
// switch itself is logged, counted and recorded like a 3xx target
// (unresolvable, own_address) and skipped.

// step is one stage of a call's delivery.
type step struct {
	account  fsm.Account   // whose delivery it is; its service policy judges 3xx answers
	cld      string        // the number its legs carry in To (and a static contact's Request-URI)
	timeout  time.Duration // how long it rings; 0: until Timer C
	followMe string        // the follow-me entry's target; "" for the called account's own delivery
}

// deliveryPlan lists the steps of a call to callee dialed as cld.
func (b *B2BUA) deliveryPlan(callee fsm.Account, cld string) []step {
	own := step{account: callee, cld: cld}
	if len(callee.FollowMe) == 0 {
		return []step{own}
	}
	var steps []step
	if !slices.ContainsFunc(callee.FollowMe, func(f fsm.FollowMeTarget) bool { return f.Target == callee.ID }) {
		own.timeout = orDefault(b.cfg.Delivery.OwnRing, defaultOwnRing)
		steps = append(steps, own)
	}
	for _, f := range callee.FollowMe {
		steps = append(steps, step{account: callee, cld: cld, timeout: time.Duration(f.TimeoutS) * time.Second, followMe: f.Target})
	}
	return steps
}

func isSIPURI(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "sip:") || strings.HasPrefix(l, "sips:")
}

// stepTargets returns the targets of a step, completing a follow-me
// step's account and number. ok is false when the step cannot be tried
// at all (an unusable follow-me entry, logged); fl is set when the call
// cannot go on (a replicated write failed).
func (c *call) stepTargets(st *step) (targets []target, ok bool, fl *failure) {
	b := c.b
	now := b.cfg.Now()
	fm := st.followMe
	switch {
	case fm == "" || fm == st.account.ID:
		return b.deliveryTargets(st.account, st.cld, now), true, nil
	case isSIPURI(fm):
		var u sip.Uri
		if err := sip.ParseUri(fm, &u); err != nil {
			c.log.Warn("follow-me entry is not a usable SIP URI; skipping it", "target", fm, "error", err)
			return nil, false, nil
		}
		t, addrs, err := b.uriTarget(u, "follow-me")
		switch {
		case errors.Is(err, errUnresolvable):
			return nil, false, c.dropFollowMe(st, fm, billing.DecisionUnresolvable)
		case err != nil:
			c.log.Warn("follow-me entry cannot be called; skipping it", "target", fm, "error", err)
			return nil, false, nil
		}
		ap, _ := netip.ParseAddrPort(t.dest)
		for _, a := range addrs {
			if b.ownAddress(a, int(ap.Port())) {
				return nil, false, c.dropFollowMe(st, fm, billing.DecisionOwnAddress)
			}
		}
		if t.uri.User != "" {
			st.cld = t.uri.User
		}
		return []target{t}, true, nil
	}
	acct, found := b.state.Account(fm)
	if !found || acct.Blocked {
		c.log.Warn("follow-me entry is neither a SIP URI nor an account that takes calls; skipping it", "target", fm,
			"callee", st.account.ID)
		return nil, false, nil
	}
	st.account, st.cld = acct, acct.ID
	return b.deliveryTargets(acct, acct.ID, now), true, nil
}

// dropFollowMe logs, counts and records a follow-me entry not tried.
func (c *call) dropFollowMe(st *step, target, decision string) *failure {
	c.logDecision(st.account.ID, target, decision, "follow-me entry")
	if c.dropped >= maxDroppedRecords {
		return nil
	}
	c.dropped++
	_, fl := c.record(target, decision, nil)
	return fl
}
