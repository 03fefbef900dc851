package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/troika-sip/troika/fsm"
)

// Start opens (or creates) this node's raft state in cfg.DataDir, starts
// listening on the cluster port and joins the cluster: by bootstrapping it
// from cfg.Peers (or alone with cfg.Bootstrap) when there is no state yet,
// or by asking cfg.Join members to add it. state receives every committed
// command; it must be fresh (raft replays the log into it).
//
// ctx bounds the work Start leaves running in the background on its
// behalf (join retries); cancelling it later does not stop the node:
// Shutdown does.
func Start(ctx context.Context, cfg Config, state *fsm.State) (n *Node, err error) {
	if err := checkStart(ctx, &cfg, state); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("node", cfg.NodeID)
	var undo undoStack // what is open so far, closed if a later step fails
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	ln, advertise, err := openPort(&cfg, &undo)
	if err != nil {
		return nil, err
	}
	store, snaps, err := openStores(&cfg, log, &undo)
	if err != nil {
		return nil, err
	}
	n = newNode(cfg, log, state, store, snaps, advertise, &undo)
	n.newTransport(ln, &undo)
	existing, err := n.startRaft(&undo)
	if err != nil {
		return nil, err
	}
	join, err := n.bootstrapOrJoin(existing)
	if err != nil {
		return nil, err
	}
	// From here on nothing fails.
	n.startBackground(ctx, join)
	return n, nil
}

// undoStack holds what Start has opened, to close in reverse order when
// a later step fails.
type undoStack []func()

func (u *undoStack) push(f func()) { *u = append(*u, f) }

func (u undoStack) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// checkStart fills in cfg's defaults and refuses a configuration or a
// call Start cannot work with.
func checkStart(ctx context.Context, cfg *Config, state *fsm.State) error {
	if state == nil {
		return errors.New("cluster: start: nil fsm state")
	}
	cfg.setDefaults()
	if cfg.TLS != nil {
		t := *cfg.TLS // check fills in the leaf: the caller's stays as it was
		cfg.TLS = &t
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cluster: start: %w", err)
	}
	return nil
}

// openPort listens on the cluster port (or takes cfg.Listener) and works
// out the address the other nodes reach this one at.
func openPort(cfg *Config, undo *undoStack) (net.Listener, string, error) {
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.BindAddr); err != nil {
			return nil, "", fmt.Errorf("cluster: listen on %s: %w", cfg.BindAddr, err)
		}
	}
	undo.push(func() { _ = ln.Close() })
	advertise := cfg.AdvertiseAddr
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	if err := cfg.checkAdvertise(advertise); err != nil {
		return nil, "", err
	}
	return ln, advertise, nil
}

// openStores opens raft's log and stable store (raft.db, one BoltDB file
// that only one process may hold) and its snapshot store in cfg.DataDir.
func openStores(cfg *Config, log *slog.Logger, undo *undoStack) (*raftboltdb.BoltStore, *raft.FileSnapshotStore, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("cluster: data dir: %w", err)
	}
	dbPath := filepath.Join(cfg.DataDir, "raft.db")
	store, err := raftboltdb.New(raftboltdb.Options{
		Path:        dbPath,
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true},
	})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, nil, fmt.Errorf("cluster: open %s: locked by another process: is another node running on this data dir?", dbPath)
		}
		return nil, nil, fmt.Errorf("cluster: open %s: %w", dbPath, err)
	}
	undo.push(func() { _ = store.Close() })
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotsRetained, newHCLog(log, "raft-snapshot"))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: snapshot store in %s: %w", cfg.DataDir, err)
	}
	return store, snaps, nil
}

// newNode builds the Node around its stores; nothing runs yet.
func newNode(cfg Config, log *slog.Logger, state *fsm.State, store *raftboltdb.BoltStore, snaps *raft.FileSnapshotStore, advertise string, undo *undoStack) *Node {
	ctx, cancel := context.WithCancel(context.Background())
	undo.push(cancel)
	n := &Node{
		cfg:         cfg,
		log:         log,
		state:       state,
		fsm:         &raftFSM{state: state, log: log},
		store:       store,
		snaps:       snaps,
		advertise:   advertise,
		ctx:         ctx,
		cancel:      cancel,
		notifyCh:    make(chan bool, 16),
		raftDone:    make(chan struct{}),
		obsCh:       make(chan raft.Observation, 64),
		leaderWatch: make(chan struct{}),
	}
	n.metrics = newMetrics(cfg.Metrics, n)
	n.fsm.metrics = n.metrics
	n.port = newPortAuth(cfg.Key, cfg.TLS, n.nodeAt, log)
	n.fwd = newFwdClient(n.port.dial, log)
	return n
}

// nodeAt is the node whose cluster port addr is, as the raft
// configuration (or the static peers) say; "" when neither knows it.
// A TLS dialer checks that the certificate it is shown names that node.
func (n *Node) nodeAt(addr string) string {
	if r := n.raftRef.Load(); r != nil {
		if f := r.GetConfiguration(); f.Error() == nil {
			for _, s := range f.Configuration().Servers {
				if string(s.Address) == addr {
					return string(s.ID)
				}
			}
		}
	}
	for _, p := range n.cfg.Peers {
		if p.Addr == addr {
			return p.ID
		}
	}
	return ""
}

