package b2bua

// Delivering a call: rounds of callee legs (forks) until one answers or
// the call fails.

import (
	"context"
	"slices"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/troika-sip/troika/billing"
)

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
	hdrs := append(c.relayed[:len(c.relayed):len(c.relayed)], assertedIdentity(from))
	if err := f.start(c.offer, hdrs); err != nil {
		c.b.m.forkResults.WithLabelValues("error").Inc()
		c.log.Warn("cannot send INVITE to callee leg", "target", t.desc, "error", err)
		return nil
	}
	c.forks = append(c.forks, f)
	c.b.calls.goCall(f.run)
	return f
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
