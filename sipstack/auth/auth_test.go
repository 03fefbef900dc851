package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func TestNonce(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	ttl := 5 * time.Minute
	bind := Binding{Source: netip.MustParseAddr("192.0.2.7"), CallID: "call-1@phone", FromTag: "f1"}
	n := MintNonce(testSecret, "troika", bind, t0)
	if len(n) != nonceLen || strings.ContainsAny(n, "+/=\"") {
		t.Fatalf("nonce %q: want %d base64url characters", n, nonceLen)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	cases := []struct {
		name   string
		secret []byte
		realm  string
		nonce  string
		at     time.Time
		want   nonceStatus
		bind   *Binding // nil: bind
	}{
		{"fresh", testSecret, "troika", n, t0, nonceValid, nil},
		{"just before expiry", testSecret, "troika", n, t0.Add(ttl), nonceValid, nil},
		{"expired", testSecret, "troika", n, t0.Add(ttl + time.Millisecond), nonceStale, nil},
		{"long expired", testSecret, "troika", n, t0.Add(1000 * time.Hour), nonceStale, nil},
		{"slightly in the future (clock skew)", testSecret, "troika", n, t0.Add(-30 * time.Second), nonceValid, nil},
		{"far in the future", testSecret, "troika", n, t0.Add(-2 * time.Minute), nonceInvalid, nil},
		{"other secret", []byte("another secret of 32 bytes......"), "troika", n, t0, nonceInvalid, nil},
		{"other realm", testSecret, "other", n, t0, nonceInvalid, nil},
		{"tampered timestamp", testSecret, "troika", flip(n, 3), t0, nonceInvalid, nil},
		{"tampered mac", testSecret, "troika", flip(n, 20), t0, nonceInvalid, nil},
		{"truncated", testSecret, "troika", n[:31], t0, nonceInvalid, nil},
		{"padded", testSecret, "troika", n + "=", t0, nonceInvalid, nil},
		{"not base64", testSecret, "troika", strings.Repeat("*", nonceLen), t0, nonceInvalid, nil},
		{"empty", testSecret, "troika", "", t0, nonceInvalid, nil},
		{"no secret", nil, "troika", n, t0, nonceInvalid, nil},
		{"other source", testSecret, "troika", n, t0, nonceInvalid, &Binding{Source: netip.MustParseAddr("192.0.2.8"), CallID: "call-1@phone", FromTag: "f1"}},
		{"IPv4 as IPv6", testSecret, "troika", n, t0, nonceValid, &Binding{Source: netip.MustParseAddr("::ffff:192.0.2.7"), CallID: "call-1@phone", FromTag: "f1"}},
		{"other Call-ID", testSecret, "troika", n, t0, nonceInvalid, &Binding{Source: netip.MustParseAddr("192.0.2.7"), CallID: "call-2@phone", FromTag: "f1"}},
		{"other From tag", testSecret, "troika", n, t0, nonceInvalid, &Binding{Source: netip.MustParseAddr("192.0.2.7"), CallID: "call-1@phone", FromTag: "f2"}},
		{"Call-ID and tag shifted", testSecret, "troika", n, t0, nonceInvalid, &Binding{Source: netip.MustParseAddr("192.0.2.7"), CallID: "call-1@phonef", FromTag: "1"}},
	}
	for _, c := range cases {
		b := bind
		if c.bind != nil {
			b = *c.bind
		}
		if got, _, _ := checkNonce(c.secret, c.realm, c.nonce, b, c.at, ttl); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	// A timestamp rewritten to look fresh fails the MAC.
	raw, _ := base64.RawURLEncoding.DecodeString(n)
	raw[7]++
	if got, _, _ := checkNonce(testSecret, "troika", base64.RawURLEncoding.EncodeToString(raw), bind, t0, ttl); got != nonceInvalid {
		t.Errorf("re-dated nonce: got %v", got)
	}
	// Two nodes sharing the secret agree.
	if a, b := MintNonce(testSecret, "troika", bind, t0), MintNonce(append([]byte(nil), testSecret...), "troika", bind, t0); a != b {
		t.Errorf("same secret and time give different nonces")
	}
}

// Known-answer vectors: RFC 2617 §3.5 and RFC 7616 §3.9.1.
func TestDigestResponseVectors(t *testing.T) {
	cases := []struct {
		name                                              string
		alg                                               string
		user, realm, pass, method, uri, nonce, nc, cnonce string
		want                                              string
	}{
		{"RFC 2617 MD5", "MD5", "Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
			"dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001", "0a4f113b", "6629fae49393a05397450978507c4ef1"},
		{"RFC 7616 MD5", "MD5", "Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
			"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
			"8ca523f5e9506fed4657c9700eebdbec"},
		{"RFC 7616 SHA-256", "SHA-256", "Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
			"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
			"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	}
	for _, c := range cases {
		got := Response(digestHash(c.alg), c.user, c.realm, c.pass, c.method, c.uri, c.nonce, c.nc, c.cnonce, "auth")
		if got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
		// The same through header parsing and verify.
		hdr := `Digest username="` + c.user + `", realm="` + c.realm + `", uri="` + c.uri + `", algorithm=` + c.alg +
			`, nonce="` + c.nonce + `", nc=` + c.nc + `, cnonce="` + c.cnonce + `", qop=auth, response="` + c.want + `"`
		cr, err := findCredentials([]string{`Basic Zm9vOmJhcg==`, hdr}, c.realm)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if msg := cr.wellFormed(); msg != "" {
			t.Fatalf("%s: %s", c.name, msg)
		}
		if !cr.verify(cr.offered([]string{MD5, SHA256}), c.method, ha1Of(cr, c.pass)) {
			t.Errorf("%s: verify refused the RFC's own response", c.name)
		}
		if cr.verify(cr.offered([]string{MD5, SHA256}), c.method, ha1Of(cr, c.pass+"x")) {
			t.Errorf("%s: verify accepted a wrong password", c.name)
		}
		if cr.verify(cr.offered([]string{MD5, SHA256}), "POST", ha1Of(cr, c.pass)) {
			t.Errorf("%s: verify accepted another method", c.name)
		}
	}
}

// The server's verification agrees with an independent client
// implementation (github.com/icholy/digest) for SIP requests, and the nc
// and cnonce are covered by the hash.
func TestDigestAgainstClient(t *testing.T) {
	now := time.Now()
	nonce := MintNonce(testSecret, "troika", Binding{}, now)
	for _, hdr := range challenges("troika", nonce, false, []string{SHA256, MD5}) {
		chal, err := digest.ParseChallenge(hdr)
		if err != nil {
			t.Fatal(err)
		}
		if !chal.SupportsQOP("auth") || chal.Realm != "troika" || chal.Nonce != nonce {
			t.Fatalf("challenge %q", hdr)
		}
		for _, nc := range []int{1, 2, 0x1f} {
			cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:127.0.0.1:5060", Username: "1001", Password: "pw1001", Count: nc})
			if err != nil {
				t.Fatal(err)
			}
			c, err := findCredentials([]string{cred.String()}, "troika")
			if err != nil {
				t.Fatal(err)
			}
			if !c.verify(c.offered([]string{MD5, SHA256}), "REGISTER", ha1Of(c, "pw1001")) {
				t.Errorf("%s nc=%d: client credentials refused: %s", chal.Algorithm, nc, cred)
			}
			// Change nc or cnonce without recomputing: refused.
			c2 := *c
			c2.nc = "00000099"
			if c2.verify(c.offered([]string{MD5, SHA256}), "REGISTER", ha1Of(c, "pw1001")) {
				t.Errorf("%s: a different nc verified", chal.Algorithm)
			}
			c3 := *c
			cc := *c.Credentials
			cc.Cnonce = "forged"
			c3.Credentials = &cc
			if c3.verify(c.offered([]string{MD5, SHA256}), "REGISTER", ha1Of(c, "pw1001")) {
				t.Errorf("%s: a different cnonce verified", chal.Algorithm)
			}
		}
	}
	hdrs := challenges("troika", nonce, true, []string{SHA256, MD5})
	if len(hdrs) != 2 || !strings.Contains(hdrs[0], "algorithm=SHA-256") || !strings.Contains(hdrs[1], "algorithm=MD5") {
		t.Errorf("challenges must offer SHA-256 then MD5: %q", hdrs)
	}
	for _, h := range hdrs {
		if !strings.Contains(h, "stale=true") || !strings.Contains(h, `qop="auth"`) {
			t.Errorf("stale challenge %q", h)
		}
	}
	c, _ := findCredentials([]string{`Digest username="a", realm="troika", nonce="n", uri="u", response="r"`}, "troika")
	if c.offered([]string{SHA256}) != "" || c.offered([]string{SHA256, MD5}) != MD5 {
		t.Errorf("absent algorithm must mean MD5 and MD5 only when offered")
	}
	if digestHash("sha-256")().Size() != sha256.Size || digestHash("")().Size() != md5.Size || digestHash("SHA-512") != nil {
		t.Errorf("digestHash algorithm table")
	}
}

func TestCredentialsFormat(t *testing.T) {
	good := `Digest username="1001", realm="troika", nonce="n", uri="sip:x", response="abc", qop=auth, nc=00000001, cnonce="c"`
	cases := []struct {
		hdr     []string
		wantErr error
		wantBad bool
	}{
		{[]string{good}, nil, false},
		{nil, errNoCredentials, false},
		{[]string{`Basic abc`}, errNoCredentials, false},
		{[]string{strings.Replace(good, `"troika"`, `"other"`, 1)}, errNoCredentials, false},
		{[]string{`Digest username="1001, realm="troika`}, errBadCredentials, false},
		{[]string{`Digest username="1001", realm="troika", nc=zz`}, errBadCredentials, false},
		{[]string{strings.Replace(good, "qop=auth, ", "", 1)}, nil, true},
		{[]string{strings.Replace(good, "qop=auth", "qop=auth-int", 1)}, nil, true},
		{[]string{strings.Replace(good, `cnonce="c"`, `cnonce=""`, 1)}, nil, true},
		{[]string{strings.Replace(good, `response="abc"`, `response=""`, 1)}, nil, true},
		{[]string{`Digest realm="troika", nonce="n"`}, nil, true},
	}
	for i, c := range cases {
		cr, err := findCredentials(c.hdr, "troika")
		if err != c.wantErr {
			t.Errorf("%d: err %v, want %v", i, err, c.wantErr)
			continue
		}
		if err == nil && (cr.wellFormed() != "") != c.wantBad {
			t.Errorf("%d: wellFormed %q, want bad=%v", i, cr.wellFormed(), c.wantBad)
		}
	}
}

func TestAuthLimiter(t *testing.T) {
	l := newLimiter(3, time.Minute)
	t0 := time.Unix(1_700_000_000, 0)
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	for i := 0; i < 3; i++ {
		if l.Fail(a, t0) {
			t.Fatalf("blocked after %d failures", i+1)
		}
	}
	if l.Blocked(a, t0) {
		t.Fatal("blocked at the limit")
	}
	if !l.Fail(a, t0) || !l.Blocked(a, t0.Add(59*time.Second)) {
		t.Fatal("not blocked over the limit")
	}
	if l.Blocked(b, t0) {
		t.Fatal("another source blocked")
	}
	if l.Blocked(a, t0.Add(time.Minute)) {
		t.Fatal("still blocked after blockFor")
	}
	// A new window forgets old failures.
	for i := 0; i < 3; i++ {
		l.Fail(b, t0)
	}
	if l.Fail(b, t0.Add(61*time.Second)) {
		t.Fatal("failures of the previous window counted")
	}
	// IPv6 sources share their /64.
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff")
	for i := 0; i < 3; i++ {
		l.Fail(v6a, t0)
	}
	if !l.Fail(v6b, t0) || !l.Blocked(v6a, t0) {
		t.Fatal("IPv6 /64 not counted together")
	}
	// Bounded memory: past maxTracked, new sources are not counted.
	l2 := newLimiter(1, time.Minute)
	l2.maxTracked = 10
	for i := 0; i < 1000; i++ {
		ip := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		l2.Fail(ip, t0)
		l2.Fail(ip, t0)
	}
	if c, bl := l2.Size(); c > 10 || bl > 10 {
		t.Fatalf("limiter grew to %d counted, %d blocked", c, bl)
	}
	// Disabled.
	l3 := newLimiter(-1, time.Minute)
	for i := 0; i < 100; i++ {
		l3.Fail(a, t0)
	}
	if l3.Blocked(a, t0) {
		t.Fatal("disabled limiter blocked")
	}
}

// ha1Of is the HA1 (hex) of password for the user and realm of c.
func ha1Of(c *credentials, password string) string {
	return hashJoin(digestHash(c.Algorithm)(), c.Username, c.Realm, password)
}

// challenges are written as github.com/icholy/digest writes them, and
// requestKey is FNV-1a of the Call-ID, a 0 byte and the CSeq number.
func TestChallengeFormat(t *testing.T) {
	for _, stale := range []bool{false, true} {
		got := challenges("troika", "AAABjN2xJ0B9cHr2c3bWq8Ug0Y3e5Hq1", stale, []string{SHA256, MD5})
		for i, alg := range []string{SHA256, MD5} {
			want := (&digest.Challenge{Realm: "troika", Nonce: "AAABjN2xJ0B9cHr2c3bWq8Ug0Y3e5Hq1", Stale: stale, Algorithm: alg, QOP: []string{"auth"}}).String()
			if got[i] != want {
				t.Errorf("challenge %s stale=%v:\n got %s\nwant %s", alg, stale, got[i], want)
			}
		}
	}
	for _, nc := range []int{1, 0xa, 0x1f3, 0xffffffff} {
		if got, want := formatNC(nc), fmt.Sprintf("%08x", nc); got != want {
			t.Errorf("nc %d: %q, want %q", nc, got, want)
		}
	}
	req := registerWith(t, "192.0.2.7:5060", oldNonce(time.UnixMilli(1_700_000_000_000)), 1)
	h := fnv.New64a()
	h.Write([]byte("reg-1@phone\x002"))
	if got := requestKey(req); got != h.Sum64() {
		t.Errorf("requestKey %x, want FNV-1a %x", got, h.Sum64())
	}
}
