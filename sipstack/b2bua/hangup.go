package b2bua

import (
	"errors"
	"fmt"

	"github.com/emiago/sipgo/sip"
)

// ErrCallNotHere: the call is not run by this node (HangupCall).
var ErrCallNotHere = errors.New("the call is not run by this node")

// ErrCallNotAnswered: the call is still being set up (HangupCall).
var ErrCallNotAnswered = errors.New("the call is not answered yet")

// HangupCall ends an answered call this node runs, as the engineer on
// call asks: BYE to both legs, and its xDR filed with cause 200 "Hung up
// by the operator", disconnected by ByOperator. It returns
// ErrCallNotHere when another node runs it (or none does), and
// ErrCallNotAnswered while it rings.
func (b *B2BUA) HangupCall(callID string) error {
	ref, ok := b.calls.lookup(callID)
	if fc, known := b.state.Call(callID); !ok || !known || fc.Node != b.cfg.NodeID {
		return fmt.Errorf("call %s: %w", callID, ErrCallNotHere)
	}
	c := ref.c
	c.mu.Lock()
	answered, winner := c.answered, c.winner
	c.mu.Unlock()
	if !answered || winner == nil {
		return fmt.Errorf("call %s: %w", callID, ErrCallNotAnswered)
	}
	c.log.Info("hanging up at the operator's request")
	c.hangup(ByOperator, sip.StatusOK, "Hung up by the operator", nil)
	return nil
}
