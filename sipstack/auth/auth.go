package auth

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/sipmsg"
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
// An initial INVITE may also come from a vendor (docs/ARCHITECTURE.md,
// authorizeInvite): first by its source address, then by digest
// credentials whose user name is a vendor connection's, checked against
// the vendor's password. Vendor credentials are answered exactly like an
// account's (the same 407, the same 403 for a wrong password), and a
// vendor user name never falls through to an account: user names are
// unique across accounts, vendors and connections (an fsm rule), and a
// wrong vendor password is simply refused.

// Scheme names the status and headers of one use of digest.
type Scheme struct {
	code      int      // 401 or 407
	reason    string   // its reason phrase
	challenge string   // header carrying the challenge
	answers   []string // headers carrying credentials, in order of preference
}

var (
	// WWW is the registrar's (RFC 3261 §22.2).
	WWW = Scheme{code: sip.StatusUnauthorized, reason: "Unauthorized",
		challenge: "WWW-Authenticate", answers: []string{"Authorization"}}
	// Proxy is the B2BUA's (RFC 3261 §22.3). Credentials in
	// Authorization are accepted too: a phone that answered the
	// registrar's 401 may reuse them, and any node's nonce is valid.
	Proxy = Scheme{code: sip.StatusProxyAuthRequired, reason: "Proxy Authentication Required",
		challenge: "Proxy-Authenticate", answers: []string{"Proxy-Authorization", "Authorization"}}
)

// How a caller was recognised (logs, and the "by" of vendor calls).
const (
	ByAccount    = "account"     // digest against the account's password
	ByVendorIP   = "vendor_ip"   // the source address is in a connection's remote_ips
	ByVendorUser = "vendor_user" // digest against the vendor's password
)

// Principal is who a request comes from: a customer's account, or (for
// an initial INVITE only) a vendor's connection.
type Principal struct {
	Account fsm.Account     // when conn is nil
	Conn    *fsm.Connection // a "calls from vendor via SIP" connection
	Vendor  fsm.Vendor      // conn's vendor
	By      string          // authAccount, authVendorIP or authVendorUser
}

func (p Principal) IsVendor() bool { return p.Conn != nil }

// authenticate checks req's digest credentials at now against the
// accounts. When user is not empty it is the only username accepted (the
// registrar requires the To user). It returns the authenticated account,
// or the reply challenging or refusing the request.
func (a *Authenticator) Authenticate(socket string, req *sip.Request, sch Scheme, user string, now time.Time) (fsm.Account, *sipmsg.Reply) {
	p, r := a.checkDigest(socket, req, sch, user, now, false)
	return p.Account, r
}

