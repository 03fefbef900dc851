package auth

import (
	"hash/maphash"
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
//
// Only user names with guesses spent have a bucket (a full bucket is the
// same as none); the trusted sources are a set of (user name, source)
// pairs apart from them. Every REGISTER that succeeds adds to that set, so
// it is one small hash per pair, kept in two generations (trustSet), and
// never scanned: a node with a million registered phones keeps them all
// trusted at about 33 bytes each (30.5 MB in the heap profile of one with
// 931,437), and nothing it does per request grows with the number of
// accounts.
type accountGuard struct {
	perSecond  float64       // tokens back per second
	burst      float64       // bucket size
	trustFor   time.Duration // how long a source that authenticated stays trusted
	maxTracked int           // user names with a bucket

	mu        sync.Mutex
	users     map[string]*guardEntry
	nextSweep time.Time // buckets are full: no sweep for room before then
	trust     trustSet
}

type guardEntry struct {
	tokens float64
	at     time.Time // of tokens
}

const (
	guardMaxTrusted  = 8         // sources one user name adds to a trust generation
	guardMaxTracked  = 200_000   // user names with guesses spent
	guardMaxTrustSet = 2_000_000 // (user name, source) pairs per trust generation
	// guardSweepEvery bounds how often a full table of buckets is swept
	// for room: with every bucket still in use (an attack on more user
	// names than the table holds), new names go unguarded meanwhile
	// instead of each one paying for a sweep.
	guardSweepEvery = time.Second
)

func newAccountGuard(perMinute, burst int, trustFor time.Duration) *accountGuard {
	return &accountGuard{perSecond: float64(perMinute) / 60, burst: float64(burst), trustFor: trustFor,
		maxTracked: guardMaxTracked, users: map[string]*guardEntry{},
		trust: newTrustSet(trustFor, guardMaxTrustSet)}
}

// allow reports whether an attempt for user from src at now may be
// verified, and if not how long until it may.
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
	if g.trust.has(user, limiterKey(src), now) {
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
	if g.trust.has(user, limiterKey(src), now) {
		return // a trusted source's typo costs the others nothing
	}
	e := g.entry(user, now)
	if e == nil {
		return
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
	g.trust.add(user, limiterKey(src), now)
}

// entry returns user's bucket, making one (full) when there is room; nil
// when there is none (the guard then fails open for it).
func (g *accountGuard) entry(user string, now time.Time) *guardEntry {
	if e := g.users[user]; e != nil {
		return e
	}
	if len(g.users) >= g.maxTracked {
		if now.Before(g.nextSweep) {
			return nil
		}
		for u, e := range g.users { // buckets full again are as good as none
			e.refill(g, now)
			if e.tokens >= g.burst {
				delete(g.users, u)
			}
		}
		if len(g.users) >= g.maxTracked {
			g.nextSweep = now.Add(guardSweepEvery)
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

// trustSet holds the (user name, source) pairs that authenticated, each
// until its time. A pair is a 64-bit keyed hash (a collision could only
// let one more guess through the guard, never authenticate anyone). Pairs
// go into the current generation; when it is trustFor old, or full, it
// becomes the previous one and the previous one is dropped: everything in
// it has expired by then (or, when full, the oldest trust goes first).
//
// One user name adds at most guardMaxTrusted sources to a generation
// (perUser counts them), so one account logging in from many addresses
// cannot fill the set and push out every other account's trust.
type trustSet struct {
	seed      maphash.Seed
	trustFor  time.Duration
	max       int
	cur, prev map[uint64]int64 // pair -> trusted until, unix nanoseconds
	perUser   map[uint64]uint8 // user name -> pairs it added to cur
	started   time.Time        // of cur
}

func newTrustSet(trustFor time.Duration, max int) trustSet {
	return trustSet{seed: maphash.MakeSeed(), trustFor: trustFor, max: max,
		cur: map[uint64]int64{}, prev: map[uint64]int64{}, perUser: map[uint64]uint8{}}
}

// key hashes user, and ip when it is valid (the zero Addr: the user name
// alone, for perUser).
func (t *trustSet) key(user string, ip netip.Addr) uint64 {
	var h maphash.Hash
	h.SetSeed(t.seed)
	h.WriteString(user)
	if ip.IsValid() {
		h.WriteByte(0)
		b := ip.As16()
		h.Write(b[:])
	}
	return h.Sum64()
}

func (t *trustSet) add(user string, ip netip.Addr, now time.Time) {
	if t.started.IsZero() {
		t.started = now
	}
	if now.Sub(t.started) >= t.trustFor || len(t.cur) >= t.max {
		t.prev, t.cur, t.started = t.cur, make(map[uint64]int64, len(t.cur)), now
		t.perUser = map[uint64]uint8{}
	}
	k := t.key(user, ip)
	if _, ok := t.cur[k]; !ok {
		u := t.key(user, netip.Addr{})
		if t.perUser[u] >= guardMaxTrusted {
			return // this user name's sources of the generation are all taken
		}
		t.perUser[u]++
	}
	t.cur[k] = now.Add(t.trustFor).UnixNano()
}

func (t *trustSet) has(user string, ip netip.Addr, now time.Time) bool {
	k := t.key(user, ip)
	until, ok := t.cur[k]
	if !ok {
		until, ok = t.prev[k]
	}
	return ok && now.UnixNano() < until
}

// size is how many pairs are held, for tests.
func (t *trustSet) size() int { return len(t.cur) + len(t.prev) }
