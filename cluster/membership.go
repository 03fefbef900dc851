package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/retry"
)

const (
	joinAttemptTimeout = 10 * time.Second
	joinFirstBackoff   = 250 * time.Millisecond // after a round that did not add this node; doubling
	joinMaxBackoff     = 10 * time.Second
)

// joinLoop asks the Join members to add this node as a voter until one
// does, this node shows up in the configuration, or ctx ends.
func (n *Node) joinLoop(ctx context.Context) {
	start := time.Now()
	attempt := 0
	_, err := retry.Do(ctx, retry.Policy{Initial: joinFirstBackoff, Max: joinMaxBackoff}, func(ctx context.Context) (struct{}, error) {
		attempt++
		return struct{}{}, n.joinOnce(ctx, attempt, start)
	}, func(err error, wait time.Duration) {
		n.log.Warn("cluster: join: not added yet; retrying", "attempt", attempt, "retry_in", wait, "errors", err.Error())
	})
	if err != nil {
		n.log.Warn("cluster: gave up joining", "attempts", attempt, "error", err)
	}
}

// joinOnce asks each Join member in turn to add this node; nil once one
// did or this node is already a member.
func (n *Node) joinOnce(ctx context.Context, attempt int, start time.Time) error {
	if n.isMember() {
		n.log.Info("cluster: this node is a member", "after", time.Since(start).Round(time.Millisecond))
		return nil
	}
	var errs []string
	for _, addr := range n.cfg.Join {
		if addr == n.advertise {
			continue
		}
		err := n.joinVia(ctx, addr)
		if err == nil {
			n.log.Info("cluster: joined the cluster", "via", addr, "attempts", attempt, "after", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if ctx.Err() != nil {
			return retry.Permanent(err)
		}
		errs = append(errs, err.Error())
	}
	return errors.New(strings.Join(errs, "; "))
}

// joinVia asks the member at addr to add this node; a member that does not
// lead names the leader, which is asked next.
func (n *Node) joinVia(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, joinAttemptTimeout)
	defer cancel()
	body := idAddrBody(n.cfg.NodeID, n.advertise)
	target := addr
	for hop := 0; ; hop++ {
		_, err := n.callRemote(ctx, target, opAddVoter, body)
		var re *remoteError
		if err != nil && hop < 3 && errors.As(err, &re) && re.kind == kindRetry && re.leader != "" && re.leader != target {
			target = re.leader
			continue
		}
		if err != nil {
			return fmt.Errorf("via %s: %w", addr, err)
		}
		return nil
	}
}

// isMember reports whether this node is in the latest configuration it
// knows.
func (n *Node) isMember() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == n.cfg.NodeID {
			return true
		}
	}
	return false
}

// Server is one member of the raft configuration.
type Server struct {
	ID       string `json:"id"`
	Addr     string `json:"addr"`
	Suffrage string `json:"suffrage"` // Voter, Nonvoter, Staging
	Leader   bool   `json:"leader"`
}

// Status is a snapshot of this node's view of the cluster.
type Status struct {
	NodeID            string     `json:"node_id"`
	Addr              string     `json:"addr"`
	State             string     `json:"state"` // leader, follower, candidate, shutdown
	LeaderID          string     `json:"leader_id"`
	LeaderAddr        string     `json:"leader_addr"`
	Term              uint64     `json:"term"`
	LastLogIndex      uint64     `json:"last_log_index"`
	CommitIndex       uint64     `json:"commit_index"`
	AppliedIndex      uint64     `json:"applied_index"`
	LastSnapshotIndex uint64     `json:"last_snapshot_index"`
	LastContact       string     `json:"last_contact"` // with the leader: "0" on the leader, "never", or a duration
	Servers           []Server   `json:"servers"`
	FSM               fsm.Counts `json:"fsm"`
}

// Status returns this node's view of the cluster.
func (n *Node) Status() Status {
	if n.alive() != nil {
		return Status{NodeID: n.cfg.NodeID, Addr: n.advertise, State: "shutdown", Servers: []Server{}, FSM: n.state.Counts()}
	}
	stats := n.raft.Stats()
	u := func(k string) uint64 {
		v, _ := strconv.ParseUint(stats[k], 10, 64)
		return v
	}
	leaderAddr, leaderID := n.raft.LeaderWithID()
	st := Status{
		NodeID:            n.cfg.NodeID,
		Addr:              n.advertise,
		State:             strings.ToLower(n.raft.State().String()),
		LeaderID:          string(leaderID),
		LeaderAddr:        string(leaderAddr),
		Term:              u("term"),
		LastLogIndex:      u("last_log_index"),
		CommitIndex:       u("commit_index"),
		AppliedIndex:      u("applied_index"),
		LastSnapshotIndex: u("last_snapshot_index"),
		LastContact:       stats["last_contact"],
		Servers:           []Server{},
		FSM:               n.state.Counts(),
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Servers = append(st.Servers, Server{
				ID:       string(s.ID),
				Addr:     string(s.Address),
				Suffrage: s.Suffrage.String(),
				Leader:   s.ID == leaderID,
			})
		}
	}
	return st
}

// voters returns the ids of the voters in the latest configuration.
func (n *Node) voters() []string {
	var ids []string
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				ids = append(ids, string(s.ID))
			}
		}
	}
	return ids
}
