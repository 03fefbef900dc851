package registrar

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/logthrottle"
	"github.com/troika-sip/troika/sipstack/auth"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// supportedExtensions are the option tags a REGISTER's Require may name.
var supportedExtensions = map[string]bool{"path": true}

// Handle decides the answer to a REGISTER received on sock and counts it.
// ctx bounds the replicated write (with ProposeTimeout).
func (reg *Registrar) Handle(ctx context.Context, sock *transport.Socket, req *sip.Request) sipmsg.Reply {
	var w written
	r := reg.register(ctx, sock, req, &w)
	reg.results.WithLabelValues(r.Result).Inc()
	reg.logOutcome(ctx, sock, req, r, w)
	return r
}

// written is what a REGISTER wrote: its command, and whether it changed
// the AOR's set of contacts (a refresh of the same ones does not).
type written struct {
	cmd     *fsm.Register
	changed bool
}

// Shed is the answer to a REGISTER turned away unread because the node
// has more than it can take (503 with Retry-After), counted.
func (reg *Registrar) Shed() sipmsg.Reply {
	reg.results.WithLabelValues(sipmsg.ResultOverloaded).Inc()
	r := sipmsg.Unavailable("Service Unavailable")
	r.Result = sipmsg.ResultOverloaded
	return r
}

// logOutcome logs a REGISTER's outcome: a change of the set of contacts
// at INFO; a refusal at INFO too, but at most one line per source and
// result every refusalLogEvery (an attacker's flood costs a few lines,
// with the count of the others); the steps of the protocol (challenges,
// queries, retransmissions) and the refreshes of the same contacts, which
// every phone sends every few minutes, at DEBUG.
func (reg *Registrar) logOutcome(ctx context.Context, sock *transport.Socket, req *sip.Request, r sipmsg.Reply, w written) {
	cmd := w.cmd
	aor := ""
	if h := req.To(); h != nil {
		aor = h.Address.User
	}
	switch {
	case r.Result == sipmsg.ResultOK && cmd != nil && !w.changed:
		if reg.log.Enabled(ctx, slog.LevelDebug) {
			reg.log.Debug("registration refreshed", "aor", aor, "contacts", len(cmd.Bindings), "source", req.Source(), "socket", sock.Name)
		}
	case r.Result == sipmsg.ResultOK && cmd != nil:
		added, removed := 0, 0
		expires, ua := int64(0), ""
		for _, b := range cmd.Bindings {
			ua = b.UserAgent
			if b.ExpiresAt > cmd.Now {
				added++
				expires = max(expires, (b.ExpiresAt-cmd.Now+500)/1000)
			} else {
				removed++
			}
		}
		msg := "registered"
		if added == 0 {
			msg = "unregistered"
		}
		reg.log.Info(msg, "aor", aor, "contacts", added, "removed", removed, "wildcard", cmd.Wildcard, "expires", expires,
			"source", req.Source(), "socket", sock.Name, "user_agent", ua)
	case r.Code < 300 || r.Result == sipmsg.ResultUnauthorized || r.Result == sipmsg.ResultStale:
		if reg.log.Enabled(ctx, slog.LevelDebug) {
			reg.log.Debug("REGISTER", "aor", aor, "code", r.Code, "result", r.Result, "source", req.Source(), "socket", sock.Name)
		}
	default:
		src := req.Source()
		if ap, err := netip.ParseAddrPort(src); err == nil {
			src = ap.Addr().String()
		}
		ok, suppressed := reg.refusals.Allow(logthrottle.Key{Who: src, What: r.Result}, reg.cfg.Now())
		if !ok {
			return
		}
		args := []any{"aor", aor, "code", r.Code, "reason", r.Reason, "result", r.Result, "source", req.Source(), "socket", sock.Name}
		if suppressed > 0 {
			args = append(args, "not_logged_since_last", suppressed, "period", reg.refusals.Every())
		}
		reg.log.Info("REGISTER refused", args...)
	}
}

