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
	v1("GET /operator/raft/peers", s.raftPeers)
	v1("POST /operator/raft/add-voter", s.addVoter)
	v1("POST /operator/raft/remove-peer", s.removePeer)
}

func (s *Server) raftOperator() (RaftOperator, error) {
	op, ok := s.backend.(RaftOperator)
	if !ok {
		return nil, &httpError{status: http.StatusNotImplemented, body: Error{Error: "this node cannot change the raft configuration"}}
	}
	return op, nil
}

func (s *Server) raftPeers(w http.ResponseWriter, r *http.Request) error {
	op, err := s.raftOperator()
	if err != nil {
		return err
	}
	peers, err := op.RaftPeers(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, peers)
	return nil
}

func (s *Server) addVoter(w http.ResponseWriter, r *http.Request) error {
	op, err := s.raftOperator()
	if err != nil {
		return err
	}
	var in AddVoterRequest
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.ID == "" {
		return badRequest("id", "the new voter's node_id is required")
	}
	if in.Addr == "" {
		return badRequest("addr", "the new voter's cluster address (host:port of its cluster.bind or cluster.advertise) is required")
	}
	msg, err := op.AddVoter(r.Context(), in.ID, in.Addr, in.Force)
	if err != nil {
		return refusedError(err)
	}
	s.cfg.Logger.Warn("raft: voter added", "token", TokenName(r.Context()), "id", in.ID, "addr", in.Addr, "force", in.Force)
	return s.raftChanged(w, r, op, msg)
}

func (s *Server) removePeer(w http.ResponseWriter, r *http.Request) error {
	op, err := s.raftOperator()
	if err != nil {
		return err
	}
	var in RemovePeerRequest
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.ID == "" {
		return badRequest("id", "the node_id of the member to remove is required")
	}
	msg, err := op.RemovePeer(r.Context(), in.ID, in.Force)
	if err != nil {
		return refusedError(err)
	}
	s.cfg.Logger.Warn("raft: member removed", "token", TokenName(r.Context()), "id", in.ID, "force", in.Force)
	return s.raftChanged(w, r, op, msg)
}

func (s *Server) raftChanged(w http.ResponseWriter, r *http.Request, op RaftOperator, msg string) error {
	peers, err := op.RaftPeers(r.Context())
	if err != nil {
		peers = []RaftPeer{}
	}
	writeJSON(w, http.StatusOK, RaftChange{Message: msg, Peers: peers})
	return nil
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