// authorizeInvite decides who an initial INVITE comes from, in this
// order:
//  1. a vendor connection whose remote_ips hold the packet's real source
//     address (not Via: that is the sender's word): no digest;
//  2. digest credentials whose user name is a vendor connection's (its
//     own, or its vendor's): checked against the vendor's password; a
//     wrong one is refused (403), never tried as an account's;
//  3. otherwise a customer: digest against the account (the 407 challenge
//     for an INVITE without credentials is the same for both, so a vendor
//     sending from an unlisted address answers it with its credentials).
func (a *Authenticator) AuthorizeInvite(socket string, req *sip.Request, now time.Time) (Principal, *sipmsg.Reply) {
	if src, ok := packetSource(req); ok {
		if cn, ok := a.state.ConnectionForSource(src); ok {
			if v, ok := a.state.Vendor(cn.Vendor); ok {
				return Principal{Conn: &cn, Vendor: v, By: ByVendorIP}, nil
			}
		}
	}
	return a.checkDigest(socket, req, Proxy, "", now, true)
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
// AuthorizeInvite).
func (a *Authenticator) checkDigest(socket string, req *sip.Request, sch Scheme, user string, now time.Time, vendors bool) (Principal, *sipmsg.Reply) {
	rc := &a.cfg
	var src netip.Addr
	if ap, err := netip.ParseAddrPort(req.Source()); err == nil {
		src = ap.Addr().Unmap()
	}
	if a.limiter.Blocked(src, now) {
		a.refused(refusalRateLimited)
		return Principal{}, &sipmsg.Reply{Code: sip.StatusForbidden, Reason: "Forbidden", Result: sipmsg.ResultRateLimited}
	}
	secret := a.state.NonceSecret()
	if len(secret) == 0 {
		r := sipmsg.Unavailable("Service Unavailable")
		return Principal{}, &r
	}
	if realm := a.state.Realm(); realm != "" && realm != rc.Realm {
		a.log.Error("the cluster's credentials are made for another realm: no digest can verify; set registrar.realm on every node",
			"cluster_realm", realm, "registrar_realm", rc.Realm)
		r := sipmsg.Unavailable("Service Unavailable")
		return Principal{}, &r
	}
	bind := bindingOf(req, src)

	creds, err := findCredentials(sipmsg.HeaderValues(req, sch.answers...), rc.Realm)
	switch {
	case errors.Is(err, errNoCredentials):
		r := a.challenge(sch, secret, bind, now, false)
		return Principal{}, &r
	case err != nil:
		r := sipmsg.BadRequest("Malformed " + sch.answers[0] + " header")
		return Principal{}, &r
	}
	if msg := creds.wellFormed(); msg != "" {
		r := sipmsg.BadRequest(msg)
		return Principal{}, &r
	}
	alg := creds.offered(rc.Algorithms)
	if alg == "" {
		r := a.challenge(sch, secret, bind, now, false)
		return Principal{}, &r
	}
	nonce, issued, mac := a.macs.check(secret, rc.Realm, creds.Nonce, bind, now, rc.NonceTTL)
	if nonce == nonceInvalid {
		nonce, issued, mac = a.unboundNonce(secret, creds.Nonce, now)
		// An unbound nonce is the same for every challenge of its
		// millisecond: its nc is tracked per user name and cnonce, which a
		// replay of a captured header repeats and another phone does not.
		mac = unboundNCKey(mac, creds.Username, creds.Cnonce)
	}
	if nonce == nonceInvalid {
		// Not ours, or issued to another source, Call-ID or From tag: a
		// captured header buys nothing. Not counted against the source.
		a.refused(refusalForeignNonce)
		r := a.challenge(sch, secret, bind, now, false)
		return Principal{}, &r
	}
	if !sameURI(creds.URI, req.Recipient) {
		a.refused(refusalURIMismatch)
		r := sipmsg.BadRequest("Authorization uri does not match the Request-URI")
		return Principal{}, &r
	}
	if ok, wait := a.guard.allow(creds.Username, src, now); !ok {
		a.refused(refusalThrottled)
		a.log.Debug("authentication for a user name under guessing: not verified", "user", creds.Username,
			"source", src.String(), "socket", socket, "retry_in", wait)
		return Principal{}, &sipmsg.Reply{Code: sip.StatusServiceUnavailable, Reason: "Service Unavailable", Result: sipmsg.ResultThrottled,
			Headers: []sip.Header{sip.NewHeader("Retry-After", strconv.Itoa(int(max(wait, time.Second).Seconds())))}}
	}
	var (
		p       Principal
		secrets fsm.Credentials
		known   bool
	)
	if cn, v, ok := a.vendorUser(creds.Username, vendors); ok {
		p = Principal{Conn: &cn, Vendor: v, By: ByVendorUser}
		secrets = v.Credentials
		if cn.Username == creds.Username {
			secrets = cn.Credentials
		}
		known = secrets.Set()
	} else {
		p.Account, known = a.state.Account(creds.Username)
		p.By, secrets = ByAccount, p.Account.Credentials
	}
	ha1, ok := secrets.HA1(alg, creds.Username, rc.Realm)
	if !known || !ok {
		// Verify anyway, against credentials no account has, so unknown
		// users take the same time.
		known = false
		ha1, _ = a.nobody.HA1(alg, "", "")
	}
	verified := creds.verify(alg, string(req.Method), ha1)
	if !verified || !known || (user != "" && creds.Username != user) {
		a.failures.Inc()
		a.refused(refusalWrongPassword)
		a.guard.failed(creds.Username, src, now)
		if p.IsVendor() {
			if a.cfg.VendorFailures != nil {
				a.cfg.VendorFailures.Inc()
			}
			a.log.Info("vendor digest authentication failed", "vendor", p.Vendor.ID, "connection", p.Conn.ID,
				"source", src.String(), "socket", socket)
		}
		if a.limiter.Fail(src, now) {
			a.blocks.Inc()
			a.log.Warn("source blocked after repeated failed authentications", "source", src.String(),
				"for", rc.BlockFor, "socket", socket, "method", string(req.Method))
		}
		r := sipmsg.Forbidden()
		return Principal{}, &r
	}
	if !p.IsVendor() && p.Account.Blocked {
		r := sipmsg.Forbidden()
		return Principal{}, &r
	}
	if nonce == nonceStale {
		r := a.challenge(sch, secret, bind, now, true)
		r.Result = sipmsg.ResultStale
		return Principal{}, &r
	}
	switch a.nc.use(mac, issued, uint32(creds.Nc), requestKey(req), now.UnixMilli()) {
	case ncReplayed:
		a.refused(refusalReplay)
		a.log.Info("digest credentials used again: refused as a replay", "user", creds.Username, "nc", creds.nc,
			"source", src.String(), "socket", socket, "method", string(req.Method))
		r := a.challenge(sch, secret, bind, now, true)
		r.Result = sipmsg.ResultReplayed
		return Principal{}, &r
	case ncForgotten:
		r := a.challenge(sch, secret, bind, now, true)
		r.Result = sipmsg.ResultStale
		return Principal{}, &r
	}
	a.guard.succeeded(creds.Username, src, now)
	return p, nil
}

// unboundNonce checks nonce as one bound to nothing, issued by a node of
// an older build while one may still run (Config.UnboundNonces).
func (a *Authenticator) unboundNonce(secret []byte, nonce string, now time.Time) (nonceStatus, int64, [nonceMACLen]byte) {
	if a.cfg.UnboundNonces == nil {
		return nonceInvalid, 0, [nonceMACLen]byte{}
	}
	if a.cfg.UnboundNonces() {
		a.unboundUntil.Store(now.UnixMilli())
	}
	st, issued, mac := checkUnboundNonce(secret, a.cfg.Realm, nonce, now, a.cfg.NonceTTL)
	if st == nonceInvalid || issued > a.unboundUntil.Load() {
		return nonceInvalid, 0, mac
	}
	return st, issued, mac
}

// bindingOf is what a nonce for req from src is bound to: the source, and
// the Call-ID of a REGISTER, or the Call-ID and From tag of a request
// outside a dialog (a new call).
func bindingOf(req *sip.Request, src netip.Addr) Binding {
	b := Binding{Source: src}
	cid := ""
	if h := req.CallID(); h != nil {
		cid = h.Value()
	}
	switch to := req.To(); {
	case req.Method == sip.REGISTER:
		b.CallID = cid
	case to == nil || !to.Params.Has("tag"):
		b.CallID = cid
		if from := req.From(); from != nil {
			b.FromTag, _ = from.Params.Get("tag")
		}
	}
	return b
}

// requestKey identifies a request among the uses of one nonce: its
// Call-ID and CSeq (a retransmission has both), hashed with FNV-1a.
func requestKey(req *sip.Request) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	if cid := req.CallID(); cid != nil {
		v := cid.Value()
		for i := 0; i < len(v); i++ {
			h = (h ^ uint64(v[i])) * prime
		}
	}
	if cs := req.CSeq(); cs != nil {
		var b [24]byte // a 0 byte, then the number in decimal
		for _, c := range strconv.AppendUint(b[:1], uint64(cs.SeqNo), 10) {
			h = (h ^ uint64(c)) * prime
		}
	}
	return h
}

