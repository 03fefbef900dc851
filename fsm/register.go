package fsm

import "slices"

// Register applies one REGISTER request to an AOR's bindings, following
// RFC 3261 §10.3 steps 6-7: every binding in Bindings is added, refreshed,
// or removed (ExpiresAt <= Now); Wildcard (Contact: *, Expires: 0) removes
// them all. The registrar stamps Now and computes every ExpiresAt.
//
// Applying the same command twice changes nothing the second time: a
// binding already updated by this Call-ID and CSeq at this Now is left as
// it is. A lower CSeq of the same Call-ID (a reordered or replayed
// REGISTER) is refused and changes nothing.
type Register struct {
	AOR         string
	CallID      string
	CSeq        uint32
	Now         int64 // unix ms
	Wildcard    bool
	Bindings    []Binding
	MaxContacts int // the registrar's cap; the account's own cap wins when set
}

func (*Register) Type() Type { return TypeRegister }

func (c *Register) apply(s *State) Result {
	acct, ok := s.accounts[c.AOR]
	if !ok {
		return refuse(CodeNotFound, "aor", "no account %s", c.AOR)
	}
	var next []*Binding // a fresh slice: stored slices are shared with snapshots
	for _, b := range s.bindings[c.AOR] {
		if b.ExpiresAt > c.Now {
			next = append(next, b)
		}
	}
	if c.Wildcard {
		for _, b := range next {
			if b.CallID == c.CallID && b.CSeq > c.CSeq {
				return refuse(CodeStaleCSeq, "cseq", "CSeq %d is lower than %d already seen for Call-ID %s", c.CSeq, b.CSeq, c.CallID)
			}
		}
		s.setBindings(c.AOR, nil)
		return Result{Bindings: []Binding{}}
	}
	for i := range c.Bindings {
		if dropsBinding(c.AOR) {
			continue // a deliberately broken build only: chaosbroken_set.go
		}
		u := c.Bindings[i].clone()
		u.AOR, u.CallID, u.CSeq, u.UpdatedAt = acct.ID, c.CallID, c.CSeq, c.Now
		s.internBinding(&u)
		k := u.key()
		idx := -1
		for j, b := range next {
			if b.key() == k {
				idx = j
				break
			}
		}
		if idx >= 0 {
			old := next[idx]
			if old.CallID == c.CallID && old.CSeq >= c.CSeq {
				if old.CSeq == c.CSeq && old.UpdatedAt == c.Now {
					continue // this command again: already applied
				}
				return refuse(CodeStaleCSeq, "cseq", "CSeq %d is not higher than %d already seen for Call-ID %s", c.CSeq, old.CSeq, c.CallID)
			}
			if u.ExpiresAt <= c.Now {
				next = slices.Delete(next, idx, idx+1)
			} else {
				next[idx] = &u
			}
			continue
		}
		if u.ExpiresAt > c.Now {
			next = append(next, &u)
		}
	}
	limit := c.MaxContacts
	if acct.MaxContacts > 0 {
		limit = acct.MaxContacts
	}
	if limit > 0 && len(next) > limit {
		return refuse(CodeTooManyContacts, "contact", "account %s may register at most %d contacts", c.AOR, limit)
	}
	s.setBindings(c.AOR, next)
	return Result{Bindings: live(next, c.Now)}
}
