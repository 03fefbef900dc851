package cluster

// Indexes are this node's raft log indexes.
type Indexes struct {
	Commit, Applied, Last uint64
}

// Indexes returns this node's raft commit, applied and last log indexes
// (zero after Shutdown). Cheap: for readiness and gossip metadata.
func (n *Node) Indexes() Indexes {
	if n.alive() != nil {
		return Indexes{}
	}
	return Indexes{Commit: n.raft.CommitIndex(), Applied: n.raft.AppliedIndex(), Last: n.raft.LastIndex()}
}

// LeaderID returns the id of the leader this node knows, "" when none.
func (n *Node) LeaderID() string {
	if n.alive() != nil {
		return ""
	}
	_, id := n.raft.LeaderWithID()
	return string(id)
}
