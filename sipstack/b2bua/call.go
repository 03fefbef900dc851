package b2bua

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

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
	maxDur      int // seconds the reservation paid for at setup (logs; the paid time is read from the state: calltime.go)

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

func (c *call) observeSetup() {
	c.mu.Lock()
	first := !c.ringing
	c.ringing = true
	c.mu.Unlock()
	if first {
		c.b.m.callSetup.Observe(time.Since(c.started).Seconds())
	}
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
