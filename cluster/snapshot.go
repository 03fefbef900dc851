package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"
)

// Backups and restores of the whole replicated state (`troika snapshot`),
// and the raft configuration as operators change it (`troika operator
// raft`).

// SnapshotMeta describes a raft snapshot taken for a backup.
type SnapshotMeta struct {
	Index, Term uint64
	Size        int64
	Servers     []Server // the raft configuration the snapshot holds
}

// ErrNotCurrent: this node could not show that its replica holds every
// write committed before a backup was asked for.
var ErrNotCurrent = errors.New("this node's replica may be behind the cluster")

// How long a follower waits to show its replica is current before a backup.
const catchUpTimeout = 5 * time.Second

// BackupSnapshot takes a raft snapshot of this node's replica and opens
// it; the caller closes the reader. Unless stale, the replica first holds
// every write committed before the call: the leader applies a barrier; a
// follower waits until it has heard from the leader since the call and
// has applied all the leader said was committed (ErrNotCurrent when it
// cannot within 5 s).
func (n *Node) BackupSnapshot(ctx context.Context, stale bool) (SnapshotMeta, io.ReadCloser, error) {
	if err := n.alive(); err != nil {
		return SnapshotMeta{}, nil, err
	}
	if !stale {
		if err := n.catchUp(ctx); err != nil {
			return SnapshotMeta{}, nil, err
		}
	}
	f := n.raft.Snapshot()
	var meta *raft.SnapshotMeta
	var rc io.ReadCloser
	err := waitFuture(ctx, f)
	switch {
	case err == nil:
		meta, rc, err = f.Open()
	case errors.Is(err, raft.ErrNothingNewToSnapshot):
		// Nothing applied since this node started: its state is its
		// latest snapshot.
		meta, rc, err = n.latestSnapshot()
	}
	if err != nil {
		return SnapshotMeta{}, nil, fmt.Errorf("cluster: snapshot for a backup: %w", err)
	}
	out := SnapshotMeta{Index: meta.Index, Term: meta.Term, Size: meta.Size}
	for _, s := range meta.Configuration.Servers {
		out.Servers = append(out.Servers, Server{ID: string(s.ID), Addr: string(s.Address), Suffrage: s.Suffrage.String()})
	}
	n.log.Info("cluster: snapshot taken for a backup", "index", meta.Index, "term", meta.Term, "size", meta.Size)
	return out, rc, nil
}

func (n *Node) latestSnapshot() (*raft.SnapshotMeta, io.ReadCloser, error) {
	list, err := n.snaps.List()
	if err != nil {
		return nil, nil, err
	}
	if len(list) == 0 {
		return nil, nil, errors.New("this node holds no state yet (nothing applied, no snapshot): wait until it has a leader")
	}
	return n.snaps.Open(list[0].ID)
}

// catchUp waits until this node's replica holds every write committed
// before the call (BackupSnapshot).
func (n *Node) catchUp(ctx context.Context) error {
	if n.IsLeader() {
		bctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
		defer cancel()
		if err := waitFuture(bctx, n.raft.Barrier(enqueueTimeout(bctx))); err != nil {
			return fmt.Errorf("%w: as the leader it could not commit a barrier with a quorum of the voters (%v)", ErrNotCurrent, err)
		}
		return nil
	}
	// The leader tells followers its commit index in the AppendEntries it
	// sends at least every 2 commit timeouts: contact after 3 of them
	// brings an index at least as recent as the call.
	after := time.Now().Add(3 * commitTimeout)
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	var commit uint64
	for {
		if commit == 0 && n.raft.LastContact().After(after) {
			commit = n.raft.CommitIndex()
		}
		if commit != 0 && n.raft.AppliedIndex() >= commit {
			return nil
		}
		select {
		case <-ctx.Done():
			if commit == 0 {
				last := "never"
				if lc := n.raft.LastContact(); !lc.IsZero() {
					last = time.Since(lc).Round(time.Millisecond).String() + " ago"
				}
				return fmt.Errorf("%w: it has not heard from a leader since the request (last contact: %s)", ErrNotCurrent, last)
			}
			return fmt.Errorf("%w: it applied up to raft index %d of %d committed within %s", ErrNotCurrent, n.raft.AppliedIndex(), commit, catchUpTimeout)
		case <-poll.C:
		}
	}
}

