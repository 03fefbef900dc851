package auth

import (
	"net/netip"
	"sync"
	"time"
)

// accountGuard slows password guessing against one account from many
// sources, which the per-source limiter cannot see. Each user name has a
// bucket of verifications: a failed authentication takes a token, tokens
// come back at a steady rate, and with the bucket empty the user name's
// requests are not verified at all (503 with Retry-After: the attacker
// learns nothing). A source that authenticated for the user name lately
// is trusted and never waits, so the account's own phones keep
// registering through an attack.
type accountGuard struct {
	perSecond  float64       // tokens back per second
	burst      float64       // bucket size
	trustFor   time.Duration // how long a source that authenticated stays trusted
	maxTracked int

	mu    sync.Mutex
	users map[string]*guardEntry
}

type guardEntry struct {
	tokens  float64
	at      time.Time // of tokens
	trusted []trustedSource
}

type trustedSource struct {
	ip    netip.Addr // limiterKey of the source
	until time.Time
}

const (
	guardMaxTrusted = 8 // trusted sources kept per user name
	guardMaxTracked = 200_000
)

func newAccountGuard(perMinute, burst int, trustFor time.Duration) *accountGuard {
	return &accountGuard{perSecond: float64(perMinute) / 60, burst: float64(burst), trustFor: trustFor,
		maxTracked: guardMaxTracked, users: map[string]*guardEntry{}}
}

// allow reports whether an attempt for user from src at now may be
// verified, and when not, how long until it may.
func (g *accountGuard) allow(user string, src netip.Addr, now time.Time) (bool, time.Duration) {
	if g.perSecond <= 0 {
		return true, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.users[user]
	if e == nil {
		return true, 0
	}
	if e.trusts(limiterKey(src), now) {
		return true, 0
	}
	e.refill(g, now)
	if e.tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - e.tokens) / g.perSecond * float64(time.Second))
}

// failed takes a token of user's bucket.
func (g *accountGuard) failed(user string, src netip.Addr, now time.Time) {
	if g.perSecond <= 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.entry(user, now)
	if e == nil || e.trusts(limiterKey(src), now) {
		return // a trusted source's typo costs the others nothing
	}
	e.refill(g, now)
	e.tokens = max(e.tokens-1, 0)
}

// succeeded trusts src for user from now on (for trustFor).
func (g *accountGuard) succeeded(user string, src netip.Addr, now time.Time) {
	if g.perSecond <= 0 || !src.IsValid() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.entry(user, now)
	if e == nil {
		return
	}
	k := limiterKey(src)
	until := now.Add(g.trustFor)
	kept := e.trusted[:0]
	for _, t := range e.trusted {
		if t.ip != k && now.Before(t.until) {
			kept = append(kept, t)
		}
	}
	if len(kept) == guardMaxTrusted {
		kept = kept[1:] // the oldest goes
	}
	e.trusted = append(kept, trustedSource{ip: k, until: until})
}

// entry returns user's entry, making one (with a full bucket) when there
// is room; nil when there is none (the guard then fails open for it).
func (g *accountGuard) entry(user string, now time.Time) *guardEntry {
	if e := g.users[user]; e != nil {
		return e
	}
	if len(g.users) >= g.maxTracked {
		for u, e := range g.users { // forget user names at rest first
			e.refill(g, now)
			if e.tokens >= g.burst && len(e.trusted) == 0 {
				delete(g.users, u)
			}
		}
		if len(g.users) >= g.maxTracked {
			return nil
		}
	}
	e := &guardEntry{tokens: g.burst, at: now}
	g.users[user] = e
	return e
}

func (e *guardEntry) refill(g *accountGuard, now time.Time) {
	if d := now.Sub(e.at); d > 0 {
		e.tokens = min(g.burst, e.tokens+d.Seconds()*g.perSecond)
	}
	e.at = now
}

func (e *guardEntry) trusts(ip netip.Addr, now time.Time) bool {
	for _, t := range e.trusted {
		if t.ip == ip && now.Before(t.until) {
			return true
		}
	}
	return false
}
