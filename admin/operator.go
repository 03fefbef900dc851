package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/troika-sip/troika/fsm"
)

// Operator is what the operator's actions of the API need of the node
// that serves it, beyond Backend: a Backend that implements it gets
// DELETE /v1/calls/{id} and the /v1/auth/blocks endpoints (others answer
// them 501).
type Operator interface {
	// HangupCall ends an answered call this node runs; ErrCallNotHere
	// (wrapped) when another node runs it, ErrCallNotAnswered while it
	// rings.
	HangupCall(id string) error
	// AuthBlocks lists what this node's authentication blocks.
	AuthBlocks() AuthBlocks
	// UnblockSource and UnthrottleUser lift a block on this node; false
	// when there was none.
	UnblockSource(ip netip.Addr) bool
	UnthrottleUser(user string) bool
}

// Refusals of Operator.HangupCall.
var (
	ErrCallNotHere     = errors.New("the call is not run by this node")
	ErrCallNotAnswered = errors.New("the call is not answered yet")
)

// AuthBlocks is GET /v1/auth/blocks: what one node's authentication
// refuses unchecked right now. Each node keeps its own.
type AuthBlocks struct {
	// Sources blocked after too many failed authentications
	// (registrar.auth_failures_per_minute); an IPv6 source is its /64.
	Sources []BlockedSource `json:"sources"`
	// Users whose guesses from unknown sources are used up
	// (registrar.account_guesses_per_minute): 503 to those sources.
	Users []ThrottledUser `json:"users"`
}

// BlockedSource is one blocked source address.
type BlockedSource struct {
	Source string `json:"source"`
	Until  string `json:"until"` // RFC 3339
}

// ThrottledUser is one throttled user name.
type ThrottledUser struct {
	User    string `json:"user"`
	RetryAt string `json:"retry_at"` // RFC 3339
}

// DropResult is the answer of DELETE /v1/registrations/{account}.
type DropResult struct {
	Dropped int `json:"dropped"`
}

// noOperator is the 501 answer of a backend that is not an Operator.
const noOperator = "this server's backend has no operator actions (not a troika node)"

// dropRegistrations answers DELETE /v1/registrations/{account}: every
// binding of the account, or with ?contact= the one with that contact
// URI. The phone registers again at its next refresh, with its password.
func (s *Server) dropRegistrations(w http.ResponseWriter, r *http.Request) error {
	id, contact := r.PathValue("account"), r.URL.Query().Get("contact")
	if _, ok := s.state.Account(id); !ok {
		return notFound("account", id)
	}
	now := s.now()
	cmd := &fsm.Register{AOR: id, CallID: "troika-admin-drop-" + randomHex(8), CSeq: 1, Now: now}
	current := s.state.Bindings(id, now)
	if contact == "" {
		cmd.Wildcard = true
	} else {
		for _, b := range current {
			if b.Contact == contact {
				cmd.Bindings = append(cmd.Bindings, fsm.Binding{Contact: b.Contact, Instance: b.Instance, RegID: b.RegID, ExpiresAt: now})
			}
		}
		if len(cmd.Bindings) == 0 {
			return notFound("registration of account "+id+" with contact", contact)
		}
	}
	if _, err := s.propose(r, cmd); err != nil {
		return err
	}
	dropped := len(current)
	if contact != "" {
		dropped = len(cmd.Bindings)
	}
	s.cfg.Logger.Info("audit: registrations dropped", "account", id, "contact", contact, "dropped", dropped,
		"token", TokenName(r.Context()), "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, DropResult{Dropped: dropped})
	return nil
}

// hangupCall answers DELETE /v1/calls/{id}.
func (s *Server) hangupCall(w http.ResponseWriter, r *http.Request, op Operator) error {
	id := r.PathValue("id")
	c, ok := s.state.Call(id)
	if !ok {
		return notFound("call", id)
	}
	switch err := op.HangupCall(id); {
	case errors.Is(err, ErrCallNotHere):
		return &httpError{status: http.StatusConflict, body: Error{Error: fmt.Sprintf(
			"call %s is run by node %s, not this one: send the request to %s's admin API", id, c.Node, c.Node)}}
	case errors.Is(err, ErrCallNotAnswered):
		return &httpError{status: http.StatusConflict, body: Error{Error: fmt.Sprintf("call %s is still ringing: try again once it is answered or over", id)}}
	case err != nil:
		return err
	}
	s.cfg.Logger.Info("audit: call hung up", "call_id", id, "account", c.Account, "token", TokenName(r.Context()), "remote", r.RemoteAddr)
	x, ok := s.state.XDRForCall(id)
	if !ok { // hung up; its EndCall is not applied here yet
		writeJSON(w, http.StatusAccepted, XDR{})
		return nil
	}
	writeJSON(w, http.StatusOK, xdrFromFSM(x))
	return nil
}

// authBlocks answers GET /v1/auth/blocks.
func (s *Server) authBlocks(w http.ResponseWriter, r *http.Request, op Operator) error {
	writeJSON(w, http.StatusOK, op.AuthBlocks())
	return nil
}

// unblockSource answers DELETE /v1/auth/blocks/sources/{ip}.
func (s *Server) unblockSource(w http.ResponseWriter, r *http.Request, op Operator) error {
	ip, err := netip.ParseAddr(r.PathValue("ip"))
	if err != nil {
		return badRequest("ip", "%q is not an IP address", r.PathValue("ip"))
	}
	if !op.UnblockSource(ip) {
		return notFound("blocked source", ip.String())
	}
	s.cfg.Logger.Info("audit: source unblocked", "source", ip.String(), "token", TokenName(r.Context()), "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// unthrottleUser answers DELETE /v1/auth/blocks/users/{user}.
func (s *Server) unthrottleUser(w http.ResponseWriter, r *http.Request, op Operator) error {
	user := r.PathValue("user")
	if !op.UnthrottleUser(user) {
		return notFound("throttled user", user)
	}
	s.cfg.Logger.Info("audit: user name unthrottled", "user", user, "token", TokenName(r.Context()), "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
