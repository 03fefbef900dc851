package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"net/netip"
	"sync"
	"time"
)

// Stateless digest nonces. A nonce is
//
//	base64url(ts || HMAC-SHA256(secret, ts || realm || 0 || binding)[:16])
//
// with ts the issue time as 8 big-endian bytes of unix milliseconds and
// secret the cluster's nonce secret from the replicated state, so any node
// verifies a nonce issued by any other. The binding is what a replay of a
// captured header would change (see Binding): the nonce verifies only for
// a request with the same binding, so credentials sniffed from one request
// buy nothing from another address, or (for a new call) with another
// Call-ID or From tag. Nothing is stored per nonce to verify it; the
// response's nc is tracked per node (ncache.go) to refuse a replay of the
// very same request.

const (
	nonceMACLen = 16
	nonceRawLen = 8 + nonceMACLen
	nonceLen    = (nonceRawLen*8 + 5) / 6 // base64 without padding: 32
	// nonceFutureSkew is how far in the future a nonce's timestamp may be:
	// the issuing node's clock may run ahead of the verifying node's.
	nonceFutureSkew = time.Minute
)

type nonceStatus int

const (
	nonceInvalid nonceStatus = iota // malformed, forged, other realm, secret or binding, or far in the future
	nonceValid
	nonceStale // genuine but older than the TTL
)

func (s nonceStatus) String() string {
	switch s {
	case nonceValid:
		return "valid"
	case nonceStale:
		return "stale"
	}
	return "invalid"
}

// Binding is what a nonce is bound to: the source address of the request
// it is issued to, and for a request that starts a call also its Call-ID
// and From tag (a REGISTER: its Call-ID, which a phone keeps across its
// registrations, RFC 3261 §10.2).
type Binding struct {
	Source  netip.Addr
	CallID  string
	FromTag string
}

func (b Binding) append(dst []byte) []byte {
	ip := b.Source.Unmap().As16()
	dst = append(dst, ip[:]...)
	dst = binary.AppendUvarint(dst, uint64(len(b.CallID)))
	dst = append(dst, b.CallID...)
	dst = binary.AppendUvarint(dst, uint64(len(b.FromTag)))
	return append(dst, b.FromTag...)
}

// macPool keeps HMAC states keyed with the nonce secret for reuse: making
// one costs more than the MAC itself. The zero value is ready; a nil
// *macPool makes a new state each time.
type macPool struct{ p sync.Pool }

type macState struct {
	key []byte
	h   hash.Hash
	buf []byte // the MAC's input
	sum []byte
}

// get returns a state for secret, reset.
func (mp *macPool) get(secret []byte) *macState {
	var ms *macState
	if mp != nil {
		ms, _ = mp.p.Get().(*macState)
	}
	if ms == nil || !bytes.Equal(ms.key, secret) {
		ms = &macState{key: bytes.Clone(secret), buf: make([]byte, 0, 128), sum: make([]byte, 0, sha256.Size)}
		ms.h = hmac.New(sha256.New, ms.key)
	}
	ms.h.Reset()
	return ms
}

func (mp *macPool) put(ms *macState) {
	if mp != nil {
		mp.p.Put(ms)
	}
}

// nonceMAC is the MAC of a nonce issued at ts for binding b, into mac.
func (mp *macPool) nonceMAC(secret []byte, ts []byte, realm string, b Binding, mac *[nonceMACLen]byte) {
	ms := mp.get(secret)
	ms.buf = append(ms.buf[:0], ts...)
	ms.buf = append(ms.buf, realm...)
	ms.buf = append(ms.buf, 0)
	ms.buf = b.append(ms.buf)
	ms.h.Write(ms.buf)
	ms.sum = ms.h.Sum(ms.sum[:0])
	copy(mac[:], ms.sum)
	mp.put(ms)
}

// MintNonce returns a nonce issued at now for a request with binding b.
func MintNonce(secret []byte, realm string, b Binding, now time.Time) string {
	return (*macPool)(nil).mint(secret, realm, b, now)
}

