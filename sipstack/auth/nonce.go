package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
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

func nonceMAC(secret []byte, ts []byte, realm string, b Binding) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(ts)
	m.Write([]byte(realm))
	m.Write([]byte{0})
	m.Write(b.append(make([]byte, 0, 64)))
	return m.Sum(nil)[:nonceMACLen]
}

// MintNonce returns a nonce issued at now for a request with binding b.
func MintNonce(secret []byte, realm string, b Binding, now time.Time) string {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.UnixMilli()))
	copy(raw[8:], nonceMAC(secret, raw[:8], realm, b))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// checkNonce verifies a nonce's MAC for binding b (in constant time) and
// its age at now. It returns its issue time (unix ms) and MAC too.
func checkNonce(secret []byte, realm, nonce string, b Binding, now time.Time, ttl time.Duration) (nonceStatus, int64, [nonceMACLen]byte) {
	return verifyNonce(secret, nonce, now, ttl, func(ts []byte) []byte { return nonceMAC(secret, ts, realm, b) })
}

// unboundNonceMAC is the MAC of a nonce bound to nothing, as builds
// before bound nonces issue them: HMAC-SHA256(secret, ts || realm)[:16].
func unboundNonceMAC(secret []byte, ts []byte, realm string) []byte {
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

// checkUnboundNonce is checkNonce for a nonce bound to nothing
// (Config.UnboundNonces).
func checkUnboundNonce(secret []byte, realm, nonce string, now time.Time, ttl time.Duration) (nonceStatus, int64, [nonceMACLen]byte) {
	return verifyNonce(secret, nonce, now, ttl, func(ts []byte) []byte { return unboundNonceMAC(secret, ts, realm) })
}

func verifyNonce(secret []byte, nonce string, now time.Time, ttl time.Duration, macOf func(ts []byte) []byte) (nonceStatus, int64, [nonceMACLen]byte) {
	var mac [nonceMACLen]byte
	if len(nonce) != nonceLen || len(secret) == 0 {
		return nonceInvalid, 0, mac
	}
	var raw [nonceRawLen]byte
	n, err := base64.RawURLEncoding.Decode(raw[:], []byte(nonce))
	if err != nil || n != nonceRawLen {
		return nonceInvalid, 0, mac
	}
	if !hmac.Equal(raw[8:], macOf(raw[:8])) {
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
