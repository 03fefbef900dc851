package auth

import (
	"sync"
)

// ncCache remembers, per nonce, the highest nc of a request that passed
// authentication on this node, so that a captured request replayed with
// the same nc is refused (RFC 7616 §3.3: "the server can detect request
// replays by maintaining its own copy of this count"). A repeat of the
// very request that used the nc (the same Call-ID and CSeq: a UDP
// retransmission whose answer was lost) is let through: the registrar and
// the B2BUA answer those without a second effect.
//
// Nonces are bound to their request's Call-ID (binding), and the
// dispatcher sends every request of a Call-ID to one node, so the node
// that sees a nonce's requests is the same for all of them while the
// cluster's membership holds. When it changes, a request may reach a node
// that has not seen its nonce: that node accepts its nc once. The cache is
// bounded: it keeps nonces until their TTL passes, and past maxEntries it
// forgets the oldest and raises its floor, the issue time at or before
// which a nonce it does not know is treated as used (answered with a fresh
// challenge, stale=true), never as new.
type ncCache struct {
	maxEntries int
	ttlMs      int64

	mu      sync.Mutex
	entries map[[nonceMACLen]byte]ncEntry
	order   []ncKey // first use order (roughly issue order), for expiry and eviction
	head    int
	floor   int64 // unix ms: unknown nonces issued at or before it count as used
}

type ncEntry struct {
	nc     uint32
	req    uint64 // hash of the Call-ID and CSeq that used nc
	issued int64
}

type ncKey struct {
	mac    [nonceMACLen]byte
	issued int64
}

func newNCCache(maxEntries int, ttlMs int64) *ncCache {
	return &ncCache{maxEntries: maxEntries, ttlMs: ttlMs, entries: map[[nonceMACLen]byte]ncEntry{}}
}

// ncVerdict is what the cache says of a request's nc.
type ncVerdict int

const (
	ncFresh     ncVerdict = iota // a higher nc than any seen: recorded
	ncRepeat                     // the same request again (retransmission)
	ncReplayed                   // an nc already used by another request
	ncForgotten                  // a nonce older than the floor: use a fresh one
)

// use records nc of a nonce (its MAC and issue time) for request req at
// now (unix ms) and says whether the request may go on.
func (c *ncCache) use(mac [nonceMACLen]byte, issued int64, nc uint32, req uint64, now int64) ncVerdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	e, ok := c.entries[mac]
	switch {
	case !ok && issued <= c.floor:
		return ncForgotten
	case ok && nc < e.nc, ok && nc == e.nc && req != e.req:
		return ncReplayed
	case ok && nc == e.nc:
		return ncRepeat
	case ok:
		e.nc, e.req = nc, req
		c.entries[mac] = e
		return ncFresh
	}
	c.entries[mac] = ncEntry{nc: nc, req: req, issued: issued}
	c.order = append(c.order, ncKey{mac: mac, issued: issued})
	for len(c.entries) > c.maxEntries {
		c.evictOldest()
	}
	return ncFresh
}

// expire forgets the nonces whose TTL has passed (their requests are
// answered stale anyway).
func (c *ncCache) expire(now int64) {
	for c.head < len(c.order) && c.order[c.head].issued+c.ttlMs < now {
		c.forget(c.order[c.head])
	}
	c.compact()
}

func (c *ncCache) evictOldest() {
	if c.head >= len(c.order) {
		return
	}
	k := c.order[c.head]
	c.floor = max(c.floor, k.issued)
	c.forget(k)
}

func (c *ncCache) forget(k ncKey) {
	if e, ok := c.entries[k.mac]; ok && e.issued == k.issued {
		delete(c.entries, k.mac)
	}
	c.order[c.head] = ncKey{}
	c.head++
}

// compact drops the forgotten head of order once it is half the slice.
func (c *ncCache) compact() {
	if c.head > 1024 && c.head*2 > len(c.order) {
		c.order = append([]ncKey(nil), c.order[c.head:]...)
		c.head = 0
	}
}

// size is how many nonces the cache holds (tests, metrics).
func (c *ncCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
