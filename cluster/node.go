package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/retry"
)

const (
	snapshotsRetained = 2
	transportMaxPool  = 3
	transportTimeout  = 10 * time.Second
	// transportInFlight 1 turns raft's pipelined replication off (every
	// AppendEntries waits for its answer). With pipelining (raft 1.8's
	// default, 2 in flight on unbuffered channels) a leader that steps
	// down, or a follower answering Success=false, can leave the
	// replication goroutine blocked handing one more request to a decoder
	// that has stopped: that follower gets heartbeats but no entries again,
	// and raft's Shutdown waits for the goroutine forever. Seen here: a
	// node stopped after losing leadership under load hung in Shutdown for
	// over 3 minutes (goroutine dump: pipelineSend -> netPipeline.
	// AppendEntries 6 minutes in select); the same deadlock is analysed in
	// grafana/pyroscope#5518. Group commit (linger.go) batches the
	// entries, so little is lost without the pipeline.
	transportInFlight = 1
	logCacheSize      = 1024
	commitTimeout     = 20 * time.Millisecond
	// maxApplyEnqueue bounds how long raft.Apply waits to enqueue a
	// command when the caller's context has no sooner deadline.
	maxApplyEnqueue = 10 * time.Second
	// leaderBarrierRetry: how long a new leader waits before trying its
	// barrier again after a failure.
	leaderBarrierRetry = 100 * time.Millisecond
)

// ErrShutdown is returned by a Node's methods after Shutdown.
var ErrShutdown = errors.New("cluster node is shut down")

// errNoLeader: no leader is known right now.
var errNoLeader = errors.New("no leader known")

// Node is this process's member of the cluster.
type Node struct {
	cfg       Config
	log       *slog.Logger
	state     *fsm.State
	fsm       *raftFSM
	raft      *raft.Raft
	trans     *raft.NetworkTransport
	store     *raftboltdb.BoltStore
	snaps     *raft.FileSnapshotStore
	mux       *mux
	fwd       *fwdClient
	port      *portAuth // the cluster port's security, both ways
	metrics   *metrics
	advertise string
	// raftRef is raft for the port's dialers, which may run before
	// startRaft has set raft.
	raftRef atomic.Pointer[raft.Raft]

	ctx      context.Context // ends at Shutdown
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	notifyCh chan bool
	raftDone chan struct{} // closed once raft has shut down
	obsCh    chan raft.Observation
	observer *raft.Observer

	watchMu     sync.Mutex
	leaderWatch chan struct{} // closed and replaced at each leader change

	contact contactTracker // leadership changes, for LeaderContact (lease.go)
	reach   reachTracker   // followers' heartbeat failures while leading (reach.go)

	shutdownOnce sync.Once
	shutdownErr  error
}

// Shutdown stops the node: no leadership transfer (call
// TransferLeadership first for a planned stop). Safe to call twice.
func (n *Node) Shutdown() error {
	n.shutdownOnce.Do(func() {
		n.log.Info("cluster: shutting down")
		n.cancel() // join, OnLeader, forwarded requests in progress
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
		close(n.raftDone)
		n.raft.DeregisterObserver(n.observer)
		n.trans.CloseStreams()
		if err := n.mux.close(); err != nil {
			errs = append(errs, fmt.Errorf("close cluster port: %w", err))
		}
		n.fwd.close()
		n.wg.Wait()
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft.db: %w", err))
		}
		if len(errs) > 0 {
			n.shutdownErr = fmt.Errorf("cluster: shutdown: %w", errors.Join(errs...))
		}
	})
	return n.shutdownErr
}

func (n *Node) alive() error {
	if n.ctx.Err() != nil {
		return ErrShutdown
	}
	return nil
}

// PortStats returns the cluster port's counters: connections accepted
// (TLS, plaintext) and refused by reason.
func (n *Node) PortStats() PortStats { return n.port.stats() }

// ID returns this node's raft id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Addr returns the address other nodes reach this node at.
func (n *Node) Addr() string { return n.advertise }

