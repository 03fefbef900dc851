package b2bua

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// fork is one INVITE sent to a callee target. Its goroutine (run) reads
// the transaction's responses and reports them to the call's setup loop;
// a 2xx either wins the call (call.claim) or, when the call is already
// settled, is ACKed and BYEd at once.
type fork struct {
	c     *call
	tgt   target
	leg   *dialog
	spec  reqSpec // of the INVITE: CANCEL and ACK are built from it
	tx    *sip.ClientTx
	round int // the call's round of forks it belongs to (call.ringRound)

	abandoned bool // its round is over: it may no longer win the call (under c.mu)

	answer *sip.Response // its 2xx, set before the leg claims the call

	cancelCh   chan struct{} // closed when the fork is to be cancelled
	cancelOnce sync.Once

	mu          sync.Mutex
	provisional bool // a 1xx arrived: CANCEL may be sent (RFC 3261 §9.1)
	cancelWant  bool
	cancelSent  bool
	final       bool
	ack         *sip.Request // ACK of its 2xx, once built
	ackSent     bool
}

// start sends the INVITE. The transaction's retransmission hook is set
// before the first byte leaves, so no 2xx retransmission goes unACKed.
func (f *fork) start(body []byte, hdrs []sip.Header) error {
	b := f.c.b
	f.spec.branch = sip.GenerateBranchN(16) // kept for the CANCEL
	inv, sock, err := b.buildRequest(f.spec)
	if err != nil {
		return err
	}
	for _, h := range hdrs {
		inv.AppendHeader(sip.NewHeader(h.Name(), h.Value())) // each leg its own copy
	}
	if body != nil {
		inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		inv.SetBody(body)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second) // connection set-up (TCP dial)
	defer cancel()
	tx, err := sock.UA.TransactionLayer().NewClientTransaction(ctx, inv)
	if err != nil {
		return fmt.Errorf("INVITE to %s: %w", f.tgt.dest, err)
	}
	tx.OnRetransmission(f.onRetransmission)
	if err := tx.Init(); err != nil {
		tx.Terminate()
		return fmt.Errorf("INVITE to %s: %w", f.tgt.dest, err)
	}
	f.tx = tx
	return nil
}

// run follows the transaction until its final response. After a CANCEL
// the callee has Timer B (64*T1) to answer before the transaction is
// dropped: sipgo stops Timer B at the first 1xx and would wait forever.
func (f *fork) run() {
	var deadline <-chan time.Time
	cancelCh := f.cancelCh
	for {
		select {
		case res := <-f.tx.Responses():
			switch {
			case res.StatusCode < 200:
				f.onProvisional(res)
			case res.StatusCode < 300:
				f.onAnswer(res)
				return
			default:
				f.setFinal()
				f.c.forkEvent(forkEvent{f: f, res: res})
				return
			}
		case <-f.tx.Done():
			f.setFinal()
			f.c.forkEvent(forkEvent{f: f, err: f.tx.Err()})
			return
		case <-cancelCh:
			cancelCh = nil
			deadline = time.After(sip.Timer_B)
		case <-deadline:
			f.c.log.Warn("callee leg sent no final response after CANCEL; dropping it", "target", f.tgt.desc)
			f.tx.Terminate()
		}
	}
}

// responded reports whether any response (even 100 Trying) arrived.
func (f *fork) responded() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.provisional || f.final
}

func (f *fork) setFinal() {
	f.mu.Lock()
	f.final = true
	f.mu.Unlock()
}

func (f *fork) onProvisional(res *sip.Response) {
	f.mu.Lock()
	f.provisional = true
	send := f.cancelWant && !f.cancelSent
	if send {
		f.cancelSent = true
	}
	f.mu.Unlock()
	if send {
		f.c.b.calls.goCall(f.sendCancel)
	}
	if res.StatusCode > 100 {
		f.c.forkEvent(forkEvent{f: f, res: res})
	}
}

// cancelIfPending CANCELs the INVITE unless it has its final response:
// now if a provisional response came, else at the first one (RFC 3261
// §9.1). It reports whether a CANCEL was due.
func (f *fork) cancelIfPending() bool {
	f.mu.Lock()
	if f.final || f.cancelWant {
		f.mu.Unlock()
		return false
	}
	f.cancelWant = true
	send := f.provisional && !f.cancelSent
	if send {
		f.cancelSent = true
	}
	f.mu.Unlock()
	f.cancelOnce.Do(func() { close(f.cancelCh) })
	if send {
		f.c.b.calls.goCall(f.sendCancel)
	}
	return true
}

func (f *fork) sendCancel() {
	b := f.c.b
	spec := f.spec
	spec.method = sip.CANCEL
	spec.contact = false
	req, sock, err := b.buildRequest(spec)
	if err != nil {
		f.c.log.Warn("cannot CANCEL callee leg", "target", f.tgt.desc, "error", err)
		return
	}
	res, err := b.do(sock, req)
	switch {
	case err != nil:
		f.c.log.Debug("CANCEL of callee leg failed", "target", f.tgt.desc, "error", err)
	case res.StatusCode >= 300:
		f.c.log.Debug("CANCEL of callee leg refused", "target", f.tgt.desc, "code", res.StatusCode)
	}
}

