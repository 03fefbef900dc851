package sipstack

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
)

// The registrar (RFC 3261 §10.3) with digest authentication.
//
// Response codes:
//   - 401 with one WWW-Authenticate challenge per configured algorithm
//     (default SHA-256, then MD5) when there are no credentials for the
//     realm, the nonce is not ours, or the algorithm is not offered; with
//     stale=true when the credentials are right but the nonce expired.
//   - 403 Forbidden for a wrong password, an unknown account, a blocked
//     account, an Authorization username other than the To user, and any
//     source over the failed-authentication limit. Unknown accounts are
//     challenged and refused exactly like wrong passwords (same code,
//     reason and headers, and the same hashing work), so accounts cannot
//     be enumerated.
//   - 400 naming the problem for malformed requests; 420 for an
//     unsupported Require; 423 with Min-Expires.
//   - 403 Too Many Contacts past the AOR's cap: a policy refusal that
//     retrying cannot fix. 503 would make RFC 3263 clients fail over to the
//     next server and retry, getting the same answer from every node.
//   - 500 Stale CSeq when the fsm refuses a CSeq not above the binding's
//     (RFC 3261 §10.3 step 7: "the update MUST be aborted and the request
//     fails"; §12.2.2 answers out-of-order CSeqs with 500). No Retry-After:
//     repeating that request cannot succeed, the phone's next REGISTER
//     carries a higher CSeq.
//   - 503 with Retry-After when the cluster has no nonce secret yet, the
//     replicated write fails or times out, or too many REGISTERs are in
//     flight. A REGISTER is answered 200 only once its bindings are
//     committed.

const retryAfter = "5" // seconds, on 503

// supportedExtensions are the option tags a REGISTER's Require may name.
var supportedExtensions = map[string]bool{"path": true}

func (s *Server) handleRegister(sock *socket, req *sip.Request, tx sip.ServerTransaction) {
	r := s.register(sock, req)
	s.m.register.WithLabelValues(r.result).Inc()
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		to := ""
		if h := req.To(); h != nil {
			to = h.Address.User
		}
		s.log.Debug("REGISTER", "socket", sock.name, "source", req.Source(), "aor", to, "code", r.code, "result", r.result)
	}
	s.reply(tx, req, r)
}

// register decides the answer to one REGISTER received on sock.
func (s *Server) register(sock *socket, req *sip.Request) reply {
	now := s.cfg.Now()
	rc := &s.cfg.Registrar
	if r := checkRequest(req); r != nil {
		return *r
	}
	if r := checkRequire(req, supportedExtensions); r != nil {
		return *r
	}
	to := req.To()
	aor := to.Address.User
	if aor == "" {
		return badRequest("To URI has no user part")
	}
	if _, r := s.authenticate(sock, req, wwwDigest, aor, now); r != nil {
		return *r
	}

	// Bindings.
	contacts := headerValues(req, "Contact", "m")
	if len(contacts) == 0 {
		return s.okReply(req, s.state.Bindings(aor, now.UnixMilli()), now, resQuery)
	}
	cmd, r := s.buildRegister(sock, req, aor, contacts, now)
	if r != nil {
		return *r
	}

	if current := s.state.Bindings(aor, now.UnixMilli()); isRetransmission(cmd, current) {
		// Already applied: a retransmission whose 200 was lost (the
		// transaction ended with its response; see reply).
		return s.okReply(req, current, now, resRetransmission)
	}

	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		return unavailable("Service Unavailable")
	}
	ctx, cancel := context.WithTimeout(s.baseCtx, rc.ProposeTimeout)
	defer cancel()
	start := time.Now()
	res, err := s.store.Propose(ctx, cmd)
	s.m.proposeDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		s.log.Warn("REGISTER not stored: replicated write failed", "aor", aor, "socket", sock.name, "error", err)
		return unavailable("Service Unavailable")
	}
	if res.Err != nil {
		switch res.Err.Code {
		case fsm.CodeTooManyContacts:
			return reply{code: sip.StatusForbidden, reason: "Too Many Contacts", result: resTooManyContacts}
		case fsm.CodeStaleCSeq:
			return reply{code: sip.StatusInternalServerError, reason: "Stale CSeq", result: resStaleCSeq}
		case fsm.CodeNotFound: // deleted since authenticated
			return forbidden()
		}
		s.log.Error("REGISTER refused by the state machine", "aor", aor, "error", res.Err)
		return reply{code: sip.StatusInternalServerError, reason: "Server Internal Error", result: resError}
	}
	return s.okReply(req, res.Bindings, now, resOK)
}

