package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Peer is one voter of a static cluster definition.
type Peer struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// Config configures a Node. Zero tuning values mean production defaults.
type Config struct {
	// NodeID names this node in raft; it must be stable across restarts.
	NodeID string
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string
	// BindAddr is the host:port this node listens on for all internal
	// traffic (raft and write forwarding share the port). Port 0 picks a
	// free port (tests).
	BindAddr string
	// AdvertiseAddr is the host:port other nodes reach this node at.
	// Default: the bound address, which must then not be a wildcard.
	AdvertiseAddr string
	// Listener, when set, is used instead of listening on BindAddr (tests,
	// socket activation). The node owns it from then on: it is closed at
	// Shutdown, or by Start when Start fails.
	Listener net.Listener
	// Key is the cluster key (at least 16 bytes) every internal
	// connection proves it knows.
	Key []byte
	// TLS, when set, encrypts the cluster port and authenticates both
	// ends with certificates of the cluster CA (tls.go). Nil: plaintext,
	// authenticated by the cluster key only.
	TLS *TLSConfig
	// Peers is the static voter set, used to bootstrap when this node has
	// no raft state yet. Every node lists the same peers, itself included.
	Peers []Peer
	// Bootstrap with no Peers bootstraps a single-node cluster (dev).
	Bootstrap bool
	// Join lists addresses of existing members. A node with no state and
	// no Peers asks them to add it as a voter, retrying until it is added
	// or the context given to Start ends.
	Join []string
	// OnLeader runs in its own goroutine each time this node becomes the
	// leader, after a raft barrier (the fsm has applied everything the
	// previous leaders committed). Its context ends when leadership is
	// lost or the node shuts down; Shutdown waits for it to return.
	OnLeader func(ctx context.Context)
	// Logger receives the package's and raft's logs. Default: slog.Default().
	Logger *slog.Logger
	// Metrics is where the raft and address metrics are registered
	// (metrics.go). Default: a registry of the node's own, read by nobody.
	Metrics prometheus.Registerer

	// Raft tuning; zero means the default in parentheses.
	SnapshotThreshold  uint64        // (8192) new log entries before a snapshot
	SnapshotInterval   time.Duration // (120s) how often the threshold is checked
	TrailingLogs       uint64        // (10240) entries kept after a snapshot
	HeartbeatTimeout   time.Duration // (1s)
	ElectionTimeout    time.Duration // (1s)
	LeaderLeaseTimeout time.Duration // (500ms)
	// CommitLinger: the leader starts a log write no sooner than this after
	// the start of the previous one, so that proposals arriving meanwhile
	// share its disk transaction and fsync (linger.go). (2ms); negative:
	// write at once.
	CommitLinger time.Duration
}

const (
	defaultSnapshotThreshold  = 8192
	defaultSnapshotInterval   = 120 * time.Second
	defaultTrailingLogs       = 10240
	defaultHeartbeatTimeout   = time.Second
	defaultElectionTimeout    = time.Second
	defaultLeaderLeaseTimeout = 500 * time.Millisecond
	defaultCommitLinger       = 2 * time.Millisecond

	minKeyLen = 16
)

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$`)

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	setDefault(&c.SnapshotThreshold, defaultSnapshotThreshold)
	setDefault(&c.SnapshotInterval, defaultSnapshotInterval)
	setDefault(&c.TrailingLogs, defaultTrailingLogs)
	setDefault(&c.HeartbeatTimeout, defaultHeartbeatTimeout)
	setDefault(&c.ElectionTimeout, defaultElectionTimeout)
	setDefault(&c.CommitLinger, defaultCommitLinger)
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = defaultLeaderLeaseTimeout
		if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
			c.LeaderLeaseTimeout = c.HeartbeatTimeout
		}
	}
}

// validate checks the fields that do not need the listener.
func (c *Config) validate() error {
	var errs []error
	if !nodeIDPattern.MatchString(c.NodeID) {
		errs = append(errs, fmt.Errorf("node_id %q: must be 1-64 letters, digits, '_', '.' or '-'", c.NodeID))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: is required"))
	}
	if c.BindAddr == "" && c.Listener == nil {
		errs = append(errs, errors.New("bind_addr: is required"))
	}
	if len(c.Key) < minKeyLen {
		errs = append(errs, fmt.Errorf("cluster key: must be at least %d bytes (got %d)", minKeyLen, len(c.Key)))
	}
	if c.TLS != nil {
		if err := c.TLS.check(c.NodeID); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Bootstrap && len(c.Peers) == 0 && len(c.Join) > 0 {
		errs = append(errs, errors.New("bootstrap and join: set one, not both (bootstrapping would start a second, separate cluster)"))
	}
	if len(c.Peers) > 0 && len(c.Join) > 0 {
		errs = append(errs, errors.New("peers and join: set one, not both (static peers bootstrap the cluster; join is for adding a node to a running one)"))
	}
	ids, addrs := map[string]bool{}, map[string]bool{}
	self := false
	for i, p := range c.Peers {
		if !nodeIDPattern.MatchString(p.ID) {
			errs = append(errs, fmt.Errorf("peers[%d].id %q: must be 1-64 letters, digits, '_', '.' or '-'", i, p.ID))
		}
		if _, _, err := net.SplitHostPort(p.Addr); err != nil {
			errs = append(errs, fmt.Errorf("peers[%d].addr %q: must be host:port: %w", i, p.Addr, err))
		}
		if ids[p.ID] {
			errs = append(errs, fmt.Errorf("peers[%d].id %q: listed twice", i, p.ID))
		}
		if addrs[p.Addr] {
			errs = append(errs, fmt.Errorf("peers[%d].addr %q: listed twice", i, p.Addr))
		}
		ids[p.ID], addrs[p.Addr] = true, true
		if p.ID == c.NodeID {
			self = true
		}
	}
	if len(c.Peers) > 0 && !self {
		errs = append(errs, fmt.Errorf("peers: must include this node (%s): every node lists the same peers, itself included", c.NodeID))
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("leader_lease_timeout %s: cannot be longer than heartbeat_timeout %s", c.LeaderLeaseTimeout, c.HeartbeatTimeout))
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("election_timeout %s: cannot be shorter than heartbeat_timeout %s", c.ElectionTimeout, c.HeartbeatTimeout))
	}
	if len(errs) > 0 {
		return fmt.Errorf("cluster config: %w", errors.Join(errs...))
	}
	return nil
}

// checkAdvertise checks the advertised address against the peer list once
// the listener is known.
func (c *Config) checkAdvertise(advertise string) error {
	host, _, err := net.SplitHostPort(advertise)
	if err != nil {
		return fmt.Errorf("cluster config: advertise_addr %q: must be host:port: %w", advertise, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("cluster config: advertise_addr %q: other nodes cannot reach a wildcard address: set advertise_addr", advertise)
	}
	for _, p := range c.Peers {
		if p.ID == c.NodeID && p.Addr != advertise {
			return fmt.Errorf("cluster config: peers list this node (%s) at %s but it advertises %s", c.NodeID, p.Addr, advertise)
		}
	}
	return nil
}
