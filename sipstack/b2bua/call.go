package b2bua

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// call is one call in progress on this node, from its authorized INVITE
// to its EndCall.
type call struct {
	b       *B2BUA
	id      string // the caller's Call-ID: the fsm call's id
	account string // the caller; "" for a call from a vendor
	cli     string // the calling number callees see: the caller's account, or a vendor call's translated CLI
	callee  string // the called account
	cld     string // as dialed (a vendor call's: after translation)
	cliName string // the caller's display name, sanitized
	log     *slog.Logger
	started time.Time // monotonic: the setup histogram

	inSock      *transport.Socket
	inv         *sip.Request // the caller's INVITE (parsed headers only read)
	invTx       sip.ServerTransaction
	caller      *dialog
	offer       []byte       // the caller's SDP; nil: the offer comes in the 2xx (late offer)
	relayed     []sip.Header // headers copied to the callee legs
	maxForwards uint32
	maxDur      int // seconds the reservation pays for

	events     chan forkEvent
	setupDone  chan struct{}
	cancelled  chan struct{} // the caller CANCELled (or BYEd its early dialog)
	cancelOnce sync.Once
	cancelSeen atomic.Bool   // sipgo answered the INVITE 487 itself
	ending     chan struct{} // closed when hangup starts
	answerDone chan struct{} // closed once AnswerCall is settled (or the call failed)
	ackCh      chan *sip.Request
	endOnce    sync.Once
	forks      []*fork // the callee legs; only the handler goroutine (run, setup) uses it

	// Delivery state (b2bua_followme.go, b2bua_redirect.go); only the
	// handler goroutine (run) uses it.
	round       int             // the current round of forks
	ringOver    <-chan struct{} // closed at Timer C
	tried       map[string]bool // targets called: transport, address and user (targetKeys)
	redirectors map[string]bool // transport and address of legs that answered 3xx
	hops        int             // 3xx targets followed
	nRedirects  int             // records in the fsm call (the next RedirectCall's Index)
	dropped     int             // records of targets not followed

	mu       sync.Mutex
	settled  bool  // a winner or a failure is decided
	winner   *fork // the callee leg that answered
	answered bool  // the 2xx went to the caller
	hungUp   bool
	byeEarly bool // the answering callee sent BYE before its 2xx reached the caller
	ringing  bool // setup latency observed
	reinvite bool // a re-INVITE is being relayed
	acks     map[ackKey]chan *sip.Request
}

// ackKey names the 2xx an ACK acknowledges: the dialog and CSeq.
type ackKey struct {
	d    *dialog
	cseq uint32
}

// forkEvent is a response (or error) of a fork for the setup loop.
type forkEvent struct {
	f   *fork
	res *sip.Response
	err error
}

func (c *call) forkEvent(ev forkEvent) {
	select {
	case c.events <- ev:
	case <-c.setupDone:
	}
}

// onCancel is the INVITE transaction's CANCEL hook: sipgo has answered
// the CANCEL 200 and sends 487 itself right after. It runs under the
// transaction's lock and must not block.
func (c *call) onCancel(*sip.Request) {
	c.cancelSeen.Store(true)
	c.cancelOnce.Do(func() { close(c.cancelled) })
}

// claim makes f the answering leg unless the call is settled or f's
// round was abandoned. The leg's Call-ID is filed at once so its BYE
// finds the call.
func (c *call) claim(f *fork) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.settled || f.abandoned {
		return false
	}
	c.settled, c.winner = true, f
	c.b.calls.add(f.leg.callID, legRef{c: c, d: f.leg})
	return true
}

// settle decides the call fails, unless a leg has won it.
func (c *call) settle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.settled {
		return false
	}
	c.settled = true
	return true
}

