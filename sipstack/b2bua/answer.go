package b2bua

// An answered call: the 2xx to the caller, its ACK, the maximum duration
// and the hangup that ends it once.

import (
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/sipmsg"
)

// connect relays the winning leg's 2xx to the caller and hands the
// answered call to its own goroutine.
func (c *call) connect(f *fork) {
	b := c.b
	res := f.answer
	ok := c.response(sip.StatusOK, "OK")
	for _, h := range relayHeaders(res) {
		ok.AppendHeader(h)
	}
	ok.AppendHeader(sip.NewHeader("Allow", sipmsg.AllowHeader))
	copyBody(ok, res)
	c.mu.Lock()
	c.answered = true
	c.acks[ackKey{c.caller, c.inv.CSeq().SeqNo}] = c.ackCh
	c.mu.Unlock()
	connectAt := b.cfg.Now()
	cancelled, err := c.respond(ok)
	if cancelled || err != nil {
		// The caller gave up as the callee answered.
		if err != nil {
			c.log.Warn("cannot send 200 to the caller; hanging up the callee", "error", err)
		}
		close(c.answerDone)
		code, by := sip.StatusRequestTerminated, ByCaller
		if !cancelled {
			code, by = sip.StatusInternalServerError, BySystem
		}
		if f.ackPending() {
			f.sendAck(nil)
		}
		c.mu.Lock()
		c.hungUp = true
		c.mu.Unlock()
		close(c.ending)
		c.sendBye(f.leg)
		b.m.callFailed(code)
		c.end(b.cfg.Now(), code, statusText(code), by)
		return
	}
	c.observeSetup()
	b.m.callsAnswered.Inc()
	c.log.Info("call answered", "callee_leg", f.tgt.desc, "max_duration", c.maxDur)
	b.calls.goCall(func() { c.afterAnswer(f, connectAt, ok) })
}

// afterAnswer records the answer, has the call's paid time watched
// (calltime.go), and retransmits the 2xx until the caller's ACK (RFC 3261
// §13.3.1.4). An answered call that no ACK confirms within AckTimeout is
// hung up.
func (c *call) afterAnswer(f *fork, connectAt time.Time, ok *sip.Response) {
	if !c.proposeAnswer(f, connectAt) {
		close(c.answerDone)
		c.hangup(BySystem, sip.StatusInternalServerError, "Call Not Recorded", nil)
		return
	}
	close(c.answerDone)
	c.mu.Lock()
	byeEarly := c.byeEarly
	c.mu.Unlock()
	if byeEarly {
		c.hangup(ByCallee, sip.StatusOK, "", f.leg)
		return
	}
	c.b.calls.goCall(func() { c.watchPaidTime(connectAt) })
	ackWait := time.NewTimer(c.b.cfg.Calls.AckTimeout)
	defer ackWait.Stop()
	interval := sip.T1
	retrans := time.NewTimer(interval)
	defer retrans.Stop()
	retransC, ackWaitC, txAcks := retrans.C, ackWait.C, c.invTx.Acks()
	if c.caller.transport != "udp" {
		retransC = nil // the transport is reliable
	}
	acked := func(ack *sip.Request) {
		retransC, ackWaitC, txAcks = nil, nil, nil
		c.ackCallee(f, ack)
	}
	for {
		select {
		case <-c.ending:
			return
		case <-c.b.calls.stop:
			return // watchPaidTime says so
		case ack := <-c.ackCh:
			acked(ack)
		case ack := <-txAcks:
			acked(ack)
		case <-retransC:
			c.invTx.Respond(ok)
			interval = min(2*interval, sip.T2)
			retrans.Reset(interval)
		case <-ackWaitC:
			c.log.Warn("caller never ACKed the 200; hanging up")
			c.hangup(BySystem, sip.StatusRequestTimeout, "No ACK", nil)
			return
		}
	}
}

// ackCallee ACKs the callee's 2xx once the caller's ACK came, carrying
// the caller's answer when the callee's 2xx held the offer.
func (c *call) ackCallee(f *fork, ack *sip.Request) {
	if !f.ackPending() {
		return
	}
	var body []byte
	if b := ack.Body(); len(b) > 0 && contentType(ack) == "application/sdp" && checkSDP(b) == nil {
		body = b
	}
	f.sendAck(body)
}

