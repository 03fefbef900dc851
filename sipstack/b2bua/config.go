package b2bua

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
)

// CallConfig tunes the B2BUA. Zero values take the defaults named on each
// field.
type CallConfig struct {
	// RingTimeout is Timer C: a call no callee has answered within it is
	// ended, its callee legs CANCELled and the caller answered 408.
	// 60 s when zero.
	RingTimeout time.Duration

	// MaxCallSeconds is the longest call the switch allows (StartCall's
	// MaxSeconds). Prepaid calls are cut earlier when their reservation
	// runs out. Without ReserveChunkSeconds a prepaid call reserves what
	// its balance buys up to this length, so it also bounds the money one
	// call holds. 14400 when zero.
	MaxCallSeconds int

	// ReserveChunkSeconds is how much call time a call reserves at a
	// time: at setup its first chunk (connect fee included), then, before
	// a chunk runs out, the next (fsm.ExtendCall), so that many calls of
	// one account share its balance. When the money cannot pay a whole
	// chunk the call gets what it can pay for and is cut there. 0: a call
	// reserves what the money buys up to MaxCallSeconds at setup (then one
	// prepaid call can hold a whole balance).
	ReserveChunkSeconds int

	// MaxCalls bounds the calls in progress (ringing or answered) on this
	// node; further INVITEs get 503 with Retry-After. 10000 when zero.
	MaxCalls int

	// ProposeTimeout bounds one replicated write of a call (start, answer,
	// end). A failed start is answered 503; answer and end are retried a
	// few times. 5 s when zero.
	ProposeTimeout time.Duration

	// AckTimeout is how long the 200 to the caller is retransmitted while
	// waiting for its ACK; an answered call still unconfirmed then is hung
	// up (BYE both legs). 64*T1 (32 s) when zero, as RFC 3261 §13.3.1.4.
	AckTimeout time.Duration
}

// Defaults of CallConfig.
const (
	defaultRingTimeout    = 60 * time.Second
	defaultMaxCallSeconds = 14400
	defaultMaxCalls       = 10000
	defaultProposeTimeout = 5 * time.Second
)

// WithDefaults fills zero values and checks the result.
func (cc CallConfig) WithDefaults() (CallConfig, error) {
	cc.RingTimeout = cmp.Or(cc.RingTimeout, defaultRingTimeout)
	cc.MaxCallSeconds = cmp.Or(cc.MaxCallSeconds, defaultMaxCallSeconds)
	cc.MaxCalls = cmp.Or(cc.MaxCalls, defaultMaxCalls)
	cc.ProposeTimeout = cmp.Or(cc.ProposeTimeout, defaultProposeTimeout)
	cc.AckTimeout = cmp.Or(cc.AckTimeout, 64*sip.T1)
	switch {
	case cc.RingTimeout < 0 || cc.MaxCallSeconds < 0 || cc.MaxCalls < 0 || cc.ProposeTimeout < 0 || cc.AckTimeout < 0 || cc.ReserveChunkSeconds < 0:
		return cc, errors.New("calls: timeouts, max call seconds, reserve chunk and max calls cannot be negative")
	case cc.MaxCallSeconds > 7*24*3600:
		return cc, fmt.Errorf("calls max call seconds %d: at most a week", cc.MaxCallSeconds)
	}
	return cc, nil
}