// newTransport puts the mux on the cluster port and raft's network
// transport on the mux.
func (n *Node) newTransport(ln net.Listener, undo *undoStack) {
	n.mux = newMux(ln, n.port, n.advertise, n.log)
	n.mux.onForward = n.serveForward
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:          n.mux.raft,
		MaxPool:         transportMaxPool,
		Timeout:         transportTimeout,
		MaxRPCsInFlight: transportInFlight,
		Logger:          newHCLog(n.log, "raft-net"),
	})
	undo.push(func() { _ = n.trans.Close() })
}

// startRaft starts raft on the node's stores and transport, and watches
// its leader changes. existing reports whether the data dir held raft
// state already.
func (n *Node) startRaft(undo *undoStack) (existing bool, err error) {
	rc := n.raftConfig()
	if err := raft.ValidateConfig(rc); err != nil {
		return false, fmt.Errorf("cluster: raft config: %w", err)
	}
	existing, err = raft.HasExistingState(n.store, n.store, n.snaps)
	if err != nil {
		return false, fmt.Errorf("cluster: read raft state in %s: %w", n.cfg.DataDir, err)
	}
	// Replication reads recent entries back from the log store: serve them
	// from memory.
	lingering := &lingerStore{LogStore: n.store, linger: n.cfg.CommitLinger, leads: func() bool {
		r := n.raftRef.Load()
		return r != nil && r.State() == raft.Leader
	}}
	logs, err := raft.NewLogCache(logCacheSize, lingering)
	if err != nil {
		return false, fmt.Errorf("cluster: log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, n.store, n.snaps, n.trans)
	if err != nil {
		return false, fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raft = r
	n.raftRef.Store(r)
	undo.push(func() { _ = r.Shutdown().Error() })
	n.observer = raft.NewObserver(n.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	r.RegisterObserver(n.observer)
	return existing, nil
}

// bootstrapOrJoin decides how a node without raft state gets into a
// cluster: it bootstraps one from cfg.Peers (or alone with cfg.Bootstrap),
// or reports that it must ask the cfg.Join members (join), or waits to be
// added. A node with state resumes.
func (n *Node) bootstrapOrJoin(existing bool) (join bool, err error) {
	cfg := &n.cfg
	switch {
	case existing:
		n.log.Info("cluster: found existing raft state; resuming", "data_dir", cfg.DataDir, "addr", n.advertise)
	case len(cfg.Peers) > 0 || cfg.Bootstrap:
		servers := []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.NodeID), Address: raft.ServerAddress(n.advertise)}}
		if len(cfg.Peers) > 0 {
			servers = servers[:0]
			for _, p := range cfg.Peers {
				servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
			}
		}
		if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			return false, fmt.Errorf("cluster: bootstrap with %d voter(s): %w", len(servers), err)
		}
		n.log.Info("cluster: bootstrapped a new cluster", "voters", len(servers), "addr", n.advertise)
	case len(cfg.Join) > 0:
		return true, nil
	default:
		n.log.Warn("cluster: no raft state, no peers and nothing to join: waiting for a member to add this node: "+
			"run `troika operator raft add-voter "+cfg.NodeID+" "+n.advertise+"` against any member", "addr", n.advertise)
	}
	return false, nil
}

// startBackground opens the cluster port to connections and starts the
// node's loops: leadership, leader observation and, when join, asking the
// Join members to add this node until ctx ends.
func (n *Node) startBackground(ctx context.Context, join bool) {
	n.mux.serve()
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.leadershipLoop() }()
	go func() { defer n.wg.Done(); n.observeLoop() }()
	if !join {
		return
	}
	jctx, jcancel := context.WithCancel(n.ctx)
	stop := context.AfterFunc(ctx, jcancel)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer stop()
		defer jcancel()
		n.joinLoop(jctx)
	}()
}

func (n *Node) raftConfig() *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(n.cfg.NodeID)
	c.Logger = newHCLog(n.log, "raft")
	c.NotifyCh = n.notifyCh
	c.BatchApplyCh = true
	c.MaxAppendEntries = 256
	c.SnapshotThreshold = n.cfg.SnapshotThreshold
	c.SnapshotInterval = n.cfg.SnapshotInterval
	c.TrailingLogs = n.cfg.TrailingLogs
	c.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	c.ElectionTimeout = n.cfg.ElectionTimeout
	c.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	// Followers learn that an entry committed from the next AppendEntries;
	// on an idle leader that comes after CommitTimeout (default 50 ms).
	// Shorter, a follower applies an address assignment (and answers a
	// forwarded write) sooner, for a few dozen empty RPCs per second.
	c.CommitTimeout = commitTimeout
	// A removed node stays up as a non-member, so it can be added back
	// without a restart.
	c.ShutdownOnRemove = false
	return c
}
