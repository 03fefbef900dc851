package auth

import (
	"net/netip"
	"sync"
	"time"
)

// limiter counts failed authentications per source IP in fixed
// one-minute windows; a source over the limit is blocked for a while.
// Memory is bounded: at most maxTracked sources are counted per window and
// at most maxTracked are blocked; past that new sources go uncounted
// (failing open) rather than evicting blocked ones.
//
// IPv6 sources are counted per /64, which one subscriber usually holds
// whole. Phones behind one NAT share a count: a single phone with a wrong
// password can block its neighbours for blockFor; the defaults (20 failures
// a minute, 2 minutes) are meant to stop guessing, not a misconfigured
// phone, which fails once per registration interval.
type limiter struct {
	limit      int // failures per window; <= 0 disables
	blockFor   time.Duration
	maxTracked int

	mu          sync.Mutex
	windowStart time.Time
	counts      map[netip.Addr]int
	blocked     map[netip.Addr]time.Time // until
}

const (
	authWindow     = time.Minute
	authMaxTracked = 100_000
	limiterPrefix  = 64
)

func newLimiter(limit int, blockFor time.Duration) *limiter {
	return &limiter{
		limit:      limit,
		blockFor:   blockFor,
		maxTracked: authMaxTracked,
		counts:     map[netip.Addr]int{},
		blocked:    map[netip.Addr]time.Time{},
	}
}

func limiterKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(limiterPrefix); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// Blocked reports whether ip is blocked at now.
func (l *limiter) Blocked(ip netip.Addr, now time.Time) bool {
	if l.limit <= 0 || !ip.IsValid() {
		return false
	}
	k := limiterKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	until, ok := l.blocked[k]
	if !ok {
		return false
	}
	if now.Before(until) {
		return true
	}
	delete(l.blocked, k)
	return false
}

// Fail records a failed authentication from ip at now and reports whether
// it has just blocked ip.
func (l *limiter) Fail(ip netip.Addr, now time.Time) bool {
	if l.limit <= 0 || !ip.IsValid() {
		return false
	}
	k := limiterKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.windowStart) >= authWindow || now.Before(l.windowStart) {
		l.windowStart = now
		l.counts = map[netip.Addr]int{} // a new map: clear would keep a flood's buckets
	}
	n, ok := l.counts[k]
	if !ok && len(l.counts) >= l.maxTracked {
		return false
	}
	n++
	l.counts[k] = n
	if n <= l.limit {
		return false
	}
	if _, already := l.blocked[k]; !already && len(l.blocked) >= l.maxTracked {
		for ip, until := range l.blocked {
			if !now.Before(until) {
				delete(l.blocked, ip)
			}
		}
		if len(l.blocked) >= l.maxTracked {
			return false
		}
	}
	l.blocked[k] = now.Add(l.blockFor)
	delete(l.counts, k)
	return true
}

// Size returns how many sources are counted and blocked, for tests.
func (l *limiter) Size() (counted, blocked int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.counts), len(l.blocked)
}
