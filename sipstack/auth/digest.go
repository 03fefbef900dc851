package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/icholy/digest"
)

// Server side of HTTP digest authentication as SIP uses it (RFC 3261
// §22.4, RFC 7616, RFC 8760): algorithms MD5 and SHA-256, qop=auth.
// github.com/icholy/digest parses and formats the headers; the
// verification is here.

const (
	MD5    = "MD5"
	SHA256 = "SHA-256"
)

// digestHash returns the hash of a digest algorithm name (case-insensitive;
// empty means MD5), or nil if it is not supported.
func digestHash(alg string) func() hash.Hash {
	switch strings.ToUpper(alg) {
	case "", MD5:
		return md5.New
	case SHA256:
		return sha256.New
	}
	return nil
}

func hashJoin(h hash.Hash, parts ...string) string {
	h.Reset()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{':'})
		}
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Response computes the "response" a client sends for qop=auth (RFC 7616
// §3.4.1): H(H(user:realm:pass):nonce:nc:cnonce:qop:H(method:uri)).
func Response(newHash func() hash.Hash, username, realm, password, method, uri, nonce, nc, cnonce, qop string) string {
	return responseFromHA1(newHash, hashJoin(newHash(), username, realm, password), method, uri, nonce, nc, cnonce, qop)
}

// responseFromHA1 is Response from the stored HA1 (hex) instead of the
// password.
func responseFromHA1(newHash func() hash.Hash, ha1, method, uri, nonce, nc, cnonce, qop string) string {
	h := newHash()
	ha2 := hashJoin(h, method, uri)
	return hashJoin(h, ha1, nonce, nc, cnonce, qop, ha2)
}

// hexDigest is the lowercase hex digest, with alg (MD5 or SHA-256), of
// parts joined by ':': what digest hashes, without allocating but the
// result.
func hexDigest(alg string, parts ...string) string {
	var stack [512]byte
	buf := stack[:0]
	for i, p := range parts {
		if i > 0 {
			buf = append(buf, ':')
		}
		buf = append(buf, p...)
	}
	var sum [sha256.Size]byte
	n := md5.Size
	if alg == SHA256 {
		sum, n = sha256.Sum256(buf), sha256.Size
	} else {
		m := md5.Sum(buf)
		copy(sum[:], m[:])
	}
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:n])
	return string(out[:2*n])
}

// credentials are the parts of a digest Authorization header the
// registrar checks.
type credentials struct {
	*digest.Credentials
	nc string // nc as 8 hex digits, as hashed by the client
}

var (
	errNoCredentials  = errors.New("no digest credentials for this realm")
	errBadCredentials = errors.New("malformed Authorization header")
)

// findCredentials returns the request's digest credentials for realm.
// Credentials for other realms and other schemes are ignored; when none is
// for realm, it returns errNoCredentials, or errBadCredentials if some
// header could not be parsed (which may have been ours).
func findCredentials(values []string, realm string) (*credentials, error) {
	bad := false
	for _, v := range values {
		if !digest.IsDigest(v) {
			continue
		}
		c, err := parseCredentials(v)
		if err != nil {
			bad = true
			continue
		}
		if c.Realm != realm {
			continue
		}
		return &credentials{Credentials: c, nc: formatNC(c.Nc)}, nil
	}
	if bad {
		return nil, errBadCredentials
	}
	return nil, errNoCredentials
}

// formatNC writes nc as the 8 hex digits a client hashes.
func formatNC(nc int) string {
	if nc < 0 || nc > 0xffffffff {
		return fmt.Sprintf("%08x", nc)
	}
	const digits = "0123456789abcdef"
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = digits[nc&0xf]
		nc >>= 4
	}
	return string(b[:])
}

// wellFormed reports what is wrong with credentials before any check of
// their values, or "" when they can be verified.
func (c *credentials) wellFormed() string {
	switch {
	case c.Username == "" || c.Nonce == "" || c.URI == "" || c.Response == "":
		return "Authorization lacks username, nonce, uri or response"
	case !strings.EqualFold(c.QOP, "auth"):
		return "Authorization must use qop=auth"
	case c.Cnonce == "" || c.Nc <= 0:
		return "Authorization lacks cnonce or nc"
	case c.Userhash:
		return "Authorization userhash is not supported"
	case len(c.Username) > 256 || len(c.URI) > 1024 || len(c.Cnonce) > 256 || len(c.Response) > 128:
		return "Authorization parameter too long"
	}
	return ""
}

// verify checks the response hash, with algorithm alg (MD5 or SHA-256),
// against the HA1 (hex) of the user's password in constant time.
func (c *credentials) verify(alg, method, ha1 string) bool {
	want := hexDigest(alg, ha1, c.Nonce, c.nc, c.Cnonce, c.QOP, hexDigest(alg, method, c.URI))
	got := strings.ToLower(c.Response)
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// offered returns the canonical name of the credentials' algorithm if it
// is among algs, else "".
func (c *credentials) offered(algs []string) string {
	a := strings.ToUpper(c.Algorithm)
	if a == "" {
		a = MD5 // RFC 7616 §3.3: absent means MD5
	}
	for _, x := range algs {
		if x == a {
			return a
		}
	}
	return ""
}

// challenges returns the WWW-Authenticate values offering algs, in order,
// with one nonce. RFC 8760 §2.4 asks for the preferred algorithm first.
// They are written as github.com/icholy/digest writes a Challenge (the
// tests compare): the realm (Config.Check) and the nonce (base64url) need
// no escaping.
func challenges(realm, nonce string, stale bool, algs []string) []string {
	out := make([]string, 0, len(algs))
	var b strings.Builder
	for _, alg := range algs {
		b.Reset()
		b.Grow(64 + len(realm) + len(nonce))
		b.WriteString(`Digest realm="`)
		b.WriteString(realm)
		b.WriteString(`", nonce="`)
		b.WriteString(nonce)
		b.WriteByte('"')
		if stale {
			b.WriteString(", stale=true")
		}
		b.WriteString(", algorithm=")
		b.WriteString(alg)
		b.WriteString(`, qop="auth"`)
		out = append(out, b.String())
	}
	return out
}