// abandon stops the forks of a round from winning the call and CANCELs
// them, unless one has already won (false).
func (c *call) abandon(fs []*fork) bool {
	c.mu.Lock()
	if c.winner != nil {
		c.mu.Unlock()
		return false
	}
	for _, f := range fs {
		f.abandoned = true
	}
	c.mu.Unlock()
	for _, f := range fs {
		if f.cancelIfPending() {
			c.b.m.forkResults.WithLabelValues("cancelled").Inc()
		}
	}
	return true
}

// run offers the call to the callee and sees it through setup.
// Should it panic (a bug), the call is still ended in the fsm before the
// panic goes on to the handler's last-resort recovery.
func (c *call) run(dest destination) {
	defer func() {
		if p := recover(); p != nil {
			c.end(c.b.cfg.Now(), sip.StatusInternalServerError, "Server Internal Error", BySystem)
			panic(p)
		}
	}()
	c.events = make(chan forkEvent, 16)
	winner, fl := c.deliver(dest)
	if winner == nil {
		c.fail(fl)
		return
	}
	c.connect(winner)
}

// deliver runs the call's delivery steps (b2bua_followme.go) until a
// callee leg answers (returned) or the call fails: the caller's CANCEL
// (487), Timer C over the whole delivery (408), shutdown (503), or no
// step left (the best failure of every leg tried, else 480).
func (c *call) deliver(dest destination) (*fork, failure) {
	defer close(c.setupDone)
	ring, cancel := context.WithTimeout(context.Background(), c.b.cfg.Calls.RingTimeout)
	defer cancel()
	c.ringOver = ring.Done()
	c.tried, c.redirectors = map[string]bool{}, map[string]bool{}
	var best *failure
	for _, st := range c.b.deliveryPlan(dest.callee, dest.cld) {
		if winner, fl, over := c.runStep(st, &best); over {
			return winner, fl
		}
	}
	fl := failure{sip.StatusTemporarilyUnavailable, statusText(480), BySystem}
	if best != nil {
		fl = *best
	}
	select {
	case <-c.cancelled: // as the last step ended
		fl = failure{sip.StatusRequestTerminated, statusText(487), ByCaller}
	default:
	}
	winner, fl, _ := c.stop(fl)
	return winner, fl
}

// runStep rings a step's targets at once, then follows the 3xx they
// answered, one contact at a time (b2bua_redirect.go), within the step's
// time. over reports that the call is decided: answered (winner) or
// failed for good (fl). Otherwise the step failed, its legs' failures
// folded into best.
func (c *call) runStep(st step, best **failure) (winner *fork, fl failure, over bool) {
	var stepOver <-chan struct{}
	if st.timeout > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), st.timeout)
		defer cancel()
		stepOver = ctx.Done()
	}
	targets, ok, wfl := c.stepTargets(&st)
	if wfl != nil {
		return c.stop(*wfl)
	}
	if !ok {
		return nil, failure{}, false
	}
	if st.followMe != "" {
		c.logDecision(st.account.ID, st.followMe, billing.DecisionFollowMe, "")
		if _, wfl := c.record(st.followMe, billing.DecisionFollowMe, nil); wfl != nil {
			return c.stop(*wfl)
		}
	}
	var queue []redirectContact
	silence := time.Duration(0) // the step's own targets: no limit
	for {
		r := c.ringRound(targets, st.cld, stepOver, silence)
		switch {
		case r.winner != nil:
			return r.winner, failure{}, true
		case r.abort != nil:
			return nil, *r.abort, true
		}
		if r.best != nil {
			*best = better(*best, *r.best)
		}
		if r.timedOut {
			c.log.Debug("delivery step not answered in time", "follow_me", st.followMe, "timeout", st.timeout)
			*best = better(*best, failure{sip.StatusRequestTimeout, statusText(408), ByTimer})
			return nil, failure{}, false
		}
		queue = append(r.redirects, queue...)
		if len(queue) > maxRedirectQueue {
			c.log.Warn("too many 3xx contacts queued; dropping the last", "dropped", len(queue)-maxRedirectQueue)
			queue = queue[:maxRedirectQueue]
		}
		t, ok, wfl := c.nextRedirect(&st, &queue)
		if wfl != nil {
			return c.stop(*wfl)
		}
		if !ok {
			return nil, failure{}, false
		}
		targets, silence = []target{t}, 0
		if len(queue) > 0 { // a silent target is given up for the next one
			silence = orDefault(c.b.cfg.Delivery.RedirectSilence, defaultSilence)
		}
	}
}