// isRetransmission reports whether cmd has already been applied: every
// binding it adds carries its Call-ID and CSeq, and every binding it
// removes is gone. Applying it again would be refused as a stale CSeq.
func isRetransmission(cmd *fsm.Register, current []fsm.Binding) bool {
	if cmd.Wildcard {
		return false // cheap to apply again; the fsm makes it a no-op
	}
	for i := range cmd.Bindings {
		b := &cmd.Bindings[i]
		var found *fsm.Binding
		for j := range current {
			c := &current[j]
			if (b.Instance != "" && c.Instance == b.Instance && c.RegID == b.RegID) ||
				(b.Instance == "" && c.Instance == "" && c.Contact == b.Contact) {
				found = c
				break
			}
		}
		if b.ExpiresAt <= cmd.Now {
			if found != nil {
				return false
			}
			continue
		}
		if found == nil || found.CallID != cmd.CallID || found.CSeq != cmd.CSeq {
			return false
		}
	}
	return true
}

// buildRegister turns the request's contacts into an fsm.Register, or
// returns the reply refusing them.
func (s *Server) buildRegister(sock *socket, req *sip.Request, aor string, contactValues []string, now time.Time) (*fsm.Register, *reply) {
	rc := &s.cfg.Registrar
	hdrExp, hasHdrExp := 0, false
	if v := headerValues(req, "Expires"); len(v) > 0 {
		e, ok := parseDelta(v[0])
		if !ok {
			r := badRequest("Malformed Expires")
			return nil, &r
		}
		hdrExp, hasHdrExp = e, true
	}
	var specs []contactSpec
	wildcard := false
	for _, v := range contactValues {
		for _, elem := range splitList(v) {
			c, err := parseContact(elem)
			if errors.Is(err, errWildcard) {
				wildcard = true
				continue
			}
			var re requestError
			if errors.As(err, &re) {
				r := badRequest(string(re))
				return nil, &r
			}
			if len(specs) == maxContactsInReq {
				r := badRequest("Too many Contact entries")
				return nil, &r
			}
			specs = append(specs, c)
		}
	}
	cseq := req.CSeq().SeqNo
	nowMs := now.UnixMilli()
	cmd := &fsm.Register{AOR: aor, CallID: req.CallID().Value(), CSeq: cseq, Now: nowMs, MaxContacts: rc.MaxContacts}
	if wildcard {
		// RFC 3261 §10.3 step 6.
		if len(specs) > 0 {
			r := badRequest("Contact * must be the only Contact")
			return nil, &r
		}
		if !hasHdrExp || hdrExp != 0 {
			r := badRequest("Contact * requires Expires: 0")
			return nil, &r
		}
		cmd.Wildcard = true
		return cmd, nil
	}
	if len(specs) == 0 {
		r := badRequest("Empty Contact")
		return nil, &r
	}
	path, err := parsePath(headerValues(req, "Path"))
	if err != nil {
		r := badRequest(err.Error())
		return nil, &r
	}
	ua := ""
	if v := headerValues(req, "User-Agent"); len(v) > 0 {
		ua = cleanText(v[0], maxUserAgent)
	}
	for _, c := range specs {
		secs, brief := expiresFor(c, hdrExp, hasHdrExp, rc.DefaultExpires, rc.MinExpires, rc.MaxExpires)
		if brief {
			return nil, &reply{code: sip.StatusIntervalToBrief, reason: "Interval Too Brief", result: resTooBrief,
				headers: []sip.Header{sip.NewHeader("Min-Expires", strconv.Itoa(rc.MinExpires))}}
		}
		cmd.Bindings = append(cmd.Bindings, fsm.Binding{
			Contact:   c.URI,
			Source:    req.Source(),
			Transport: sock.transport,
			Ingress:   sock.name,
			ExpiresAt: nowMs + int64(secs)*1000,
			Q:         c.Q,
			Instance:  c.Instance,
			RegID:     c.RegID,
			UserAgent: ua,
			Path:      path,
		})
	}
	return cmd, nil
}

