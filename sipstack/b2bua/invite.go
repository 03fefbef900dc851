package b2bua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/logthrottle"
	"github.com/troika-sip/troika/internal/retry"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// An initial INVITE, up to its StartCall.
//
// Answers before a call exists (nothing is reserved, no xDR):
//   - 400, 416, 420, 483 for malformed requests (checked before
//     authentication, like the registrar), 413/415/488 for bodies that
//     are not a sane SDP;
//   - 407 and 403 as the registrar's 401 and 403 (see auth.go): a digest
//     challenge, the same answers for unknown users and wrong passwords
//     (a vendor's user name included);
//   - 404 when the number is no account;
//   - for a call from a vendor (recognised by source address or vendor
//     digest, auth.go): 404 when the translated number is no account, 500
//     Translation Failed when a translation rule fails; these two are
//     recorded as xDRs without charge (b2bua_vendor.go);
//   - 503 with Retry-After when the node is draining (Drain), has
//     MaxCalls calls or the StartCall write fails; 482 for a second
//     INVITE with the Call-ID of a call in progress;
//   - StartCall refusals: 402 Payment Required (insufficient funds), 403
//     Destination Not Allowed (no rate), 403 (blocked), 403 Too Many Calls
//     (the caller's max_calls), 486 Busy Here (the callee's), 404 (an
//     account deleted meanwhile). A vendor call's StartCall charges only
//     the called account (vendorRefusal).
//
// These are sent with b.reply, which ends the transaction: a lost answer
// makes the phone retransmit the INVITE, which gets the same answer again.
// Once StartCall has accepted the call, responses keep the transaction
// (so a retransmitted INVITE is absorbed, not a second call).

// noExtensions: an INVITE's Require may name nothing (no 100rel, no
// session timers: both would have to be relayed across the legs).
var noExtensions = map[string]bool{}

// HandleInvite serves INVITEs: in-dialog ones (re-INVITE) are relayed,
// initial ones start a call.
func (b *B2BUA) HandleInvite(sock *transport.Socket, req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		b.HandleInDialog(sock, req, tx)
		return
	}
	if b.calls.draining.Load() {
		b.reply(tx, req, sipmsg.Reply{Code: sip.StatusServiceUnavailable, Reason: "Service Unavailable", Headers: []sip.Header{sip.NewHeader("Retry-After", sipmsg.RetryAfter)}})
		return
	}
	c, dest, r, authed := b.admit(sock, req, tx)
	if r != nil {
		if authed {
			b.m.callFailed(r.Code)
		}
		b.logRefusal(sock, req, *r, authed)
		b.reply(tx, req, *r)
		return
	}
	c.run(dest)
}

// logRefusal logs an initial INVITE's refusal at INFO, but at most one
// line per source and status code every refusalLogEvery (the next one
// counts those not logged): a flood of bad INVITEs costs a few lines. A
// digest challenge is a step of the protocol, logged at DEBUG.
func (b *B2BUA) logRefusal(sock *transport.Socket, req *sip.Request, r sipmsg.Reply, authed bool) {
	callID, from := "", ""
	if h := req.CallID(); h != nil {
		callID = h.Value()
	}
	if h := req.From(); h != nil {
		from = h.Address.User
	}
	args := []any{"call_id", callID, "from", from, "cld", req.Recipient.User, "code", r.Code,
		"reason", r.Reason, "authenticated", authed, "source", req.Source(), "socket", sock.Name}
	if r.Result == sipmsg.ResultUnauthorized || r.Result == sipmsg.ResultStale {
		b.log.Debug("call challenged", args...)
		return
	}
	src := req.Source()
	if ap, err := netip.ParseAddrPort(src); err == nil {
		src = ap.Addr().String()
	}
	ok, suppressed := b.refusals.Allow(logthrottle.Key{Who: src, What: strconv.Itoa(r.Code)}, b.cfg.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "not_logged_since_last", suppressed, "period", b.refusals.Every())
	}
	b.log.Info("call refused", args...)
}

// Drain makes this node refuse new calls (on) or take them again (off):
// a planned stop (node/drain.go). A new INVITE then gets 503 with
// Retry-After, before authentication; calls in progress and in-dialog
// requests are not affected.
func (b *B2BUA) Drain(on bool) { b.calls.draining.Store(on) }

// Draining reports whether Drain is on.
func (b *B2BUA) Draining() bool { return b.calls.draining.Load() }

