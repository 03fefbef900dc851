package sipstack

import (
	"errors"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
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

// authenticate checks req's digest credentials at now. When user is not
// empty it is the only username accepted (the registrar requires the To
// user). It returns the authenticated account, or the reply challenging or
// refusing the request.
func (s *Server) authenticate(sock *socket, req *sip.Request, sch digestScheme, user string, now time.Time) (fsm.Account, *reply) {
	rc := &s.cfg.Registrar
	var src netip.Addr
	if ap, err := netip.ParseAddrPort(req.Source()); err == nil {
		src = ap.Addr().Unmap()
	}
	if s.limiter.Blocked(src, now) {
		return fsm.Account{}, &reply{code: sip.StatusForbidden, reason: "Forbidden", result: resRateLimited}
	}
	secret := s.state.NonceSecret()
	if len(secret) == 0 {
		r := unavailable("Service Unavailable")
		return fsm.Account{}, &r
	}

	creds, err := findCredentials(headerValues(req, sch.answers...), rc.Realm)
	switch {
	case errors.Is(err, errNoCredentials):
		r := s.challenge(sch, secret, now, false)
		return fsm.Account{}, &r
	case err != nil:
		r := badRequest("Malformed " + sch.answers[0] + " header")
		return fsm.Account{}, &r
	}
	if msg := creds.wellFormed(); msg != "" {
		r := badRequest(msg)
		return fsm.Account{}, &r
	}
	alg := creds.offered(rc.Algorithms)
	if alg == "" {
		r := s.challenge(sch, secret, now, false)
		return fsm.Account{}, &r
	}
	nonce := checkNonce(secret, rc.Realm, creds.Nonce, now, rc.NonceTTL)
	if nonce == nonceInvalid {
		r := s.challenge(sch, secret, now, false)
		return fsm.Account{}, &r
	}
	acct, known := s.state.Account(creds.Username)
	password := acct.Password
	if !known {
		// Hash anyway, with a password no account can have (fsm passwords
		// are printable), so unknown users take the same time.
		password = "\x00"
	}
	ok := creds.verify(digestHash(alg), string(req.Method), password)
	if !ok || !known || (user != "" && creds.Username != user) {
		s.m.authFailures.Inc()
		if s.limiter.Fail(src, now) {
			s.log.Warn("source blocked after repeated failed authentications", "source", src.String(),
				"for", rc.AuthBlockFor, "socket", sock.name, "method", string(req.Method))
		}
		r := forbidden()
		return fsm.Account{}, &r
	}
	if acct.Blocked {
		r := forbidden()
		return fsm.Account{}, &r
	}
	if nonce == nonceStale {
		r := s.challenge(sch, secret, now, true)
		r.result = resStale
		return fsm.Account{}, &r
	}
	return acct, nil
}

// challenge is a 401 or 407 offering every configured algorithm with one
// fresh nonce.
func (s *Server) challenge(sch digestScheme, secret []byte, now time.Time, stale bool) reply {
	nonce := mintNonce(secret, s.cfg.Registrar.Realm, now)
	var hdrs []sip.Header
	for _, c := range challenges(s.cfg.Registrar.Realm, nonce, stale, s.cfg.Registrar.Algorithms) {
		hdrs = append(hdrs, sip.NewHeader(sch.challenge, c))
	}
	return reply{code: sch.code, reason: sch.reason, headers: hdrs, result: resUnauthorized}
}
