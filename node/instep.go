package node

import "time"

// A node cut off from the leader (a partition, a lost quorum) stops
// applying the log; when it comes back, gossip sees it alive at once,
// while its state copy still lags. Dispatched SIP would then meet a stale
// state: a BYE of a call started meanwhile answered 481, the call left up
// and billed to its maximum duration. So a node that loses its leader is
// out of step, and announces itself "starting" (no SIP dispatched to it,
// publishMeta) until it hears from a leader again and has applied the log
// to within ReadyMaxLag of the leader's commit index. Lag alone never
// takes a node out of step: under load a follower's lag comes and goes,
// and the dispatcher's ring should not.

// updateInStep re-evaluates whether this node is in step with the
// cluster, and reports whether that changed.
func (n *Node) updateInStep() bool {
	if n.cluster == nil || n.gossip == nil {
		return false
	}
	select {
	case <-n.ready:
	default:
		return false // starting: announced as such anyway
	}
	leads, contact := n.cluster.LeaderContact()
	leaderID := n.cluster.LeaderID()
	lost := !leads && (leaderID == "" || contact.IsZero() || time.Since(contact) > n.readyContactMax())
	was := n.outOfStep.Load()
	now := was
	switch {
	case lost:
		now = true
	case was:
		var leaderCommit uint64
		if !leads {
			for _, m := range n.gossip.Members() {
				if m.ID == leaderID {
					leaderCommit = m.Meta.CommitIndex
				}
			}
		}
		caught, _ := caughtUp(true, n.cluster.Indexes(), leaderCommit)
		now = !caught
	}
	if now == was {
		return false
	}
	n.outOfStep.Store(now)
	if now {
		n.log.Warn("out of step: no raft leader heard from lately (cut off, or no quorum); this node takes no dispatched SIP until it has caught up again",
			"leader", leaderID, "last_contact", contact)
	} else {
		n.log.Info("in step again: caught up with the leader; taking dispatched SIP")
	}
	return true
}