// admit checks, authenticates and authorizes an initial INVITE. It
// returns the started call, or the reply refusing it (authed tells
// whether the caller had authenticated).
func (b *B2BUA) admit(sock *transport.Socket, req *sip.Request, tx sip.ServerTransaction) (*call, destination, *sipmsg.Reply, bool) {
	now := b.cfg.Now()
	refuse := func(code int, reason string, hdrs ...sip.Header) (*call, destination, *sipmsg.Reply, bool) {
		return nil, destination{}, &sipmsg.Reply{Code: code, Reason: reason, Headers: hdrs}, true
	}
	if r := sipmsg.CheckRequest(req); r != nil {
		return nil, destination{}, r, false
	}
	if r := sipmsg.CheckRequire(req, noExtensions); r != nil {
		return nil, destination{}, r, false
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		r := sipmsg.TooManyHops()
		return nil, destination{}, &r, false
	}
	if sch := strings.ToLower(req.Recipient.Scheme); sch != "sip" && sch != "sips" {
		return nil, destination{}, &sipmsg.Reply{Code: 416, Reason: "Unsupported URI Scheme"}, false
	}
	who, r := b.auth.AuthorizeInvite(sock.Name, req, now)
	if r != nil {
		return nil, destination{}, r, false
	}
	acct := who.Account // empty for a vendor's call

	from, to := req.From(), req.To()
	fromTag, _ := from.Params.Get("tag")
	if fromTag == "" || len(fromTag) > 128 || !sipmsg.SafeText(fromTag) {
		return refuse(sip.StatusBadRequest, "Missing or malformed From tag")
	}
	target, ok := contactURI(req)
	if !ok {
		return refuse(sip.StatusBadRequest, "Missing or malformed Contact")
	}
	var offer []byte
	if body := req.Body(); len(body) > 0 {
		if contentType(req) != "application/sdp" {
			return refuse(sip.StatusUnsupportedMediaType, "Unsupported Media Type", sip.NewHeader("Accept", "application/sdp"))
		}
		switch err := checkSDP(body); {
		case errors.Is(err, errBodyTooLarge):
			return refuse(sip.StatusRequestEntityTooLarge, "Request Entity Too Large")
		case err != nil:
			return refuse(sip.StatusNotAcceptableHere, "Malformed SDP")
		}
		offer = body
	}
	dest, r := b.resolveDestination(who, req)
	if r != nil {
		return nil, destination{}, r, true
	}
	vendorResult := func(result string) {
		if dest.vendor != nil {
			b.m.vendorCall(result)
		}
	}
	if !b.acquireCall() {
		b.log.Warn("too many calls in progress; refusing", "max_calls", b.cfg.Calls.MaxCalls, "account", acct.ID)
		vendorResult(VendorUnavailable)
		return refuse(sip.StatusServiceUnavailable, "Service Unavailable", sip.NewHeader("Retry-After", sipmsg.RetryAfter))
	}

	callID := req.CallID().Value()
	mf := uint32(70)
	if h := req.MaxForwards(); h != nil && h.Val() <= 70 {
		mf = h.Val() - 1
	}
	cli, log := acct.ID, b.log.With("call_id", callID, "account", acct.ID, "cld", dest.cld)
	if v := dest.vendor; v != nil {
		cli = v.cli
		log = b.log.With("call_id", callID, "vendor", v.vendor.ID, "connection", v.conn.ID, "by", v.by,
			"callee", dest.callee.ID, "dialed", v.dialed, "cld", dest.cld, "cli", v.cli)
	}
	c := &call{
		b: b, id: callID, account: acct.ID, cli: cli, callee: dest.callee.ID, cld: dest.cld,
		cliName: callerName(acct, dest, from.DisplayName), started: time.Now(),
		log:    log,
		inSock: sock, inv: req, invTx: tx, offer: offer, relayed: relayHeaders(req), maxForwards: mf,
		setupDone: make(chan struct{}), cancelled: make(chan struct{}), ending: make(chan struct{}),
		answerDone: make(chan struct{}), ackCh: make(chan *sip.Request, 1), acks: map[ackKey]chan *sip.Request{},
	}
	c.caller = &dialog{role: LegCaller, sock: sock.Name, transport: sock.Transport, dest: req.Source(), callID: callID,
		localTag: sip.GenerateTagN(16), local: nameAddr{uri: *to.Address.Clone()}, remote: nameAddr{uri: *from.Address.Clone()},
		remoteTag: fromTag, target: target, routes: routeSet(req), remoteCSeq: req.CSeq().SeqNo}
	if !b.calls.add(callID, legRef{c: c, d: c.caller}) {
		b.releaseCall()
		vendorResult(VendorRefused)
		return refuse(sip.StatusLoopDetected, "Loop Detected")
	}
	// Stop the caller's retransmissions while the call is authorized, and
	// catch its CANCEL from now on.
	tx.Respond(sip.NewResponseFromRequest(req, sip.StatusTrying, "Trying", nil))
	if !tx.OnCancel(c.onCancel) {
		c.onCancel(nil)
	}

	start := &fsm.StartCall{
		ID: callID, Direction: fsm.DirOutgoing, Account: acct.ID, CLI: acct.ID, CLD: dest.cld,
		Charges: []fsm.ChargeRequest{
			{Account: acct.ID, Role: fsm.RoleOutgoing, Number: dest.cld},
			{Account: dest.callee.ID, Role: fsm.RoleIncoming, Number: dest.cld},
		},
		MaxSeconds: b.cfg.Calls.MaxCallSeconds, Now: now.UnixMilli(), Node: b.cfg.NodeID,
	}
	if dest.vendor != nil {
		start = vendorStartCall(callID, dest, b.cfg.Calls.MaxCallSeconds, now.UnixMilli(), b.cfg.NodeID)
	}
	call, r := b.startCall(start, c.log)
	if r != nil {
		b.calls.remove(callID, c)
		b.releaseCall()
		if r.Code == sip.StatusServiceUnavailable {
			vendorResult(VendorUnavailable)
		} else {
			vendorResult(VendorRefused)
		}
		if dest.vendor != nil {
			c.log.Info("call from vendor refused", "code", r.Code, "reason", r.Reason)
		}
		return nil, destination{}, r, true
	}
	vendorResult(VendorAccepted)
	c.maxDur = call.MaxDuration
	b.m.callsStarted.Inc()
	c.log.Info("call started", "callee", dest.callee.ID, "max_duration", call.MaxDuration, "source", req.Source(), "socket", sock.Name)
	return c, dest, nil, true
}