// onAnswer handles the leg's 2xx: the dialog is set up from it, then the
// leg either wins the call or is hung up at once (a late or forked 2xx).
func (f *fork) onAnswer(res *sip.Response) {
	f.setFinal()
	tag := ""
	if to := res.To(); to != nil {
		tag, _ = to.Params.Get("tag")
	}
	target, ok := contactURI(res)
	if !ok {
		target = f.spec.ruri // no usable Contact: keep sending where the INVITE went
	}
	routes := routeSet(res)
	for i, j := 0, len(routes)-1; i < j; i, j = i+1, j-1 { // a UAC uses the Record-Route reversed
		routes[i], routes[j] = routes[j], routes[i]
	}
	f.leg.setPeer(tag, target, routes)
	f.answer = res
	if f.c.claim(f) {
		f.c.b.m.forkResults.WithLabelValues("answered").Inc()
		if f.c.offer != nil {
			f.sendAck(nil)
		} // else the caller's ACK brings the answer (late offer): call.ackCallee
		f.c.forkEvent(forkEvent{f: f, res: res})
		return
	}
	f.c.b.m.forkResults.WithLabelValues("late_answer").Inc()
	f.c.log.Info("callee leg answered after the call was settled; hanging it up", "target", f.tgt.desc)
	f.sendAck(nil)
	f.c.sendBye(f.leg)
}

// sendAck ACKs the leg's 2xx (once; later calls resend the same ACK when
// body is nil). A body is the caller's answer to an offer in the 2xx.
func (f *fork) sendAck(body []byte) {
	b := f.c.b
	f.mu.Lock()
	ack := f.ack
	if ack == nil {
		var err error
		ack, _, err = f.leg.ackFor(b, f.spec.cseq)
		if err != nil {
			f.mu.Unlock()
			f.c.log.Warn("cannot ACK callee leg", "target", f.tgt.desc, "error", err)
			return
		}
		if body != nil {
			ack.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			ack.SetBody(body)
		}
		f.ack = ack
	}
	f.ackSent = true
	f.mu.Unlock()
	sock := b.sockets.Named(f.spec.sock)
	if sock == nil {
		return
	}
	if err := b.sendAck(sock, ack); err != nil {
		f.c.log.Debug("ACK to callee leg failed", "target", f.tgt.desc, "error", err)
	}
}

// ackPending reports whether the leg's 2xx still awaits its ACK.
func (f *fork) ackPending() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.ackSent
}

// onRetransmission sees the 2xx responses after the first: the same 2xx
// again (its ACK was lost: resend it, as RFC 3261 §13.2.2.4 asks), or a
// 2xx from another branch of a forking proxy beyond the target, which is
// ACKed and BYEd.
func (f *fork) onRetransmission(res *sip.Response) {
	if !res.IsSuccess() {
		return
	}
	tag := ""
	if to := res.To(); to != nil {
		tag, _ = to.Params.Get("tag")
	}
	if tag == f.leg.peerTag() {
		f.mu.Lock()
		ack, sent := f.ack, f.ackSent
		f.mu.Unlock()
		if sent && ack != nil {
			if sock := f.c.b.sockets.Named(f.spec.sock); sock != nil {
				f.c.b.sendAck(sock, ack)
			}
		}
		return
	}
	f.c.b.calls.goCall(func() { f.hangupStray(res, tag) })
}

// hangupStray ACKs and BYEs a dialog created by an extra 2xx.
func (f *fork) hangupStray(res *sip.Response, tag string) {
	if tag == "" {
		return
	}
	target, ok := contactURI(res)
	if !ok {
		target = f.spec.ruri
	}
	d := &dialog{role: LegCallee, sock: f.leg.sock, transport: f.leg.transport, dest: f.leg.dest, callID: f.leg.callID,
		localTag: f.leg.localTag, local: f.leg.local, remote: f.leg.remote, localCSeq: f.spec.cseq}
	d.setPeer(tag, target, nil)
	b := f.c.b
	ack, sock, err := d.ackFor(b, f.spec.cseq)
	if err == nil {
		err = b.sendAck(sock, ack)
	}
	if err != nil {
		f.c.log.Debug("ACK of an extra 2xx failed", "target", f.tgt.desc, "error", err)
	}
	f.c.log.Info("hanging up an extra 2xx of a callee leg", "target", f.tgt.desc)
	f.c.sendBye(d)
}

// forkError turns a transaction error into the status it stands for.
func forkError(err error) (int, string) {
	if errors.Is(err, sip.ErrTransactionTimeout) {
		return sip.StatusRequestTimeout, "Request Timeout"
	}
	return sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"
}