// stop decides the call fails with fl, when no leg is ringing, and
// CANCELs whatever might still be. Should a leg have won meanwhile, that
// leg is returned instead.
func (c *call) stop(fl failure) (*fork, failure, bool) {
	if !c.settle() {
		c.mu.Lock()
		w := c.winner
		c.mu.Unlock()
		return w, failure{}, true
	}
	c.cancelForks()
	return nil, fl, true
}

func (c *call) cancelForks() {
	for _, f := range c.forks {
		if f.cancelIfPending() {
			c.b.m.forkResults.WithLabelValues("cancelled").Inc()
		}
	}
}

// roundResult is how a round of forks ended.
type roundResult struct {
	winner    *fork             // a leg answered
	abort     *failure          // the call is over: CANCEL, Timer C, shutdown
	timedOut  bool              // the step's time ran out (its legs are CANCELled)
	best      *failure          // the best failure of its legs (3xx excluded)
	redirects []redirectContact // the Contacts of the 3xx its legs answered
}

// ringRound sends the INVITEs of one round at once and waits for its
// outcome: the first 2xx (the others are CANCELled), every leg's final
// answer, the step's time (stepOver), the silence of all its legs for
// silence (when not 0: a 408 failure), or the end of the call. Events of
// earlier rounds' forks are ignored: those can no longer win.
func (c *call) ringRound(targets []target, cld string, stepOver <-chan struct{}, silence time.Duration) roundResult {
	var r roundResult
	cancelled, stopping, ringOver := c.cancelled, c.b.ctx.Done(), c.ringOver
	giveUp := func(fl failure) bool {
		if !c.settle() {
			return false // a leg has just won: its 2xx is on its way
		}
		c.cancelForks()
		r.abort = &fl
		return true
	}
	// Nothing is sent for a call that is already over.
	select {
	case <-cancelled:
		giveUp(failure{sip.StatusRequestTerminated, statusText(487), ByCaller})
		return r
	case <-ringOver:
		giveUp(failure{sip.StatusRequestTimeout, statusText(408), ByTimer})
		return r
	case <-stopping:
		giveUp(failure{sip.StatusServiceUnavailable, statusText(503), BySystem})
		return r
	case <-stepOver:
		r.timedOut = true
		return r
	default:
	}
	c.round++
	var forks []*fork
	for _, t := range targets {
		if f := c.startFork(t, cld); f != nil {
			forks = append(forks, f)
		}
	}
	pending := len(forks)
	if pending == 0 {
		return r
	}
	var silent <-chan time.Time
	if silence > 0 {
		tm := time.NewTimer(silence)
		defer tm.Stop()
		silent = tm.C
	}
	for {
		select {
		case ev := <-c.events:
			if ev.f.round != c.round {
				continue
			}
			switch {
			case ev.res != nil && ev.res.StatusCode < 200:
				c.relayProvisional(ev.res)
				continue
			case ev.res != nil && ev.res.StatusCode < 300:
				for _, f := range forks {
					if f != ev.f && f.cancelIfPending() {
						c.b.m.forkResults.WithLabelValues("cancelled").Inc()
					}
				}
				return roundResult{winner: ev.f}
			case ev.res != nil && followsRedirect(ev.res.StatusCode):
				c.b.m.forkResults.WithLabelValues("redirected").Inc()
				addr, _ := targetKeys(ev.f.tgt)
				c.redirectors[addr] = true
				cs := redirectContacts(ev.res)
				c.log.Info("callee leg redirected the call", "target", ev.f.tgt.desc, "code", ev.res.StatusCode, "contacts", len(cs))
				r.redirects = append(r.redirects, cs...)
			case ev.res != nil:
				c.b.m.forkResults.WithLabelValues("failed").Inc()
				r.best = better(r.best, calleeFailure(ev.res))
			default:
				c.b.m.forkResults.WithLabelValues("error").Inc()
				code, reason := forkError(ev.err)
				r.best = better(r.best, failure{code, reason, BySystem})
				c.log.Debug("callee leg failed", "target", ev.f.tgt.desc, "error", ev.err)
			}
			if pending--; pending == 0 {
				return r
			}
		case <-cancelled:
			cancelled = nil
			if giveUp(failure{sip.StatusRequestTerminated, statusText(487), ByCaller}) {
				return r
			}
		case <-ringOver:
			ringOver = nil
			if giveUp(failure{sip.StatusRequestTimeout, statusText(408), ByTimer}) {
				c.log.Debug("no answer within the ring timeout", "timeout", c.b.cfg.Calls.RingTimeout)
				return r
			}
		case <-stopping:
			stopping = nil
			if giveUp(failure{sip.StatusServiceUnavailable, statusText(503), BySystem}) {
				return r
			}
		case <-stepOver:
			stepOver = nil
			if c.abandon(forks) {
				r.timedOut = true
				return r
			} // else a leg has just won: its 2xx is on its way
		case <-silent:
			silent = nil
			if !slices.ContainsFunc(forks, (*fork).responded) && c.abandon(forks) {
				c.log.Info("callee leg sent no response; giving it up", "target", forks[0].tgt.desc, "after", silence)
				r.best = better(r.best, failure{sip.StatusRequestTimeout, statusText(408), BySystem})
				return r
			}
		}
	}
}

