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
	"github.com/troika-sip/troika/sipstack/auth"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
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

// supportedExtensions are the option tags a REGISTER's Require may name.
var supportedExtensions = map[string]bool{"path": true}

func (s *Server) handleRegister(sock *transport.Socket, req *sip.Request, tx sip.ServerTransaction) {
	r := s.register(sock, req)
	s.m.register.WithLabelValues(r.Result).Inc()
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		to := ""
		if h := req.To(); h != nil {
			to = h.Address.User
		}
		s.log.Debug("REGISTER", "socket", sock.Name, "source", req.Source(), "aor", to, "code", r.Code, "result", r.Result)
	}
	s.reply(tx, req, r)
}

// register decides the answer to one REGISTER received on sock.
func (s *Server) register(sock *transport.Socket, req *sip.Request) sipmsg.Reply {
	now := s.cfg.Now()
	rc := &s.cfg.Registrar
	if r := sipmsg.CheckRequest(req); r != nil {
		return *r
	}
	if r := sipmsg.CheckRequire(req, supportedExtensions); r != nil {
		return *r
	}
	to := req.To()
	aor := to.Address.User
	if aor == "" {
		return sipmsg.BadRequest("To URI has no user part")
	}
	if _, r := s.auth.Authenticate(sock.Name, req, auth.WWW, aor, now); r != nil {
		return *r
	}

	// Bindings.
	contacts := sipmsg.HeaderValues(req, "Contact", "m")
	if len(contacts) == 0 {
		return s.okReply(req, s.state.Bindings(aor, now.UnixMilli()), now, sipmsg.ResultQuery)
	}
	cmd, r := s.buildRegister(sock, req, aor, contacts, now)
	if r != nil {
		return *r
	}

	if current := s.state.Bindings(aor, now.UnixMilli()); isRetransmission(cmd, current) {
		// Already applied: a retransmission whose 200 was lost (the
		// transaction ended with its response; see reply).
		return s.okReply(req, current, now, sipmsg.ResultRetransmission)
	}

	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		return sipmsg.Unavailable("Service Unavailable")
	}
	ctx, cancel := context.WithTimeout(s.baseCtx, rc.ProposeTimeout)
	defer cancel()
	start := time.Now()
	res, err := s.store.Propose(ctx, cmd)
	s.m.proposeDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		s.log.Warn("REGISTER not stored: replicated write failed", "aor", aor, "socket", sock.Name, "error", err)
		return sipmsg.Unavailable("Service Unavailable")
	}
	if res.Err != nil {
		switch res.Err.Code {
		case fsm.CodeTooManyContacts:
			return sipmsg.Reply{Code: sip.StatusForbidden, Reason: "Too Many Contacts", Result: sipmsg.ResultTooManyContacts}
		case fsm.CodeStaleCSeq:
			return sipmsg.Reply{Code: sip.StatusInternalServerError, Reason: "Stale CSeq", Result: sipmsg.ResultStaleCSeq}
		case fsm.CodeNotFound: // deleted since authenticated
			return sipmsg.Forbidden()
		}
		s.log.Error("REGISTER refused by the state machine", "aor", aor, "error", res.Err)
		return sipmsg.Reply{Code: sip.StatusInternalServerError, Reason: "Server Internal Error", Result: sipmsg.ResultError}
	}
	return s.okReply(req, res.Bindings, now, sipmsg.ResultOK)
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
func (s *Server) buildRegister(sock *transport.Socket, req *sip.Request, aor string, contactValues []string, now time.Time) (*fsm.Register, *sipmsg.Reply) {
	rc := &s.cfg.Registrar
	hdrExp, hasHdrExp := 0, false
	if v := sipmsg.HeaderValues(req, "Expires"); len(v) > 0 {
		e, ok := sipmsg.ParseDelta(v[0])
		if !ok {
			r := sipmsg.BadRequest("Malformed Expires")
			return nil, &r
		}
		hdrExp, hasHdrExp = e, true
	}
	var specs []sipmsg.ContactSpec
	wildcard := false
	for _, v := range contactValues {
		for _, elem := range sipmsg.SplitList(v) {
			c, err := sipmsg.ParseContact(elem)
			if errors.Is(err, sipmsg.ErrWildcard) {
				wildcard = true
				continue
			}
			var re sipmsg.RequestError
			if errors.As(err, &re) {
				r := sipmsg.BadRequest(string(re))
				return nil, &r
			}
			if len(specs) == sipmsg.MaxContactsInRequest {
				r := sipmsg.BadRequest("Too many Contact entries")
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
			r := sipmsg.BadRequest("Contact * must be the only Contact")
			return nil, &r
		}
		if !hasHdrExp || hdrExp != 0 {
			r := sipmsg.BadRequest("Contact * requires Expires: 0")
			return nil, &r
		}
		cmd.Wildcard = true
		return cmd, nil
	}
	if len(specs) == 0 {
		r := sipmsg.BadRequest("Empty Contact")
		return nil, &r
	}
	path, err := sipmsg.ParsePath(sipmsg.HeaderValues(req, "Path"))
	if err != nil {
		r := sipmsg.BadRequest(err.Error())
		return nil, &r
	}
	ua := ""
	if v := sipmsg.HeaderValues(req, "User-Agent"); len(v) > 0 {
		ua = sipmsg.CleanText(v[0], sipmsg.MaxUserAgent)
	}
	for _, c := range specs {
		secs, brief := expiresFor(c, hdrExp, hasHdrExp, rc.DefaultExpires, rc.MinExpires, rc.MaxExpires)
		if brief {
			return nil, &sipmsg.Reply{Code: sip.StatusIntervalToBrief, Reason: "Interval Too Brief", Result: sipmsg.ResultTooBrief,
				Headers: []sip.Header{sip.NewHeader("Min-Expires", strconv.Itoa(rc.MinExpires))}}
		}
		cmd.Bindings = append(cmd.Bindings, fsm.Binding{
			Contact:   c.URI,
			Source:    req.Source(),
			Transport: sock.Transport,
			Ingress:   sock.Name,
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
func (s *Server) okReply(req *sip.Request, bindings []fsm.Binding, now time.Time, result string) sipmsg.Reply {
	nowMs := now.UnixMilli()
	hdrs := make([]sip.Header, 0, len(bindings)+4)
	for _, b := range bindings {
		hdrs = append(hdrs, sip.NewHeader("Contact", contactValue(&b, nowMs)))
	}
	hdrs = append(hdrs, sip.NewHeader("Date", now.UTC().Format(dateFormat)))
	if sipmsg.Supports(req, "path") {
		if path, err := sipmsg.ParsePath(sipmsg.HeaderValues(req, "Path")); err == nil {
			for _, p := range path {
				hdrs = append(hdrs, sip.NewHeader("Path", p))
			}
		}
	}
	return sipmsg.Reply{Code: sip.StatusOK, Reason: "OK", Headers: hdrs, Result: result}
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
		sb.WriteString(sipmsg.FormatQ(b.Q))
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
