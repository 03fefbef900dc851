package sipstack

import (
	"errors"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// Digest authentication of requests, shared by the registrar (401,
// WWW-Authenticate / Authorization) and the B2BUA (407,
// Proxy-Authenticate / Proxy-Authorization).
//
// Both answer alike, so accounts cannot be enumerated through either:
//   - a challenge (one header per configured algorithm) when there are no
//     credentials for the realm, the nonce is not ours, or the algorithm is
//     not offered; with stale=true when the credentials are right but the
//     nonce expired;
//   - 403 Forbidden for a wrong password, an unknown account (hashed like
//     a known one), a blocked account, a username other than the one
//     required, and any source over the failed-authentication limit;
//   - 400 for malformed credentials, 503 while the cluster has no nonce
//     secret.
//
// An initial INVITE may also come from a vendor (DESIGN.md §1.3,
// authorizeInvite): first by its source address, then by digest
// credentials whose user name is a vendor connection's, checked against
// the vendor's password. Vendor credentials are answered exactly like an
// account's (the same 407, the same 403 for a wrong password), and a
// vendor user name never falls through to an account: user names are
// unique across accounts, vendors and connections (an fsm rule), and a
// wrong vendor password is simply refused.

// digestScheme names the status and headers of one use of digest.
type digestScheme struct {
	code      int      // 401 or 407
	reason    string   // its reason phrase
	challenge string   // header carrying the challenge
	answers   []string // headers carrying credentials, in order of preference
}

var (
	// wwwDigest is the registrar's (RFC 3261 §22.2).
	wwwDigest = digestScheme{code: sip.StatusUnauthorized, reason: "Unauthorized",
		challenge: "WWW-Authenticate", answers: []string{"Authorization"}}
	// proxyDigest is the B2BUA's (RFC 3261 §22.3). Credentials in
	// Authorization are accepted too: a phone that answered the
	// registrar's 401 may reuse them, and any node's nonce is valid.
	proxyDigest = digestScheme{code: sip.StatusProxyAuthRequired, reason: "Proxy Authentication Required",
		challenge: "Proxy-Authenticate", answers: []string{"Proxy-Authorization", "Authorization"}}
)

// How a caller was recognised (logs, and the "by" of vendor calls).
const (
	authAccount    = "account"     // digest against the account's password
	authVendorIP   = "vendor_ip"   // the source address is in a connection's remote_ips
	authVendorUser = "vendor_user" // digest against the vendor's password
)

// principal is who a request comes from: a customer's account, or (for
// an initial INVITE only) a vendor's connection.
type principal struct {
	account fsm.Account     // when conn is nil
	conn    *fsm.Connection // a "calls from vendor via SIP" connection
	vendor  fsm.Vendor      // conn's vendor
	by      string          // authAccount, authVendorIP or authVendorUser
}

func (p principal) isVendor() bool { return p.conn != nil }

// authenticate checks req's digest credentials at now against the
// accounts. When user is not empty it is the only username accepted (the
// registrar requires the To user). It returns the authenticated account,
// or the reply challenging or refusing the request.
func (s *Server) authenticate(sock *transport.Socket, req *sip.Request, sch digestScheme, user string, now time.Time) (fsm.Account, *sipmsg.Reply) {
	p, r := s.checkDigest(sock, req, sch, user, now, false)
	return p.account, r
}

// authorizeInvite decides who an initial INVITE comes from, in this
// order (DESIGN.md §1.3):
//  1. a vendor connection whose remote_ips hold the packet's real source
//     address (not Via: that is the sender's word): no digest;
//  2. digest credentials whose user name is a vendor connection's (its
//     own, or its vendor's): checked against the vendor's password; a
//     wrong one is refused (403), never tried as an account's;
//  3. otherwise a customer: digest against the account (the 407 challenge
//     for an INVITE without credentials is the same for both, so a vendor
//     sending from an unlisted address answers it with its credentials).
func (s *Server) authorizeInvite(sock *transport.Socket, req *sip.Request, now time.Time) (principal, *sipmsg.Reply) {
	if src, ok := packetSource(req); ok {
		if cn, ok := s.state.ConnectionForSource(src); ok {
			if v, ok := s.state.Vendor(cn.Vendor); ok {
				return principal{conn: &cn, vendor: v, by: authVendorIP}, nil
			}
		}
	}
	return s.checkDigest(sock, req, proxyDigest, "", now, true)
}

// packetSource returns the address the request's packet came from, as the
// transport saw it; false when unknown (never guessed from Via).
func packetSource(req *sip.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(req.MessageData.Source())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// checkDigest verifies req's digest credentials at now. The user name
// names an account, or with vendors a vendor connection (see
// authorizeInvite).
func (s *Server) checkDigest(sock *transport.Socket, req *sip.Request, sch digestScheme, user string, now time.Time, vendors bool) (principal, *sipmsg.Reply) {
	rc := &s.cfg.Registrar
	var src netip.Addr
	if ap, err := netip.ParseAddrPort(req.Source()); err == nil {
		src = ap.Addr().Unmap()
	}
	if s.limiter.Blocked(src, now) {
		return principal{}, &sipmsg.Reply{Code: sip.StatusForbidden, Reason: "Forbidden", Result: sipmsg.ResultRateLimited}
	}
	secret := s.state.NonceSecret()
	if len(secret) == 0 {
		r := sipmsg.Unavailable("Service Unavailable")
		return principal{}, &r
	}

	creds, err := findCredentials(sipmsg.HeaderValues(req, sch.answers...), rc.Realm)
	switch {
	case errors.Is(err, errNoCredentials):
		r := s.challenge(sch, secret, now, false)
		return principal{}, &r
	case err != nil:
		r := sipmsg.BadRequest("Malformed " + sch.answers[0] + " header")
		return principal{}, &r
	}
	if msg := creds.wellFormed(); msg != "" {
		r := sipmsg.BadRequest(msg)
		return principal{}, &r
	}
	alg := creds.offered(rc.Algorithms)
	if alg == "" {
		r := s.challenge(sch, secret, now, false)
		return principal{}, &r
	}
	nonce := checkNonce(secret, rc.Realm, creds.Nonce, now, rc.NonceTTL)
	if nonce == nonceInvalid {
		r := s.challenge(sch, secret, now, false)
		return principal{}, &r
	}
	var (
		p        principal
		password string
		known    bool
	)
	if cn, v, ok := s.vendorUser(creds.Username, vendors); ok {
		p = principal{conn: &cn, vendor: v, by: authVendorUser}
		password, known = v.Password, v.Password != ""
	} else {
		p.account, known = s.state.Account(creds.Username)
		p.by, password = authAccount, p.account.Password
	}
	if !known {
		// Hash anyway, with a password no account can have (fsm passwords
		// are printable), so unknown users take the same time.
		password = "\x00"
	}
	ok := creds.verify(digestHash(alg), string(req.Method), password)
	if !ok || !known || (user != "" && creds.Username != user) {
		s.m.authFailures.Inc()
		if p.isVendor() {
			s.m.vendorCall(vendorAuthFailed)
			s.log.Info("vendor digest authentication failed", "vendor", p.vendor.ID, "connection", p.conn.ID,
				"source", src.String(), "socket", sock.Name)
		}
		if s.limiter.Fail(src, now) {
			s.log.Warn("source blocked after repeated failed authentications", "source", src.String(),
				"for", rc.AuthBlockFor, "socket", sock.Name, "method", string(req.Method))
		}
		r := sipmsg.Forbidden()
		return principal{}, &r
	}
	if !p.isVendor() && p.account.Blocked {
		r := sipmsg.Forbidden()
		return principal{}, &r
	}
	if nonce == nonceStale {
		r := s.challenge(sch, secret, now, true)
		r.Result = sipmsg.ResultStale
		return principal{}, &r
	}
	return p, nil
}

// vendorUser returns the vendor connection a digest user name is for,
// when vendors may authenticate.
func (s *Server) vendorUser(name string, vendors bool) (fsm.Connection, fsm.Vendor, bool) {
	if !vendors || name == "" {
		return fsm.Connection{}, fsm.Vendor{}, false
	}
	return s.state.ConnectionForUser(name)
}

// challenge is a 401 or 407 offering every configured algorithm with one
// fresh nonce.
func (s *Server) challenge(sch digestScheme, secret []byte, now time.Time, stale bool) sipmsg.Reply {
	nonce := mintNonce(secret, s.cfg.Registrar.Realm, now)
	var hdrs []sip.Header
	for _, c := range challenges(s.cfg.Registrar.Realm, nonce, stale, s.cfg.Registrar.Algorithms) {
		hdrs = append(hdrs, sip.NewHeader(sch.challenge, c))
	}
	return sipmsg.Reply{Code: sch.code, Reason: sch.reason, Headers: hdrs, Result: sipmsg.ResultUnauthorized}
}
