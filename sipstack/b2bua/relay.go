package b2bua

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// Requests within a call's dialogs: BYE ends the call; re-INVITE, UPDATE
// and INFO are relayed to the other leg one at a time (491 while a
// re-INVITE is pending, as glare would be); anything else within a
// dialog gets 405, and requests matching no dialog 481.

// HandleAck takes the ACK of a 2xx (the caller's, or a leg's after a
// re-INVITE). ACKs of non-2xx answers are absorbed by sipgo's
// transactions; any other ACK has nothing to acknowledge and is dropped.
func (b *B2BUA) HandleAck(sock *transport.Socket, req *sip.Request) {
	ref, ok := b.calls.match(req)
	if !ok {
		// Its call runs on another node, or, while this node drains, its
		// INVITE went to another node (dispatch.go).
		if !b.forwardToCallNode(sock, req) {
			b.router.ForwardFresh(sock, req)
		}
		return
	}
	if cseq := req.CSeq(); cseq != nil {
		ref.c.deliverAck(ref.d, cseq.SeqNo, req)
	}
}

// HandleInDialog serves a request carrying a To tag.
func (b *B2BUA) HandleInDialog(sock *transport.Socket, req *sip.Request, tx sip.ServerTransaction) {
	if r := sipmsg.CheckRequest(req); r != nil {
		b.reply(tx, req, *r)
		return
	}
	ref, ok := b.calls.match(req)
	if !ok && b.forwardToCallNode(sock, req) {
		tx.Terminate() // its call runs on another node, which answers (dispatch.go)
		return
	}
	if !ok {
		var err error
		ref, err = b.adoptForRequest(req) // a call whose node stopped (b2bua_adopt.go)
		switch {
		case errors.Is(err, errCallElsewhere):
			// Another node may have adopted it meanwhile: the adoption's
			// refusal brought this replica up to date.
			if b.forwardToCallNode(sock, req) {
				tx.Terminate()
				return
			}
			b.reply(tx, req, sipmsg.Reply{Code: sip.StatusServiceUnavailable, Reason: "Service Unavailable",
				Headers: []sip.Header{sip.NewHeader("Retry-After", "1")}})
			return
		case err != nil:
			b.reply(tx, req, sipmsg.Reply{Code: sip.StatusCallTransactionDoesNotExists, Reason: "Call/Transaction Does Not Exist"})
			return
		}
	}
	c, d := ref.c, ref.d
	if !d.acceptCSeq(req.CSeq().SeqNo) {
		b.reply(tx, req, sipmsg.Reply{Code: sip.StatusInternalServerError, Reason: "CSeq Out of Order"})
		return
	}
	switch req.Method {
	case sip.BYE:
		c.onBye(d, req, tx)
	case sip.INVITE, sip.UPDATE, sip.INFO:
		c.relay(d, req, tx)
	default:
		b.reply(tx, req, sipmsg.Reply{Code: sip.StatusMethodNotAllowed, Reason: "Method Not Allowed",
			Headers: []sip.Header{sip.NewHeader("Allow", sipmsg.AllowHeader)}})
	}
}

// onBye answers a BYE and ends the call. A BYE from the caller before the
// answer (in the early dialog of a relayed 18x) cancels the call.
func (c *call) onBye(d *dialog, req *sip.Request, tx sip.ServerTransaction) {
	c.b.reply(tx, req, sipmsg.Reply{Code: sip.StatusOK, Reason: "OK"})
	c.mu.Lock()
	answered := c.answered
	if !answered && d != c.caller {
		c.byeEarly = true // the winner hung up as its 2xx was being relayed
	}
	c.mu.Unlock()
	if !answered {
		if d == c.caller {
			c.cancelOnce.Do(func() { close(c.cancelled) })
		}
		return
	}
	by := ByCaller
	if d.role == LegCallee {
		by = ByCallee
	}
	c.hangup(by, sip.StatusOK, "", d)
}

