package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// Stateless digest nonces. A nonce is
//
//	base64url(ts || HMAC-SHA256(secret, ts || realm)[:16])
//
// with ts the issue time as 8 big-endian bytes of unix milliseconds and
// secret the cluster's nonce secret from the replicated state, so any node
// verifies a nonce issued by any other. Nothing is stored per nonce: a nonce
// may be replayed until it expires (nc is covered by the response hash but
// its monotonicity is not tracked), the usual trade-off of stateless nonces.

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
	nonceInvalid nonceStatus = iota // malformed, forged, other realm or secret, or far in the future
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

func nonceMAC(secret []byte, ts []byte, realm string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(ts)
	m.Write([]byte(realm))
	return m.Sum(nil)[:nonceMACLen]
}

// MintNonce returns a nonce issued at now.
func MintNonce(secret []byte, realm string, now time.Time) string {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.UnixMilli()))
	copy(raw[8:], nonceMAC(secret, raw[:8], realm))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// checkNonce verifies a nonce's MAC (in constant time) and its age at now.
func checkNonce(secret []byte, realm, nonce string, now time.Time, ttl time.Duration) nonceStatus {
	if len(nonce) != nonceLen || len(secret) == 0 {
		return nonceInvalid
	}
	var raw [nonceRawLen]byte
	n, err := base64.RawURLEncoding.Decode(raw[:], []byte(nonce))
	if err != nil || n != nonceRawLen {
		return nonceInvalid
	}
	if !hmac.Equal(raw[8:], nonceMAC(secret, raw[:8], realm)) {
		return nonceInvalid
	}
	issued := int64(binary.BigEndian.Uint64(raw[:8]))
	age := now.UnixMilli() - issued
	switch {
	case age < -nonceFutureSkew.Milliseconds():
		return nonceInvalid
	case age > ttl.Milliseconds():
		return nonceStale
	}
	return nonceValid
}