// okReply is the 200 OK listing every current binding with its own
// expires (RFC 3261 §10.3 step 8), the Date, and the request's Path when
// the phone supports it (RFC 3327 §5.3).
func (s *Server) okReply(req *sip.Request, bindings []fsm.Binding, now time.Time, result string) reply {
	nowMs := now.UnixMilli()
	hdrs := make([]sip.Header, 0, len(bindings)+4)
	for _, b := range bindings {
		hdrs = append(hdrs, sip.NewHeader("Contact", contactValue(&b, nowMs)))
	}
	hdrs = append(hdrs, sip.NewHeader("Date", now.UTC().Format(dateFormat)))
	if supports(req, "path") {
		if path, err := parsePath(headerValues(req, "Path")); err == nil {
			for _, p := range path {
				hdrs = append(hdrs, sip.NewHeader("Path", p))
			}
		}
	}
	return reply{code: sip.StatusOK, reason: "OK", headers: hdrs, result: result}
}

// dateFormat is RFC 1123 in GMT, as SIP's Date header wants (§20.17).
const dateFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

func contactValue(b *fsm.Binding, nowMs int64) string {
	var sb strings.Builder
	sb.WriteByte('<')
	sb.WriteString(b.Contact)
	sb.WriteString(">;expires=")
	sb.WriteString(strconv.Itoa(b.Expires(nowMs)))
	if b.Q >= 0 {
		sb.WriteString(";q=")
		sb.WriteString(formatQ(b.Q))
	}
	if b.Instance != "" {
		sb.WriteString(";+sip.instance=\"")
		sb.WriteString(b.Instance)
		sb.WriteByte('"')
		if b.RegID > 0 {
			sb.WriteString(";reg-id=")
			sb.WriteString(strconv.Itoa(b.RegID))
		}
	}
	return sb.String()
}

// formatQ writes thousandths as a q-value: 500 is "0.5", 1000 is "1".
func formatQ(q int) string {
	if q >= 1000 {
		return "1"
	}
	s := strconv.Itoa(1000 + q)[1:] // three digits
	s = strings.TrimRight(s, "0")
	if s == "" {
		return "0"
	}
	return "0." + s
}

func forbidden() reply {
	return reply{code: sip.StatusForbidden, reason: "Forbidden", result: resForbidden}
}

func badRequest(reason string) reply {
	return reply{code: sip.StatusBadRequest, reason: reason, result: resBadRequest}
}

func unavailable(reason string) reply {
	return reply{code: sip.StatusServiceUnavailable, reason: reason, result: resUnavailable,
		headers: []sip.Header{sip.NewHeader("Retry-After", retryAfter)}}
}

// optionTags returns the lower-cased option tags of the named headers.
func optionTags(req *sip.Request, names ...string) []string {
	var out []string
	for _, v := range headerValues(req, names...) {
		for _, t := range strings.Split(v, ",") {
			if t = strings.ToLower(strings.TrimSpace(t)); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

func supports(req *sip.Request, tag string) bool {
	for _, t := range optionTags(req, "Supported", "k") {
		if t == tag {
			return true
		}
	}
	return false
}

// checkRequire answers 420 Bad Extension listing the option tags of
// Require not in supported (RFC 3261 §8.2.2.3).
func checkRequire(req *sip.Request, supported map[string]bool) *reply {
	var bad []string
	for _, t := range optionTags(req, "Require") {
		switch {
		case !isToken(t):
			return &reply{code: sip.StatusBadRequest, reason: "Malformed Require", result: resBadRequest}
		case !supported[t] && len(bad) < 8:
			bad = append(bad, t)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return &reply{code: sip.StatusBadExtension, reason: "Bad Extension", result: resBadRequest,
		headers: []sip.Header{sip.NewHeader("Unsupported", strings.Join(bad, ", "))}}
}

// isToken reports whether s is an RFC 3261 token (safe to echo).
func isToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return true
}