// register decides the answer to one REGISTER received on sock; when it
// writes bindings it says what in *wrote.
func (reg *Registrar) register(ctx context.Context, sock *transport.Socket, req *sip.Request, wrote *written) sipmsg.Reply {
	now := reg.cfg.Now()
	rc := &reg.cfg
	if r := sipmsg.CheckRequest(req); r != nil {
		return *r
	}
	if r := sipmsg.CheckRequire(req, supportedExtensions); r != nil {
		return *r
	}
	to := req.To()
	if sch := strings.ToLower(to.Address.Scheme); sch != "sip" && sch != "sips" {
		return sipmsg.BadRequest("To must be a SIP or SIPS URI") // the address of record (RFC 4475 §3.3.4)
	}
	aor := to.Address.User
	if aor == "" {
		return sipmsg.BadRequest("To URI has no user part")
	}
	if _, r := reg.auth.Authenticate(sock.Name, req, auth.WWW, aor, now); r != nil {
		return *r
	}

	// Bindings.
	contacts := sipmsg.HeaderValues(req, "Contact", "m")
	if len(contacts) == 0 {
		return reg.okReply(req, reg.state.Bindings(aor, now.UnixMilli()), now, sipmsg.ResultQuery)
	}
	cmd, r := reg.buildRegister(sock, req, aor, contacts, now)
	if r != nil {
		return *r
	}

	current := reg.state.Bindings(aor, now.UnixMilli())
	if isRetransmission(cmd, current) {
		// Already applied: a retransmission whose 200 was lost (the
		// transaction ended with its response; see reply).
		return reg.okReply(req, current, now, sipmsg.ResultRetransmission)
	}

	select {
	case reg.slots <- struct{}{}:
		defer func() { <-reg.slots }()
	default:
		return sipmsg.Unavailable("Service Unavailable")
	}
	ctx, cancel := context.WithTimeout(ctx, rc.ProposeTimeout)
	defer cancel()
	start := time.Now()
	res, err := reg.store.Propose(ctx, cmd)
	reg.proposeTime.Observe(time.Since(start).Seconds())
	if err != nil {
		reg.log.Warn("REGISTER not stored: replicated write failed", "aor", aor, "socket", sock.Name, "error", err)
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
		reg.log.Error("REGISTER refused by the state machine", "aor", aor, "error", res.Err)
		return sipmsg.Reply{Code: sip.StatusInternalServerError, Reason: "Server Internal Error", Result: sipmsg.ResultError}
	}
	*wrote = written{cmd: cmd, changed: !sameContacts(current, res.Bindings)}
	return reg.okReply(req, res.Bindings, now, sipmsg.ResultOK)
}

// sameContacts reports whether a and b hold the same contacts (instance
// and reg-id, or contact URI), whatever their expiry.
func sameContacts(a, b []fsm.Binding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		found := false
		for j := range b {
			if a[i].Instance == b[j].Instance && a[i].RegID == b[j].RegID && (a[i].Instance != "" || a[i].Contact == b[j].Contact) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
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
func (reg *Registrar) buildRegister(sock *transport.Socket, req *sip.Request, aor string, contactValues []string, now time.Time) (*fsm.Register, *sipmsg.Reply) {
	rc := &reg.cfg
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
func (reg *Registrar) okReply(req *sip.Request, bindings []fsm.Binding, now time.Time, result string) sipmsg.Reply {
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

// expiresFor returns the expiry in seconds for one contact: its own
// expires parameter, else the Expires header, else the default. tooBrief
// is set when it is below min and not 0 (423); values above max are
// clamped to max.
func expiresFor(c sipmsg.ContactSpec, header int, hasHeader bool, def, min, max int) (secs int, tooBrief bool) {
	secs = def
	switch {
	case c.HasExpires:
		secs = c.Expires
	case hasHeader:
		secs = header
	}
	if secs == 0 {
		return 0, false
	}
	if secs < min {
		return secs, true
	}
	if secs > max {
		secs = max
	}
	return secs, false
}