// startCall proposes StartCall and maps a refusal to the caller's answer.
func (b *B2BUA) startCall(cmd *fsm.StartCall, log *slog.Logger) (fsm.Call, *sipmsg.Reply) {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.Calls.ProposeTimeout)
	res, err := b.store.Propose(ctx, b.startCommand(cmd))
	cancel()
	if err != nil {
		log.Warn("StartCall not written: replicated write failed", "error", err)
		// It may have been applied all the same (a lost leadership): end
		// it, so nothing stays reserved. EndCall of an unknown call is a
		// harmless refusal.
		b.calls.goCall(func() {
			b.proposeCall("end", &fsm.EndCall{ID: cmd.ID, DisconnectAt: cmd.Now, Cause: sip.StatusServiceUnavailable,
				CauseText: "Service Unavailable", DisconnectedBy: BySystem})
		})
		b.m.callWriteFails.WithLabelValues("start").Inc()
		r := sipmsg.Unavailable("Service Unavailable")
		return fsm.Call{}, &r
	}
	if e := res.Err; e != nil {
		r := refusal(e)
		if cmd.Direction == fsm.DirFromVendor {
			r = vendorRefusal(e)
		}
		log.Debug("call refused", "code", r.Code, "reason", r.Reason, "detail", e.Error())
		return fsm.Call{}, &r
	}
	if res.Call == nil || res.Call.Account != cmd.Account || res.Call.SetupAt != cmd.Now || res.Call.Node != cmd.Node {
		// StartCall is idempotent by id: this Call-ID belongs to a call
		// started elsewhere.
		return fsm.Call{}, &sipmsg.Reply{Code: sip.StatusLoopDetected, Reason: "Loop Detected"}
	}
	return *res.Call, nil
}

// refusal maps a StartCall refusal to the caller's answer.
func refusal(e *fsm.Error) sipmsg.Reply {
	callee := strings.HasPrefix(e.Field, "charges[1]")
	switch e.Code {
	case fsm.CodeInsufficientFunds:
		return sipmsg.Reply{Code: sip.StatusPaymentRequired, Reason: "Payment Required"}
	case fsm.CodeNoRate:
		return sipmsg.Reply{Code: sip.StatusForbidden, Reason: "Destination Not Allowed"}
	case fsm.CodeBlocked:
		return sipmsg.Reply{Code: sip.StatusForbidden, Reason: "Forbidden"}
	case fsm.CodeTooManyCalls:
		if callee {
			return sipmsg.Reply{Code: sip.StatusBusyHere, Reason: "Busy Here"}
		}
		return sipmsg.Reply{Code: sip.StatusForbidden, Reason: "Too Many Calls"}
	case fsm.CodeNotFound:
		return sipmsg.Reply{Code: sip.StatusNotFound, Reason: "Not Found"}
	case fsm.CodeConflict:
		return sipmsg.Reply{Code: sip.StatusBadRequest, Reason: "Call-ID Already Used"}
	}
	return sipmsg.Reply{Code: sip.StatusInternalServerError, Reason: "Server Internal Error"}
}

// callWrites paces the retries of a call's replicated writes after its
// start: losing an answer or an end would bill the call wrong, and the
// commands are idempotent.
var callWrites = retry.Policy{Initial: 200 * time.Millisecond, Max: 800 * time.Millisecond, Attempts: 4}

// proposeCall writes a command of a call, retrying failed writes, each
// bounded by ProposeTimeout, until they run out or the B2BUA has stopped
// (Stop). A failure is counted under step.
func (b *B2BUA) proposeCall(step string, cmd fsm.Command) (fsm.Result, error) {
	res, err := retry.Do(b.writes, callWrites, func(ctx context.Context) (fsm.Result, error) {
		ctx, cancel := context.WithTimeout(ctx, b.cfg.Calls.ProposeTimeout)
		defer cancel()
		return b.store.Propose(ctx, cmd)
	}, nil)
	if err != nil {
		b.m.callWriteFails.WithLabelValues(step).Inc()
		return fsm.Result{}, fmt.Errorf("%T: %w", cmd, err)
	}
	return res, nil
}

func (b *B2BUA) acquireCall() bool {
	if !b.calls.acquire() {
		return false
	}
	b.m.callsActive.Inc()
	return true
}

func (b *B2BUA) releaseCall() {
	b.calls.release()
	b.m.callsActive.Dec()
}
