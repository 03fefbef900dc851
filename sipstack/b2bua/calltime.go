package b2bua

// The paid time of an answered call: the node running it (the one that
// answered it, or its adopter) cuts it when the time its reservations
// pay for runs out. A call reserved by chunks (fsm.StartCall.Chunk) asks
// for the next chunk (fsm.ExtendCall) a little before that; when the
// money could pay only part of a chunk, or none, the call's end is final
// and it is cut there: BYE on both legs, and an xDR "Out of Credit".

import (
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
)

// extendLead is how long before its paid time runs out a call asks for
// its next chunk: a quarter of the chunk, between 1 and 30 seconds, so a
// write retried a few times still lands before the cut.
func extendLead(chunkSeconds int) time.Duration {
	return min(max(time.Duration(chunkSeconds)*time.Second/4, time.Second), 30*time.Second)
}

// extendRetry is how long a call waits after a failed extension before it
// asks again (it is cut when its paid time runs out meanwhile).
const extendRetry = time.Second

// Results of an extension (troika_sip_call_extensions_total).
const (
	extensionExtended = "extended" // a whole chunk
	extensionFinal    = "final"    // part of a chunk, or none: the call ends at what it paid for
	extensionRefused  = "refused"  // by the state machine (the call ended meanwhile, ...)
	extensionFailed   = "failed"   // not written
)

// Why a call was cut at its paid time, as its xDR's cause text.
const (
	causeMaxDuration = "Maximum Duration" // the longest call the switch allows
	causeOutOfCredit = "Out of Credit"    // the money paid for no more
)

// watchPaidTime runs while an answered call is up on this node: it
// extends the call's reservation chunk by chunk while its quota allows,
// and cuts the call when its paid time, counted from connect, runs out.
// It returns when the call ends, when another node ended it, or when the
// node stops (the call then stays in the cluster state for an adopter,
// which runs this again).
func (c *call) watchPaidTime(connect time.Time) {
	b := c.b
	al := alarm{now: b.cfg.Now, jumps: b.cfg.ClockJumps}
	defer al.stop()
	var retryAt time.Time
	// lateTry: the call's paid time had run out when it could still be
	// extended (an adopter's first look, after a gap with no node running
	// the call): it is extended once more before it is cut, the chunk then
	// paying for the gap too.
	lateTry := false
	for {
		fc, ok := b.state.Call(c.id)
		if !ok {
			return // ended by another node: ForgetMoved drops it here
		}
		cutAt := connect.Add(time.Duration(fc.MaxDuration) * time.Second)
		var extendAt time.Time
		q, chunked := b.state.CallQuota(c.id)
		if chunked && q.Extendable(fc.MaxDuration) && b.quotaThroughLog() {
			extendAt = cutAt.Add(-extendLead(q.Chunk))
			if retryAt.After(extendAt) {
				extendAt = retryAt
			}
		}
		wake := cutAt
		if !extendAt.IsZero() && extendAt.Before(cutAt) {
			wake = extendAt
		}
		rang, jumped := al.set(wake)
		select {
		case <-c.ending:
			return
		case <-b.calls.stop:
			c.log.Info("node stopping: leaving the answered call in the cluster state")
			return
		case <-jumped:
			continue
		case <-rang:
		}
		now := b.cfg.Now()
		switch {
		case !extendAt.IsZero() && !now.Before(extendAt) && (now.Before(cutAt) || !lateTry):
			lateTry = lateTry || !now.Before(cutAt)
			if !c.extend(q.Extensions + 1) {
				retryAt = now.Add(extendRetry)
			}
		case !now.Before(cutAt):
			cause := causeOutOfCredit
			maxSeconds := b.cfg.Calls.MaxCallSeconds
			if chunked {
				maxSeconds = q.MaxSeconds
			}
			if fc.MaxDuration >= maxSeconds {
				cause = causeMaxDuration
			}
			c.log.Debug("paid time over; hanging up", "paid_seconds", fc.MaxDuration, "cause", cause)
			c.hangup(ByTimer, sip.StatusOK, cause, nil)
			return
		}
	}
}

// extend reserves the call's next chunk (ExtendCall number seq) and
// reports whether it was written; the caller reads the result from the
// state.
func (c *call) extend(seq int) bool {
	res, err := c.b.proposeCall("extend", &fsm.ExtendCall{ID: c.id, Seq: seq})
	switch {
	case err != nil:
		c.b.m.extensions.WithLabelValues(extensionFailed).Inc()
		c.log.Warn("could not reserve the call's next chunk; trying again until its paid time runs out", "seq", seq, "error", err)
		return false
	case res.Err != nil:
		c.b.m.extensions.WithLabelValues(extensionRefused).Inc()
		c.log.Info("the call's next chunk was refused", "seq", seq, "error", res.Err)
		return false
	}
	q, _ := c.b.state.CallQuota(c.id)
	result := extensionExtended
	if q.Final {
		result = extensionFinal
	}
	c.b.m.extensions.WithLabelValues(result).Inc()
	c.log.Debug("reserved the call's next chunk", "seq", seq, "paid_seconds", res.Call.MaxDuration, "final", q.Final)
	return true
}

// quotaThroughLog reports whether calls reserve by chunks and are
// extended (Config.QuotaThroughLog).
func (b *B2BUA) quotaThroughLog() bool {
	return b.cfg.QuotaThroughLog == nil || b.cfg.QuotaThroughLog()
}

// startCommand is the command that starts a call: StartCall with a
// chunk when the cluster reserves by chunks, else the version every
// build applies (fsm.StartCallV1), which reserves the whole call (as a
// chunk as long as the longest call would).
func (b *B2BUA) startCommand(c *fsm.StartCall) fsm.Command {
	if chunk := b.cfg.Calls.ReserveChunkSeconds; chunk > 0 && chunk < b.cfg.Calls.MaxCallSeconds && b.quotaThroughLog() {
		cp := *c
		cp.Chunk = b.cfg.Calls.ReserveChunkSeconds
		return &cp
	}
	return c.V1()
}

// alarm wakes a goroutine when Config.Now reaches a time: a timer for the
// time left, re-armed by the caller when the clock jumps (ClockJumps).
type alarm struct {
	now   func() time.Time
	jumps func() <-chan struct{} // nil: the clock never jumps
	timer *time.Timer
}

// set arms the alarm for at and returns the channel it rings on and the
// one closed at the clock's next jump (nil when it never jumps), after
// which set must be called again.
func (a *alarm) set(at time.Time) (rang <-chan time.Time, jumped <-chan struct{}) {
	if a.jumps != nil {
		jumped = a.jumps() // before reading the clock: no jump is missed
	}
	d := max(at.Sub(a.now()), 0)
	if a.timer == nil {
		a.timer = time.NewTimer(d)
	} else {
		a.timer.Reset(d)
	}
	return a.timer.C, jumped
}

func (a *alarm) stop() {
	if a.timer != nil {
		a.timer.Stop()
	}
}