func (mp *macPool) mint(secret []byte, realm string, b Binding, now time.Time) string {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.UnixMilli()))
	var mac [nonceMACLen]byte
	mp.nonceMAC(secret, raw[:8], realm, b, &mac)
	copy(raw[8:], mac[:])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// checkNonce verifies a nonce's MAC for binding b (in constant time) and
// its age at now. It returns its issue time (unix ms) and MAC too.
func checkNonce(secret []byte, realm, nonce string, b Binding, now time.Time, ttl time.Duration) (nonceStatus, int64, [nonceMACLen]byte) {
	return (*macPool)(nil).check(secret, realm, nonce, b, now, ttl)
}

func (mp *macPool) check(secret []byte, realm, nonce string, b Binding, now time.Time, ttl time.Duration) (nonceStatus, int64, [nonceMACLen]byte) {
	return verifyNonce(secret, nonce, now, ttl, func(ts []byte, mac *[nonceMACLen]byte) { mp.nonceMAC(secret, ts, realm, b, mac) })
}

// unboundNonceMAC is the MAC of a nonce bound to nothing, as builds
// before bound nonces issue them: HMAC-SHA256(secret, ts || realm)[:16].
func unboundNonceMAC(secret []byte, ts []byte, realm string) []byte {
	// Rare (a rolling upgrade): not worth a pool.
	m := hmac.New(sha256.New, secret)
	m.Write(ts)
	m.Write([]byte(realm))
	return m.Sum(nil)[:nonceMACLen]
}

// mintUnboundNonce returns a nonce bound to nothing, as builds before
// bound nonces issue and verify them (Config.UnboundNonces).
func mintUnboundNonce(secret []byte, realm string, now time.Time) string {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.UnixMilli()))
	copy(raw[8:], unboundNonceMAC(secret, raw[:8], realm))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// unboundNCKey is what the nc of an unbound nonce with MAC mac is tracked
// under (ncCache): the nonce alone would be shared by every phone
// challenged in its millisecond.
func unboundNCKey(mac [nonceMACLen]byte, user, cnonce string) [nonceMACLen]byte {
	h := sha256.New()
	h.Write(mac[:])
	h.Write(binary.AppendUvarint(nil, uint64(len(user))))
	h.Write([]byte(user))
	h.Write([]byte(cnonce))
	var k [nonceMACLen]byte
	copy(k[:], h.Sum(nil))
	return k
}

// checkUnboundNonce is checkNonce for a nonce bound to nothing
// (Config.UnboundNonces).
func checkUnboundNonce(secret []byte, realm, nonce string, now time.Time, ttl time.Duration) (nonceStatus, int64, [nonceMACLen]byte) {
	return verifyNonce(secret, nonce, now, ttl, func(ts []byte, mac *[nonceMACLen]byte) { copy(mac[:], unboundNonceMAC(secret, ts, realm)) })
}

func verifyNonce(secret []byte, nonce string, now time.Time, ttl time.Duration, macOf func(ts []byte, mac *[nonceMACLen]byte)) (nonceStatus, int64, [nonceMACLen]byte) {
	var mac [nonceMACLen]byte
	if len(nonce) != nonceLen || len(secret) == 0 {
		return nonceInvalid, 0, mac
	}
	var raw [nonceRawLen]byte
	n, err := base64.RawURLEncoding.Decode(raw[:], []byte(nonce))
	if err != nil || n != nonceRawLen {
		return nonceInvalid, 0, mac
	}
	var want [nonceMACLen]byte
	macOf(raw[:8], &want)
	if !hmac.Equal(raw[8:], want[:]) {
		return nonceInvalid, 0, mac
	}
	copy(mac[:], raw[8:])
	issued := int64(binary.BigEndian.Uint64(raw[:8]))
	age := now.UnixMilli() - issued
	switch {
	case age < -nonceFutureSkew.Milliseconds():
		return nonceInvalid, 0, mac
	case age > ttl.Milliseconds():
		return nonceStale, issued, mac
	}
	return nonceValid, issued, mac
}