// sameURI reports whether the digest uri names the Request-URI (RFC 7616
// §3.4.6: the server checks it, or a captured response could be replayed
// towards another destination): the same scheme, user and host.
// Parameters and the port are left aside: clients disagree on writing the
// port, and neither changes who is called. A digest uri without a user
// part is taken for the host alone: SIPp writes "sip:host:port" whatever
// the Request-URI (unless run with -auth_uri). Such credentials still buy
// nothing elsewhere: the nonce is bound to the request's source, Call-ID
// and From tag, and its nc to the one request (ncache.go).
func sameURI(digestURI string, ruri sip.Uri) bool {
	var u sip.Uri
	if err := sip.ParseUri(digestURI, &u); err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, ruri.Scheme) && (u.User == ruri.User || u.User == "") &&
		strings.EqualFold(strings.Trim(u.Host, "[]"), strings.Trim(ruri.Host, "[]"))
}

// vendorUser returns the vendor connection a digest user name is for,
// when vendors may authenticate.
func (a *Authenticator) vendorUser(name string, vendors bool) (fsm.Connection, fsm.Vendor, bool) {
	if !vendors || name == "" {
		return fsm.Connection{}, fsm.Vendor{}, false
	}
	return a.state.ConnectionForUser(name)
}

// challenge is a 401 or 407 offering every configured algorithm with one
// fresh nonce. While a node of an older build may run (a rolling
// upgrade), the nonce is bound to nothing, as that build issues them, so
// that a phone answering the old node that took its address over is not
// refused; it is bound again as soon as every voter runs a build that
// binds nonces.
func (a *Authenticator) challenge(sch Scheme, secret []byte, b Binding, now time.Time, stale bool) sipmsg.Reply {
	var nonce string
	if a.cfg.UnboundNonces != nil && a.cfg.UnboundNonces() {
		a.unboundUntil.Store(now.UnixMilli())
		nonce = mintUnboundNonce(secret, a.cfg.Realm, now)
	} else {
		nonce = a.macs.mint(secret, a.cfg.Realm, b, now)
	}
	var hdrs []sip.Header
	for _, c := range challenges(a.cfg.Realm, nonce, stale, a.cfg.Algorithms) {
		hdrs = append(hdrs, sip.NewHeader(sch.challenge, c))
	}
	return sipmsg.Reply{Code: sch.code, Reason: sch.reason, Headers: hdrs, Result: sipmsg.ResultUnauthorized}
}
