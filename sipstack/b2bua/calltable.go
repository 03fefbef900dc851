package b2bua

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Leg roles, as fsm.Leg.Role and in logs.
const (
	LegCaller = "caller"
	LegCallee = "callee"
)

// Who ended a call, as fsm.EndCall.DisconnectedBy and the
// calls_ended_total label.
const (
	ByCaller = "caller"
	ByCallee = "callee"
	ByTimer  = "timer"
	BySystem = "system"
	// ByOperator: hung up through the admin API (HangupCall).
	ByOperator = "operator"
)

// legRef is what a Call-ID leads to: a call and one of its dialogs.
type legRef struct {
	c *call
	d *dialog
}

// callTable holds the calls of one B2BUA: their dialogs by Call-ID (the
// caller's, and the answered callee leg's), the slots bounding them, and
// the goroutines they run.
type callTable struct {
	onPanic func(p any) // reports a panic of a call goroutine (which is then over)
	slots   chan struct{}
	wg      sync.WaitGroup // goroutines of calls: forks, answered calls, teardowns
	stop    chan struct{}  // closed at shutdown
	// draining: new calls are refused with 503 (B2BUA.Drain).
	draining atomic.Bool

	mu   sync.Mutex
	legs map[string]legRef

	hosts hostCache // host names of redirect targets, static contacts, trusted domains (b2bua_redirect.go)
}

func newCallTable(max int, onPanic func(any)) *callTable {
	return &callTable{onPanic: onPanic, slots: make(chan struct{}, max), stop: make(chan struct{}), legs: map[string]legRef{}}
}

// acquire takes a call slot, or reports that the node is full.
func (t *callTable) acquire() bool {
	select {
	case t.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (t *callTable) release() { <-t.slots }

// add files a dialog under its Call-ID; false if the Call-ID is taken.
func (t *callTable) add(callID string, ref legRef) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.legs[callID]; dup {
		return false
	}
	t.legs[callID] = ref
	return true
}

func (t *callTable) remove(callID string, c *call) {
	t.mu.Lock()
	if ref, ok := t.legs[callID]; ok && ref.c == c {
		delete(t.legs, callID)
	}
	t.mu.Unlock()
}

func (t *callTable) lookup(callID string) (legRef, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ref, ok := t.legs[callID]
	return ref, ok
}

// all returns the calls filed, each once.
func (t *callTable) all() []*call {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[*call]bool{}
	var out []*call
	for _, ref := range t.legs {
		if !seen[ref.c] {
			seen[ref.c] = true
			out = append(out, ref.c)
		}
	}
	return out
}

// size is the number of dialogs filed (tests: nothing may be left behind).
func (t *callTable) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.legs)
}

// goCall runs f as a goroutine of a call, waited for at shutdown. A
// panic ends only that goroutine (reported to onPanic), not the node.
func (t *callTable) goCall(f func()) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() {
			if p := recover(); p != nil {
				t.onPanic(p)
			}
		}()
		f()
	}()
}

// shutdown tells answered calls to stop their timers (they stay in the
// fsm, for another node to adopt) and waits up to timeout for every call
// goroutine to end.
func (t *callTable) shutdown(timeout time.Duration) bool {
	close(t.stop)
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// ActiveCalls returns how many calls this node has in progress.
func (b *B2BUA) ActiveCalls() int { return len(b.calls.slots) }

// Runs reports whether the call with the caller's Call-ID callID runs
// here (a node's drain waits for the ringing ones).
func (b *B2BUA) Runs(callID string) bool {
	_, ok := b.calls.lookup(callID)
	return ok
}

// Dialogs returns how many dialogs this node has filed: the caller's and
// the answered callee leg's of every call (tests: nothing may be left
// behind).
func (b *B2BUA) Dialogs() int { return b.calls.size() }

// match finds the dialog an in-dialog request (or ACK) belongs to: its
// Call-ID, the peer's tag in From and ours in To.
func (t *callTable) match(req *sip.Request) (legRef, bool) {
	cid := req.CallID()
	from, to := req.From(), req.To()
	if cid == nil || from == nil || to == nil {
		return legRef{}, false
	}
	ref, ok := t.lookup(cid.Value())
	if !ok {
		return legRef{}, false
	}
	fromTag, _ := from.Params.Get("tag")
	toTag, _ := to.Params.Get("tag")
	if fromTag == "" || fromTag != ref.d.peerTag() || toTag != ref.d.localTag {
		return legRef{}, false
	}
	return ref, true
}
