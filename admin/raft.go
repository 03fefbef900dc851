package admin

import (
	"context"
	"net/http"
)

// The raft configuration as operators change it (`troika operator raft`):
//
//	GET  /v1/operator/raft/peers        the members, with their gossip state
//	POST /v1/operator/raft/add-voter    {"id", "addr", "force"}
//	POST /v1/operator/raft/remove-peer  {"id", "force"}

// RaftOperator is the part of the Backend that lists and changes the
// raft configuration. A backend without it answers 501.
type RaftOperator interface {
	RaftPeers(ctx context.Context) ([]RaftPeer, error)
	// AddVoter adds (or promotes, or moves) a voter and says what
	// happened. A *Refused says why not.
	AddVoter(ctx context.Context, id, addr string, force bool) (string, error)
	// RemovePeer removes a member and says what happened. A *Refused
	// says why not.
	RemovePeer(ctx context.Context, id string, force bool) (string, error)
}

// RaftPeer is a member of the raft configuration.
type RaftPeer struct {
	ID       string `json:"id"`
	Addr     string `json:"addr"`     // its cluster port
	Suffrage string `json:"suffrage"` // voter, nonvoter or staging
	Leader   bool   `json:"leader"`
	// Gossip is the member's state as the node asked sees it: alive,
	// suspect (alive, but its probes fail), dead, left, or unknown (never
	// heard of).
	Gossip  string `json:"gossip"`
	Version string `json:"version,omitempty"` // from gossip
}

// AddVoterRequest is the body of POST /v1/operator/raft/add-voter.
type AddVoterRequest struct {
	ID   string `json:"id"`
	Addr string `json:"addr"` // host:port of its cluster port
	// Force adds it even when nothing answers at Addr.
	Force bool `json:"force,omitempty"`
}

// RemovePeerRequest is the body of POST /v1/operator/raft/remove-peer.
type RemovePeerRequest struct {
	ID string `json:"id"`
	// Force removes it even when it is alive, or when the voters left
	// would lack a quorum.
	Force bool `json:"force,omitempty"`
}

// RaftChange is the answer to add-voter and remove-peer: what happened,
// and the members after it.
type RaftChange struct {
	Message string     `json:"message"`
	Peers   []RaftPeer `json:"peers"`
}

func (s *Server) raftRoutes(v1 func(string, handler)) {
	v1("GET /operator/raft/peers", backendPart(s, noRaftOperator, s.raftPeers))
	v1("POST /operator/raft/add-voter", backendPart(s, noRaftOperator, changeRaft[AddVoterRequest](s, "raft: voter added")))
	v1("POST /operator/raft/remove-peer", backendPart(s, noRaftOperator, changeRaft[RemovePeerRequest](s, "raft: member removed")))
}

// noRaftOperator is the 501 answer of a backend that is not a
// RaftOperator.
const noRaftOperator = "this node cannot change the raft configuration"

func (s *Server) raftPeers(w http.ResponseWriter, r *http.Request, op RaftOperator) error {
	peers, err := op.RaftPeers(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, peers)
	return nil
}

// raftChangeRequest is the body of a request that changes the raft
// members (AddVoterRequest, RemovePeerRequest).
type raftChangeRequest interface {
	// check answers a bad request for a body that lacks a field.
	check() error
	// apply asks op for the change and returns what happened.
	apply(ctx context.Context, op RaftOperator) (string, error)
	// logAttrs are what the log line of the change says of it.
	logAttrs() []any
}

func (in AddVoterRequest) check() error {
	if in.ID == "" {
		return badRequest("id", "the new voter's node_id is required")
	}
	if in.Addr == "" {
		return badRequest("addr", "the new voter's cluster address (host:port of its cluster.bind or cluster.advertise) is required")
	}
	return nil
}

func (in AddVoterRequest) apply(ctx context.Context, op RaftOperator) (string, error) {
	return op.AddVoter(ctx, in.ID, in.Addr, in.Force)
}

func (in AddVoterRequest) logAttrs() []any {
	return []any{"id", in.ID, "addr", in.Addr, "force", in.Force}
}

func (in RemovePeerRequest) check() error {
	if in.ID == "" {
		return badRequest("id", "the node_id of the member to remove is required")
	}
	return nil
}

func (in RemovePeerRequest) apply(ctx context.Context, op RaftOperator) (string, error) {
	return op.RemovePeer(ctx, in.ID, in.Force)
}

func (in RemovePeerRequest) logAttrs() []any { return []any{"id", in.ID, "force", in.Force} }

// changeRaft is the handler of a change of the raft members whose body is
// a T: the change is checked, made (a *Refused answers as refusedError
// says), logged at WARN as done with the token that asked, and answered
// with what happened and the members after it.
func changeRaft[T raftChangeRequest](s *Server, done string) func(http.ResponseWriter, *http.Request, RaftOperator) error {
	return func(w http.ResponseWriter, r *http.Request, op RaftOperator) error {
		var in T
		if err := decode(r, &in); err != nil {
			return err
		}
		if err := in.check(); err != nil {
			return err
		}
		msg, err := in.apply(r.Context(), op)
		if err != nil {
			return refusedError(err)
		}
		s.cfg.Logger.Warn(done, append([]any{"token", TokenName(r.Context())}, in.logAttrs()...)...)
		peers, err := op.RaftPeers(r.Context())
		if err != nil {
			peers = []RaftPeer{}
		}
		writeJSON(w, http.StatusOK, RaftChange{Message: msg, Peers: peers})
		return nil
	}
}

// RaftPeers lists the members of the raft configuration.
func (c *Client) RaftPeers(ctx context.Context) ([]RaftPeer, error) {
	return get[[]RaftPeer](ctx, c, "/v1/operator/raft/peers")
}

// AddVoter adds a voter to the raft configuration.
func (c *Client) AddVoter(ctx context.Context, in AddVoterRequest) (RaftChange, error) {
	return post[RaftChange](ctx, c, "/v1/operator/raft/add-voter", in)
}

// RemovePeer removes a member from the raft configuration.
func (c *Client) RemovePeer(ctx context.Context, in RemovePeerRequest) (RaftChange, error) {
	return post[RaftChange](ctx, c, "/v1/operator/raft/remove-peer", in)
}