// IsLeader reports whether this node is the raft leader right now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader as this node knows it; empty strings
// when none is known.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// WaitLeader waits until some leader is known.
func (n *Node) WaitLeader(ctx context.Context) error {
	start := time.Now()
	for {
		watch := n.leaderChanged()
		if _, id := n.raft.LeaderWithID(); id != "" {
			return nil
		}
		if err := n.alive(); err != nil {
			return err
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("cluster: no leader after %s: is a majority of the voters up and reachable? %w",
				time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-n.ctx.Done():
		case <-watch:
		case <-t.C:
		}
		t.Stop()
	}
}

// leaderChanged returns a channel closed at the next leader or raft state
// change this node observes.
func (n *Node) leaderChanged() <-chan struct{} {
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	return n.leaderWatch
}

func (n *Node) observeLoop() {
	for {
		select {
		case o := <-n.obsCh:
			if lo, ok := o.Data.(raft.LeaderObservation); ok {
				n.log.Info("cluster: leader changed", "leader_id", string(lo.LeaderID), "leader_addr", string(lo.LeaderAddr))
				if lo.LeaderAddr != "" {
					n.fwd.closeExcept(string(lo.LeaderAddr))
				}
			}
			n.watchMu.Lock()
			close(n.leaderWatch)
			n.leaderWatch = make(chan struct{})
			n.watchMu.Unlock()
		case <-n.ctx.Done():
			return
		}
	}
}

// leadershipLoop drains NotifyCh (raft blocks on it) until raft is down,
// and runs the leader routine for each term this node leads.
func (n *Node) leadershipLoop() {
	var cancel context.CancelFunc
	stop := func() {
		if cancel != nil {
			cancel()
			cancel = nil
		}
	}
	defer stop()
	for {
		select {
		case isLeader := <-n.notifyCh:
			stop()
			n.contact.leadership(isLeader)
			n.reach.reset()
			if !isLeader {
				n.log.Info("cluster: lost leadership")
				continue
			}
			if n.ctx.Err() != nil {
				continue
			}
			cancel = n.startLeader()
		case <-n.raftDone:
			return
		}
	}
}

// startLeader starts the leader routine for one term; the returned func
// ends it.
func (n *Node) startLeader() context.CancelFunc {
	ctx, cancel := context.WithCancel(n.ctx)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.runLeader(ctx)
	}()
	return cancel
}

// runLeader waits until this node's state holds everything the previous
// leaders committed (a raft barrier, tried again every
// leaderBarrierRetry while it fails), then runs OnLeader.
func (n *Node) runLeader(ctx context.Context) {
	start := time.Now()
	_, err := retry.Do(ctx, retry.Policy{Initial: leaderBarrierRetry}, func(ctx context.Context) (struct{}, error) {
		err := waitFuture(ctx, n.raft.Barrier(0))
		if err != nil && (ctx.Err() != nil || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown)) {
			return struct{}{}, retry.Permanent(err)
		}
		return struct{}{}, err
	}, func(err error, _ time.Duration) {
		n.log.Warn("cluster: leader barrier failed; retrying", "error", err)
	})
	if err != nil {
		return
	}
	n.log.Info("cluster: this node leads; state is up to date", "term", n.raft.CurrentTerm(),
		"applied_index", n.raft.AppliedIndex(), "barrier", time.Since(start).Round(time.Millisecond))
	if n.cfg.OnLeader != nil {
		n.cfg.OnLeader(ctx)
	}
}

// Snapshot takes a raft snapshot now (e.g. before an upgrade). A snapshot
// that is already current is not an error.
func (n *Node) Snapshot(ctx context.Context) error {
	if err := n.alive(); err != nil {
		return err
	}
	f := n.raft.Snapshot()
	if err := waitFuture(ctx, f); err != nil {
		if errors.Is(err, raft.ErrNothingNewToSnapshot) {
			n.log.Info("cluster: snapshot requested; the last one is current")
			return nil
		}
		return fmt.Errorf("cluster: snapshot: %w", err)
	}
	meta, _, err := f.Open()
	if err == nil {
		n.log.Info("cluster: snapshot taken", "index", meta.Index, "term", meta.Term, "size", meta.Size)
	}
	return nil
}

// TransferLeadership hands leadership to another voter (for a planned stop)
// and waits until someone else leads. A no-op if this node does not lead
// or is the only voter.
func (n *Node) TransferLeadership(ctx context.Context) error {
	if err := n.alive(); err != nil {
		return err
	}
	if !n.IsLeader() {
		return nil
	}
	cf := n.raft.GetConfiguration()
	if err := waitFuture(ctx, cf); err != nil {
		return fmt.Errorf("cluster: transfer leadership: %w", err)
	}
	others := 0
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.NodeID {
			others++
		}
	}
	if others == 0 {
		return nil
	}
	if err := waitFuture(ctx, n.raft.LeadershipTransfer()); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return nil
		}
		return fmt.Errorf("cluster: transfer leadership: %w", err)
	}
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for {
		watch := n.leaderChanged()
		if _, id := n.raft.LeaderWithID(); id != "" && string(id) != n.cfg.NodeID {
			n.log.Info("cluster: leadership transferred", "to", string(id))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: transfer leadership: no new leader yet: %w", ctx.Err())
		case <-watch:
		case <-poll.C:
		}
	}
}

// waitFuture waits for f, or for ctx to end.
func waitFuture(ctx context.Context, f raft.Future) error {
	if ctx.Done() == nil {
		return f.Error()
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