// RestoreBackup replaces the whole replicated state with a snapshot of
// size bytes read from r (the body of a checked backup, which must
// decode: raft stops a leader whose state machine fails to restore),
// through raft's restore of a user snapshot: this node becomes the leader
// (its leader hands leadership over), takes the snapshot's state and
// sends it to the other voters, and the restore is done once a majority
// has installed it and committed an entry after it. index is the raft
// index the backup was taken at (the restored state gets a later one).
// progress is told each step. When ctx ends first, the restore goes on;
// finished is called once raft is done with r (at once when the restore
// did not start), whatever RestoreBackup returned.
func (n *Node) RestoreBackup(ctx context.Context, r io.Reader, size int64, index uint64, progress func(string), finished func()) (uint64, error) {
	started := false
	defer func() {
		if !started {
			finished()
		}
	}()
	if err := n.alive(); err != nil {
		return 0, err
	}
	if err := n.leadForRestore(ctx, progress); err != nil {
		return 0, err
	}
	start := time.Now()
	progress(fmt.Sprintf("restoring on %s (the leader): writing the state to raft's snapshot store, then sending it to the other voters", n.cfg.NodeID))
	done := make(chan error, 1)
	started = true
	go func() {
		defer finished()
		meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: index, Term: n.raft.CurrentTerm(), Size: size}
		err := n.raft.Restore(meta, r, maxApplyEnqueue)
		if err != nil && ctx.Err() != nil {
			n.log.Error("cluster: a restore nobody waits for any more failed", "error", err)
		}
		done <- err
	}()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return 0, fmt.Errorf("cluster: restore: %w", err)
			}
			at := n.raft.AppliedIndex()
			n.log.Warn("cluster: the replicated state was replaced by a restored backup", "index", at, "size", size,
				"took", time.Since(start).Round(time.Millisecond))
			return at, nil
		case <-tick.C:
			if n.raft.State() != raft.Leader {
				progress(fmt.Sprintf("%s lost the leadership while restoring (%s): waiting for the restore's outcome", n.cfg.NodeID, time.Since(start).Round(time.Second)))
				continue
			}
			progress(fmt.Sprintf("waiting for a majority of the voters to install the restored state (%s)", time.Since(start).Round(time.Second)))
		case <-ctx.Done():
			return 0, fmt.Errorf("cluster: restore: stopped waiting after %s (%w): the restore goes on on %s; "+
				"check `troika cluster status` on each node (applied_index, state counts) and their logs", time.Since(start).Round(time.Second), ctx.Err(), n.cfg.NodeID)
		}
	}
}

// leadForRestore makes this node the leader: raft restores user
// snapshots on the leader only.
func (n *Node) leadForRestore(ctx context.Context, progress func(string)) error {
	if n.IsLeader() {
		return nil
	}
	voter := false
	for _, s := range n.Status().Servers {
		voter = voter || (s.ID == n.cfg.NodeID && s.Suffrage == raft.Voter.String())
	}
	if !voter {
		return fmt.Errorf("cluster: restore: %s is not a voter of the cluster: send the restore to a voter's admin API", n.cfg.NodeID)
	}
	leader, _ := n.Leader()
	progress(fmt.Sprintf("asking the leader %s to hand leadership to %s (raft restores on the leader)", leader, n.cfg.NodeID))
	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := n.do(tctx, "hand leadership to "+n.cfg.NodeID, opTransferLeadership, idAddrBody(n.cfg.NodeID, n.advertise)); err != nil {
		return fmt.Errorf("%w (a leader running an older troika cannot hand leadership over: send the restore to the leader's admin API)", err)
	}
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for !n.IsLeader() {
		select {
		case <-tctx.Done():
			return fmt.Errorf("cluster: restore: %s did not become the leader (leader now: %q): try again, or send the restore to the leader's admin API", n.cfg.NodeID, leader)
		case <-poll.C:
		}
	}
	progress(n.cfg.NodeID + " leads now")
	return nil
}

// transferTo hands leadership to the voter id at addr (a forwarded
// opTransferLeadership; this node leads).
func (n *Node) transferTo(ctx context.Context, id, addr string) error {
	if id == n.cfg.NodeID {
		return nil
	}
	if err := waitFuture(ctx, n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr))); err != nil {
		return fmt.Errorf("hand leadership to %s: %w", id, err)
	}
	n.log.Info("cluster: leadership handed over on request", "to", id)
	return nil
}

// Servers returns the members of the latest raft configuration this node
// knows, with the leader marked.
func (n *Node) Servers() ([]Server, error) {
	if err := n.alive(); err != nil {
		return nil, err
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("cluster: raft configuration: %w", err)
	}
	_, leader := n.raft.LeaderWithID()
	out := []Server{}
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Addr: string(s.Address), Suffrage: s.Suffrage.String(), Leader: s.ID == leader})
	}
	return out, nil
}

// Probe checks that a node of this cluster answers on the cluster port at
// addr: the port's handshake (the cluster key, and TLS as this node dials
// it) succeeds. It opens a forwarding connection and closes it at once.
func (n *Node) Probe(addr string, timeout time.Duration) error {
	c, err := n.port.dial(addr, connForward, timeout)
	if err != nil {
		return err
	}
	return c.Close()
}

// Member reports whether this node is in the latest raft configuration it
// knows (not while it waits to be added, nor once removed).
func (n *Node) Member() bool { return n.alive() == nil && n.isMember() }
