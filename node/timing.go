package node

import (
	"errors"
	"time"

	"github.com/troika-sip/troika/cluster"
)

// Raft timing ([cluster] heartbeat_timeout, election_timeout,
// leader_lease_timeout) and the self-fencing timing of the addresses that
// builds on it ([vip] lease and margin, vip.go).

// Raft timing defaults, tuned for failover on a LAN: a follower starts an
// election 0.3-0.9 s after it last heard from the leader (raft waits a
// random 1-2 heartbeat timeouts, re-armed while contact is recent), so an
// election ends well within vip.lease and address holders keep their
// addresses through it; a leader that cannot reach a quorum steps down
// within about 150 ms.
const (
	DefaultHeartbeatTimeout   = 300 * time.Millisecond
	DefaultElectionTimeout    = 300 * time.Millisecond
	DefaultLeaderLeaseTimeout = 150 * time.Millisecond
)

func (c *Config) applyRaftTimingDefaults() {
	cc := &c.Cluster
	if cc.HeartbeatTimeout == 0 {
		cc.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if cc.ElectionTimeout == 0 {
		cc.ElectionTimeout = DefaultElectionTimeout
	}
	if cc.LeaderLeaseTimeout == 0 {
		cc.LeaderLeaseTimeout = min(DefaultLeaderLeaseTimeout, cc.HeartbeatTimeout)
	}
}

func (c *Config) validateRaftTiming() error {
	cc := c.Cluster
	switch {
	case cc.HeartbeatTimeout < 50*time.Millisecond || cc.ElectionTimeout < 50*time.Millisecond:
		return errors.New("cluster.heartbeat_timeout and election_timeout: at least 50ms")
	case cc.ElectionTimeout < cc.HeartbeatTimeout:
		return errors.New("cluster.election_timeout: cannot be shorter than heartbeat_timeout")
	case cc.LeaderLeaseTimeout < 10*time.Millisecond || cc.LeaderLeaseTimeout > cc.HeartbeatTimeout:
		return errors.New("cluster.leader_lease_timeout: between 10ms and heartbeat_timeout")
	}
	return nil
}

// LeaseTiming is the self-fencing timing of the [vip] section.
func (c *Config) LeaseTiming() cluster.LeaseTiming {
	t := cluster.LeaseTiming{LeaderLeaseTimeout: c.Cluster.LeaderLeaseTimeout}
	if c.VIP != nil {
		t.Lease, t.Margin = c.VIP.Lease, c.VIP.Margin
	}
	return t
}
