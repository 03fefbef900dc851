package sipstack

import "github.com/troika-sip/troika/sipstack/b2bua"

// The SIP server's calls (sipstack/b2bua), as the node sees them.

// CallConfig tunes the B2BUA (b2bua.CallConfig).
type CallConfig = b2bua.CallConfig

// DeliveryConfig tunes redirects and follow-me (b2bua.DeliveryConfig).
type DeliveryConfig = b2bua.DeliveryConfig

// Resolver looks up host names for the B2BUA (b2bua.Resolver).
type Resolver = b2bua.Resolver

// ActiveCalls returns how many calls this node has in progress.
func (s *Server) ActiveCalls() int { return s.calls.ActiveCalls() }

// Runs reports whether the call with the caller's Call-ID callID runs
// here (a node's drain waits for the ringing ones).
func (s *Server) Runs(callID string) bool { return s.calls.Runs(callID) }

// Drain makes this node refuse new calls (on) or take them again (off):
// a planned stop. A new INVITE then gets 503 with Retry-After.
func (s *Server) Drain(on bool) { s.calls.Drain(on) }

// Draining reports whether Drain is on.
func (s *Server) Draining() bool { return s.calls.Draining() }

// AdoptOrphans adopts the answered calls of nodes that are gone
// (b2bua.B2BUA.AdoptOrphans). It returns how many it adopted.
func (s *Server) AdoptOrphans() int { return s.calls.AdoptOrphans() }

// ForgetMoved drops the answered calls another node ended or carries on
// (b2bua.B2BUA.ForgetMoved). It returns how many it dropped.
func (s *Server) ForgetMoved() int { return s.calls.ForgetMoved() }

// HangupCall ends an answered call this node runs (b2bua.B2BUA.HangupCall).
func (s *Server) HangupCall(callID string) error { return s.calls.HangupCall(callID) }

// ErrCallNotHere and ErrCallNotAnswered are HangupCall's refusals.
var (
	ErrCallNotHere     = b2bua.ErrCallNotHere
	ErrCallNotAnswered = b2bua.ErrCallNotAnswered
)