// startFork sends the INVITE of one callee leg towards t, or returns nil
// (logged) when it cannot be sent.
func (c *call) startFork(t target, cld string) *fork {
	from, to := calleeURIs(t, c.cli, c.cliName, cld)
	leg := &dialog{role: LegCallee, sock: t.sock.Name, transport: t.transport, dest: t.dest,
		callID: c.b.router.NewCallID(c.id), localTag: sip.GenerateTagN(16), local: from, remote: to,
		target: t.uri, routes: t.routes, localCSeq: 1}
	f := &fork{c: c, tgt: t, leg: leg, round: c.round, cancelCh: make(chan struct{}), spec: reqSpec{
		method: sip.INVITE, ruri: t.uri, callID: leg.callID, cseq: 1, from: from, to: to, fromTag: leg.localTag,
		routes: t.routes, sock: t.sock.Name, dest: t.dest, transport: t.transport, contact: true, maxForwards: c.maxForwards,
	}}
	_, full := targetKeys(t)
	c.tried[full] = true
	if err := f.start(c.offer, c.relayed); err != nil {
		c.b.m.forkResults.WithLabelValues("error").Inc()
		c.log.Warn("cannot send INVITE to callee leg", "target", t.desc, "error", err)
		return nil
	}
	c.forks = append(c.forks, f)
	c.b.calls.goCall(f.run)
	return f
}

// response builds a response to the caller's INVITE with the caller
// dialog's tag.
func (c *call) response(code int, reason string) *sip.Response {
	res := sip.NewResponseFromRequest(c.inv, code, reason, nil)
	if to := res.To(); to != nil && code > 100 {
		to.Params.Add("tag", c.caller.localTag)
	}
	if code > 100 && code < 300 {
		res.AppendHeader(c.inSock.Contact())
	}
	res.AppendHeader(sip.NewHeader("Server", sipmsg.ServerName))
	return res
}

