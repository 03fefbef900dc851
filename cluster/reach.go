package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// reachTracker follows the leader's heartbeats to its followers: raft
// reports each failed heartbeat (with the time of the last successful
// one) and the first success after failures. A crashed node's heartbeats
// fail at once (connection refused), well before gossip declares it dead.
type reachTracker struct {
	once    sync.Once
	mu      sync.Mutex
	failing map[string]time.Time // follower id -> last successful heartbeat, while heartbeats fail
	watch   chan struct{}        // closed and replaced when a follower starts or stops failing
}

// changed returns a channel closed at the next change.
func (r *reachTracker) changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watch == nil {
		r.watch = make(chan struct{})
	}
	return r.watch
}

func (r *reachTracker) notify() {
	if r.watch != nil {
		close(r.watch)
		r.watch = nil
	}
}

// reset forgets everything: called at each leadership change (a new term
// starts with fresh replication state).
func (r *reachTracker) reset() {
	r.mu.Lock()
	r.failing = nil
	r.mu.Unlock()
}

func (r *reachTracker) observe(o raft.Observation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ob := o.Data.(type) {
	case raft.FailedHeartbeatObservation:
		if r.failing == nil {
			r.failing = map[string]time.Time{}
		}
		last := ob.LastContact
		if last.IsZero() {
			last = time.Now()
		}
		prev, ok := r.failing[string(ob.PeerID)]
		if !ok || last.After(prev) {
			r.failing[string(ob.PeerID)] = last
		}
		if !ok {
			r.notify()
		}
	case raft.ResumedHeartbeatObservation:
		if _, ok := r.failing[string(ob.PeerID)]; ok {
			delete(r.failing, string(ob.PeerID))
			r.notify()
		}
	}
}

// startReachObserver starts following heartbeat failures (once).
func (n *Node) startReachObserver() {
	if n.alive() != nil {
		return
	}
	n.reach.once.Do(func() {
		ch := make(chan raft.Observation, 64)
		obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
			switch o.Data.(type) {
			case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
				return true
			}
			return false
		})
		n.raft.RegisterObserver(obs)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer n.raft.DeregisterObserver(obs)
			for {
				select {
				case o := <-ch:
					n.reach.observe(o)
				case <-n.ctx.Done():
					return
				}
			}
		}()
	})
}

// Unreachable returns, while this node leads, the followers whose
// heartbeats have failed for at least after, with how long since their
// last successful one.
func (n *Node) Unreachable(after time.Duration) map[string]time.Duration {
	n.startReachObserver()
	if !n.IsLeader() {
		return nil
	}
	now := time.Now()
	n.reach.mu.Lock()
	defer n.reach.mu.Unlock()
	var out map[string]time.Duration
	for id, last := range n.reach.failing {
		if d := now.Sub(last); d >= after {
			if out == nil {
				out = map[string]time.Duration{}
			}
			out[id] = d
		}
	}
	return out
}

// ReachChanged returns a channel closed when, while this node leads, a
// follower's heartbeats start or stop failing.
func (n *Node) ReachChanged() <-chan struct{} { return n.reach.changed() }

// Voters returns the ids of the voters in the latest raft configuration.
func (n *Node) Voters() []string { return n.voters() }
