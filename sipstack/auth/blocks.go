package auth

import (
	"net/netip"
	"sort"
	"time"
)

// BlockedSource is a source address the per-source limiter blocks (an
// IPv6 source stands for its /64).
type BlockedSource struct {
	Source string
	Until  time.Time
}

// ThrottledUser is a user name whose guesses are used up: requests for it
// from sources it has not authenticated from get 503 until RetryAt.
type ThrottledUser struct {
	User    string
	RetryAt time.Time
}

// Blocks lists, at now, the sources this node blocks and the user names
// it throttles (each node keeps its own).
func (a *Authenticator) Blocks(now time.Time) ([]BlockedSource, []ThrottledUser) {
	return a.limiter.list(now), a.guard.list(now)
}

// UnblockSource lifts the block of ip (its /64 for IPv6) and forgets its
// failures on this node. It reports whether ip was blocked.
func (a *Authenticator) UnblockSource(ip netip.Addr) bool { return a.limiter.unblock(ip) }

// UnthrottleUser refills user's guesses on this node. It reports whether
// user was throttled at now.
func (a *Authenticator) UnthrottleUser(user string, now time.Time) bool {
	return a.guard.reset(user, now)
}

func (l *limiter) list(now time.Time) []BlockedSource {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []BlockedSource{}
	for ip, until := range l.blocked {
		if now.Before(until) {
			out = append(out, BlockedSource{Source: ip.String(), Until: until})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
	return out
}

func (l *limiter) unblock(ip netip.Addr) bool {
	k := limiterKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	_, was := l.blocked[k]
	delete(l.blocked, k)
	delete(l.counts, k)
	return was
}

func (g *accountGuard) list(now time.Time) []ThrottledUser {
	if g.perSecond <= 0 {
		return []ThrottledUser{}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	out := []ThrottledUser{}
	for u, e := range g.users {
		e.refill(g, now)
		if e.tokens < 1 {
			wait := time.Duration((1 - e.tokens) / g.perSecond * float64(time.Second))
			out = append(out, ThrottledUser{User: u, RetryAt: now.Add(wait)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out
}

func (g *accountGuard) reset(user string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.users[user]
	if e == nil {
		return false
	}
	e.refill(g, now)
	was := e.tokens < 1
	e.tokens, e.at = g.burst, now
	return was
}