// relay passes an in-dialog request from d to the other leg and the
// answer back.
func (c *call) relay(from *dialog, req *sip.Request, tx sip.ServerTransaction) {
	b := c.b
	refuse := func(code int, hdrs ...sip.Header) {
		b.reply(tx, req, sipmsg.Reply{Code: code, Reason: statusText(code), Headers: hdrs})
	}
	c.mu.Lock()
	switch {
	case c.hungUp:
		c.mu.Unlock()
		refuse(sip.StatusCallTransactionDoesNotExists)
		return
	case !c.answered, req.Method == sip.INVITE && c.reinvite:
		c.mu.Unlock()
		refuse(sip.StatusRequestPending, sip.NewHeader("Retry-After", "1"))
		return
	}
	if req.Method == sip.INVITE {
		c.reinvite = true
		defer func() {
			c.mu.Lock()
			c.reinvite = false
			c.mu.Unlock()
		}()
	}
	c.mu.Unlock()
	to := c.other(from)
	if to == nil {
		refuse(sip.StatusCallTransactionDoesNotExists)
		return
	}

	body := req.Body()
	ct := ""
	if len(body) > 0 {
		if req.Method == sip.INFO {
			ct = safeContentType(req)
		} else if contentType(req) == "application/sdp" {
			ct = "application/sdp"
		}
		switch {
		case ct == "":
			refuse(sip.StatusUnsupportedMediaType, sip.NewHeader("Accept", "application/sdp"))
			return
		case len(body) > maxBody:
			refuse(sip.StatusRequestEntityTooLarge)
			return
		case ct == "application/sdp" && checkSDP(body) != nil:
			refuse(sip.StatusNotAcceptableHere)
			return
		}
	}
	if req.Method != sip.INFO {
		if u, ok := contactURI(req); ok {
			from.setTarget(u) // a target refresh request (RFC 3261 §12.2.2)
		}
	}
	out, sock, err := to.request(b, req.Method)
	if err != nil {
		c.log.Warn("cannot relay in-dialog request", "method", string(req.Method), "error", err)
		refuse(sip.StatusTemporarilyUnavailable)
		return
	}
	for _, h := range relayHeaders(req) {
		out.AppendHeader(h)
	}
	if ct != "" {
		out.AppendHeader(sip.NewHeader("Content-Type", ct))
		out.SetBody(body)
	}
	if req.Method == sip.INVITE {
		c.relayReinvite(from, to, req, tx, out, sock)
		return
	}
	res, err := b.do(sock, out)
	if err != nil {
		c.log.Info("relayed request got no answer", "method", string(req.Method), "error", err)
		refuse(sip.StatusRequestTimeout)
		return
	}
	if res.IsSuccess() && req.Method == sip.UPDATE {
		if u, ok := contactURI(res); ok {
			to.setTarget(u)
		}
	}
	r := c.relayedResponse(req, from, res)
	if err := tx.Respond(r); err != nil {
		c.log.Debug("cannot relay response", "method", string(req.Method), "error", err)
	}
	tx.Terminate()
	c.checkDialogGone(res.StatusCode)
}

// relayReinvite relays a re-INVITE: a 2xx is ACKed on the far leg (with
// the near leg's ACK body when the re-INVITE carried no offer) and
// retransmitted on the near leg until its ACK.
func (c *call) relayReinvite(from, to *dialog, req *sip.Request, tx sip.ServerTransaction, out *sip.Request, sock *transport.Socket) {
	b := c.b
	var far farAck // the far leg's ACK, resent on 2xx retransmissions
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	ctx2, cancel2 := context.WithTimeout(b.ctx, sip.Timer_B+sip.T1)
	defer cancel2()
	ctxTx, err := sock.UA.TransactionLayer().NewClientTransaction(ctx, out)
	cancel()
	if err == nil {
		err = ctxTx.Init()
		if err != nil {
			ctxTx.Terminate()
		}
	}
	if err != nil {
		c.log.Warn("cannot relay re-INVITE", "error", err)
		c.respondReinvite(tx, c.plainResponse(req, sip.StatusTemporarilyUnavailable))
		return
	}
	var final *sip.Response
	for final == nil {
		select {
		case res := <-ctxTx.Responses():
			if res.StatusCode >= 200 {
				final = res
			}
		case <-ctxTx.Done():
			c.respondReinvite(tx, c.plainResponse(req, sip.StatusRequestTimeout))
			return
		case <-ctx2.Done():
			ctxTx.Terminate()
			c.respondReinvite(tx, c.plainResponse(req, sip.StatusRequestTimeout))
			return
		}
	}
	r := c.relayedResponse(req, from, final)
	if !final.IsSuccess() {
		c.respondReinvite(tx, r) // sipgo ACKed the far leg's non-2xx
		c.checkDialogGone(final.StatusCode)
		return
	}
	if u, ok := contactURI(final); ok {
		to.setTarget(u)
	}
	ack, _, err := to.ackFor(b, out.CSeq().SeqNo)
	if err != nil {
		c.log.Warn("cannot ACK relayed re-INVITE", "error", err)
		ctxTx.Terminate()
		c.respondReinvite(tx, c.plainResponse(req, sip.StatusInternalServerError))
		return
	}
	ctxTx.OnRetransmission(func(res *sip.Response) {
		if res.IsSuccess() {
			if a := far.get(); a != nil {
				b.sendAck(sock, a)
			}
		}
	})
	if len(req.Body()) > 0 { // the offer was in the re-INVITE: ACK at once
		far.set(ack)
		b.sendAck(sock, ack)
	}
	ackCh := make(chan *sip.Request, 1)
	c.mu.Lock()
	c.acks[ackKey{from, req.CSeq().SeqNo}] = ackCh
	c.mu.Unlock()
	c.respondReinvite(tx, r)
	nearAck := c.awaitAck(tx, r, from, ackCh)
	c.mu.Lock()
	delete(c.acks, ackKey{from, req.CSeq().SeqNo})
	c.mu.Unlock()
	if far.get() == nil {
		if nearAck != nil {
			if b := nearAck.Body(); len(b) > 0 && contentType(nearAck) == "application/sdp" && checkSDP(b) == nil {
				ack.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
				ack.SetBody(b) // the answer to the far leg's offer
			}
		}
		far.set(ack)
		b.sendAck(sock, ack)
	}
}