// respond sends res on the caller's INVITE transaction. It reports
// cancelled when the caller CANCELled the INVITE first: sipgo answered
// 487 itself, and the transaction must keep that answer. (sipgo stores
// every response passed to Respond as the one Timer G retransmits, even
// when its state machine refuses to send it; the 487 is put back.)
func (c *call) respond(res *sip.Response) (cancelled bool, err error) {
	if c.cancelSeen.Load() {
		return true, nil
	}
	err = c.invTx.Respond(res)
	if errors.Is(err, sip.ErrTransactionCanceled) {
		c.invTx.Respond(c.response(sip.StatusRequestTerminated, statusText(487)))
		return true, nil
	}
	return false, err
}

// relayProvisional passes a callee's 18x, with its SDP, to the caller.
func (c *call) relayProvisional(res *sip.Response) {
	out := c.response(res.StatusCode, reasonFor(res.StatusCode, res.Reason))
	copyBody(out, res)
	if _, err := c.respond(out); err != nil {
		c.log.Debug("cannot relay provisional response to the caller", "code", res.StatusCode, "error", err)
	}
	c.observeSetup()
}

// copyBody copies a callee response's body (and its type) to out.
func copyBody(out, res *sip.Response) {
	body := res.Body()
	if len(body) == 0 || len(body) > maxBody {
		return
	}
	ct := safeContentType(res)
	if ct == "" {
		ct = "application/sdp"
	}
	out.AppendHeader(sip.NewHeader("Content-Type", ct))
	out.SetBody(body)
}

func (c *call) observeSetup() {
	c.mu.Lock()
	first := !c.ringing
	c.ringing = true
	c.mu.Unlock()
	if first {
		c.b.m.callSetup.Observe(time.Since(c.started).Seconds())
	}
}

// fail ends an unanswered call: the final response to the caller, then
// EndCall with that status as cause (nothing is charged).
func (c *call) fail(fl failure) {
	close(c.answerDone)
	cancelled, err := c.respond(c.response(fl.code, fl.reason))
	if cancelled && fl.code != sip.StatusRequestTerminated {
		fl = failure{sip.StatusRequestTerminated, statusText(487), ByCaller}
	}
	if err != nil {
		c.log.Debug("cannot send the final response to the caller", "code", fl.code, "error", err)
	}
	c.b.m.callFailed(fl.code)
	c.log.Debug("call failed", "cause", fl.code, "reason", fl.reason, "by", fl.by)
	c.end(c.b.cfg.Now(), fl.code, fl.reason, fl.by)
}

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
	connectAt, mono := b.cfg.Now(), time.Now()
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
	c.log.Debug("call answered", "callee_leg", f.tgt.desc, "max_duration", c.maxDur)
	b.calls.goCall(func() { c.afterAnswer(f, connectAt, mono, ok) })
}

// afterAnswer records the answer, retransmits the 2xx until the caller's
// ACK (RFC 3261 §13.3.1.4), and cuts the call at its maximum duration.
// An answered call that no ACK confirms within AckTimeout is hung up.
func (c *call) afterAnswer(f *fork, connectAt, mono time.Time, ok *sip.Response) {
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
	maxT := time.NewTimer(time.Until(mono.Add(time.Duration(c.maxDur) * time.Second)))
	defer maxT.Stop()
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
			c.log.Info("node stopping: leaving the answered call in the cluster state")
			return
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
		case <-maxT.C:
			c.log.Debug("maximum duration reached; hanging up", "max_duration", c.maxDur)
			c.hangup(ByTimer, sip.StatusOK, "Maximum Duration", nil)
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
			c.log.Debug("call ended", "cause", cause, "by", by, "duration", res.XDR.Duration, "amount", res.XDR.Amount,
				"xdr", res.XDR.Seq)
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

// other returns the leg across the call from d.
func (c *call) other(d *dialog) *dialog {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d == c.caller {
		if c.winner == nil {
			return nil
		}
		return c.winner.leg
	}
	return c.caller
}