// deliverAck passes an ACK to whoever waits for it.
func (c *call) deliverAck(d *dialog, cseq uint32, ack *sip.Request) {
	c.mu.Lock()
	k := ackKey{d, cseq}
	ch, ok := c.acks[k]
	delete(c.acks, k)
	c.mu.Unlock()
	if ok {
		select {
		case ch <- ack:
		default:
		}
	}
}

// hangup ends an answered call once, whoever asks first: BYE to the legs
// other than from (the one that hung up), then EndCall.
func (c *call) hangup(by string, cause int, text string, from *dialog) {
	c.mu.Lock()
	if c.hungUp {
		c.mu.Unlock()
		return
	}
	c.hungUp = true
	winner := c.winner
	c.mu.Unlock()
	close(c.ending)
	at := c.b.cfg.Now()
	var wg sync.WaitGroup
	if from != c.caller {
		wg.Add(1)
		go func() { defer wg.Done(); c.sendBye(c.caller) }()
	}
	if winner != nil && from != winner.leg {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if winner.ackPending() {
				winner.sendAck(nil)
			}
			c.sendBye(winner.leg)
		}()
	}
	<-c.answerDone
	c.b.m.callsEnded.WithLabelValues(by).Inc()
	c.end(at, cause, text, by)
	wg.Wait()
}

// sendBye ends one leg's dialog.
func (c *call) sendBye(d *dialog) {
	req, sock, err := d.request(c.b, sip.BYE)
	if err != nil {
		c.log.Warn("cannot send BYE", "leg", d.role, "call_id", d.callID, "error", err)
		return
	}
	res, err := c.b.do(sock, req)
	switch {
	case err != nil:
		c.log.Info("BYE got no answer", "leg", d.role, "call_id", d.callID, "error", err)
	case res.StatusCode >= 300:
		c.log.Info("BYE refused", "leg", d.role, "call_id", d.callID, "code", res.StatusCode)
	}
}

// end files the call's EndCall (exactly once) and forgets the call.
func (c *call) end(at time.Time, cause int, text, by string) {
	c.endOnce.Do(func() {
		res, err := c.b.proposeCall("end", &fsm.EndCall{ID: c.id, DisconnectAt: at.UnixMilli(), Cause: cause,
			CauseText: text, DisconnectedBy: by})
		switch {
		case err != nil:
			c.log.Error("CALL LEFT OPEN: EndCall could not be written; its reservation stays held",
				"cause", cause, "by", by, "error", err)
		case res.Err != nil:
			c.log.Error("EndCall refused by the state machine", "cause", cause, "by", by, "error", res.Err)
		case res.XDR != nil:
			c.log.Info("call ended", "cause", cause, "cause_text", text, "by", by, "duration", res.XDR.Duration,
				"amount", billing.FormatMoney(res.XDR.Amount), "xdr", res.XDR.Seq)
		}
		c.unfile()
	})
}

// unfile removes the call's dialogs from this node and frees its slot.
func (c *call) unfile() {
	c.b.calls.remove(c.id, c)
	c.mu.Lock()
	if c.winner != nil {
		c.b.calls.remove(c.winner.leg.callID, c)
	}
	c.mu.Unlock()
	c.b.releaseCall()
}

// forget drops an answered call from this node without a word to its
// legs or to the state: another node ended it, or carries it on. false
// when it was ending here already.
func (c *call) forget() bool {
	c.mu.Lock()
	if c.hungUp || !c.answered {
		c.mu.Unlock()
		return false
	}
	c.hungUp = true
	c.mu.Unlock()
	close(c.ending) // its supervising goroutine returns
	forgot := false
	c.endOnce.Do(func() { c.unfile(); forgot = true })
	return forgot
}

// proposeAnswer writes AnswerCall with both legs' dialog state.
func (c *call) proposeAnswer(f *fork, connectAt time.Time) bool {
	res, err := c.b.proposeCall("answer", &fsm.AnswerCall{ID: c.id, ConnectAt: connectAt.UnixMilli(),
		Legs: []fsm.Leg{c.caller.leg(), f.leg.leg()}})
	switch {
	case err != nil:
		c.log.Error("AnswerCall could not be written; hanging up an unbillable call", "error", err)
		return false
	case res.Err != nil:
		c.log.Error("AnswerCall refused by the state machine; hanging up", "error", res.Err)
		return false
	}
	return true
}