// farAck holds the ACK of a relayed re-INVITE's 2xx once sent.
type farAck struct {
	mu  sync.Mutex
	ack *sip.Request
}

func (a *farAck) set(r *sip.Request) {
	a.mu.Lock()
	a.ack = r
	a.mu.Unlock()
}

func (a *farAck) get() *sip.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ack
}

// awaitAck retransmits a 2xx to an INVITE until its ACK (from the ACK
// handler, or sipgo's transaction when the peer reused the INVITE's
// branch), 64*T1, or the call's end. It returns the ACK, or nil.
func (c *call) awaitAck(tx sip.ServerTransaction, res *sip.Response, d *dialog, ackCh chan *sip.Request) *sip.Request {
	interval := sip.T1
	retrans := time.NewTimer(interval)
	defer retrans.Stop()
	retransC := retrans.C
	if d.transport != "udp" {
		retransC = nil
	}
	deadline := time.NewTimer(64 * sip.T1)
	defer deadline.Stop()
	for {
		select {
		case ack := <-ackCh:
			return ack
		case ack := <-tx.Acks():
			return ack
		case <-retransC:
			tx.Respond(res)
			interval = min(2*interval, sip.T2)
			retrans.Reset(interval)
		case <-deadline.C:
			c.log.Info("no ACK for a relayed 2xx", "leg", d.role)
			return nil
		case <-c.ending:
			return nil
		}
	}
}

// respondReinvite answers a re-INVITE without ending its transaction
// (which absorbs retransmissions and the ACK of a failure).
func (c *call) respondReinvite(tx sip.ServerTransaction, res *sip.Response) {
	if err := tx.Respond(res); err != nil && !errors.Is(err, sip.ErrTransactionCanceled) {
		c.log.Debug("cannot answer re-INVITE", "error", err)
	}
}

// relayedResponse is the far leg's answer res as a response to req on
// leg d: same status (but for codes the near leg must not act on), its
// body and safe headers, and the switch's Contact on a 2xx.
func (c *call) relayedResponse(req *sip.Request, d *dialog, res *sip.Response) *sip.Response {
	code := res.StatusCode
	switch {
	case code < 200 || code > 699:
		code = sip.StatusInternalServerError
	case code >= 300 && code < 400, code == 401, code == 407, code == 503:
		code = sip.StatusInternalServerError
	}
	reason := statusText(code)
	if code == res.StatusCode {
		reason = reasonFor(code, res.Reason)
	}
	out := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range relayHeaders(res) {
		out.AppendHeader(h)
	}
	if code < 300 && (req.Method == sip.INVITE || req.Method == sip.UPDATE) {
		if sock := c.b.sockets.Named(d.sock); sock != nil {
			out.AppendHeader(sock.Contact())
		}
	}
	copyBody(out, res)
	out.AppendHeader(sip.NewHeader("Server", sipmsg.ServerName))
	return out
}

func (c *call) plainResponse(req *sip.Request, code int) *sip.Response {
	out := sip.NewResponseFromRequest(req, code, statusText(code), nil)
	out.AppendHeader(sip.NewHeader("Server", sipmsg.ServerName))
	return out
}

// checkDialogGone hangs up a call whose far leg answered an in-dialog
// request 481 or 408: its dialog no longer exists (RFC 5057).
func (c *call) checkDialogGone(code int) {
	if code == sip.StatusCallTransactionDoesNotExists || code == sip.StatusRequestTimeout {
		c.log.Info("the other leg's dialog is gone; hanging up", "code", code)
		c.hangup(BySystem, code, statusText(code), nil)
	}
}

// forwardToCallNode passes a request of a dialog this node does not run
// (an in-dialog request, an ACK or a CANCEL that matched nothing here) to
// the node the cluster state says runs its call, when that is another
// live processor. true when it was passed on (the caller ends its
// transaction without answering). Otherwise the request is handled here,
// adopting an answered call (adopt.go).
func (b *B2BUA) forwardToCallNode(sock *transport.Socket, req *sip.Request) bool {
	cid := req.CallID()
	if cid == nil {
		return false
	}
	fc, ok := b.state.CallForDialog(cid.Value())
	return ok && b.router.ForwardToCallNode(sock, fc.Node, req)
}

// HandleCancel answers a CANCEL that matched no pending INVITE here (sipgo
// answers the ones that do, and the call hears of them through its
// INVITE transaction): when its INVITE is on another node, it is passed
// there; otherwise 481.
func (b *B2BUA) HandleCancel(sock *transport.Socket, req *sip.Request, tx sip.ServerTransaction) {
	if b.forwardToCallNode(sock, req) {
		tx.Terminate()
		return
	}
	b.reply(tx, req, sipmsg.Reply{Code: sip.StatusCallTransactionDoesNotExists, Reason: "Call/Transaction Does Not Exist"})
}
