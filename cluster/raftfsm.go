package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troika-sip/troika/fsm"
)

// errSkipped is the response to a command whose type this node does not
// know but which is marked ignorable: it was skipped here.
var errSkipped = errors.New("command type unknown to this node and marked ignorable: skipped")

// raftFSM adapts fsm.State to raft. The response of every command entry
// is an fsm.Result, or errSkipped.
type raftFSM struct {
	state    *fsm.State
	log      *slog.Logger
	restores atomic.Int64 // snapshots restored (tests)
	metrics  *metrics     // nil in tests that make a raftFSM alone

	mu      sync.Mutex
	applied uint64        // last log index applied (0 until the first after a restore)
	advance chan struct{} // closed when applied moves; nil while nobody waits
}

// setApplied records the last applied index and wakes waiters.
func (f *raftFSM) setApplied(index uint64) {
	f.mu.Lock()
	f.applied = index
	if f.advance != nil {
		close(f.advance)
		f.advance = nil
	}
	f.mu.Unlock()
}

// waitApplied waits until the entry at index has been applied here, or ctx
// ends.
func (f *raftFSM) waitApplied(ctx context.Context, index uint64) {
	for {
		f.mu.Lock()
		if f.applied >= index {
			f.mu.Unlock()
			return
		}
		if f.advance == nil {
			f.advance = make(chan struct{})
		}
		ch := f.advance
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

var _ raft.BatchingFSM = (*raftFSM)(nil)

func (f *raftFSM) Apply(l *raft.Log) any {
	res := f.apply(l)
	f.setApplied(l.Index)
	return res
}

func (f *raftFSM) apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	start := time.Now()
	res, err := f.state.Apply(l.Data)
	if f.metrics != nil {
		f.metrics.fsmApply.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		return f.undecodable(l, err)
	}
	return res
}

func (f *raftFSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	for i, l := range logs {
		out[i] = f.apply(l)
	}
	if len(logs) > 0 {
		f.setApplied(logs[len(logs)-1].Index)
	}
	return out
}

// undecodable handles a committed entry this node cannot apply. Skipping it
// would make this replica diverge from the others, so unless its type is
// marked ignorable the node stops, loudly.
func (f *raftFSM) undecodable(l *raft.Log, err error) any {
	var typ fsm.Type
	if len(l.Data) > 0 {
		typ = fsm.Type(l.Data[0])
	}
	if errors.Is(err, fsm.ErrUnknownType) {
		if typ&fsm.IgnorableFlag != 0 {
			f.log.Warn("skipping a committed command of a type this version does not know (marked ignorable); upgrade this node",
				"index", l.Index, "term", l.Term, "type", fmt.Sprintf("%#x", byte(typ)))
			return errSkipped
		}
		msg := fmt.Sprintf("committed log entry %d (term %d) has command type %#x, unknown to this version: "+
			"this node runs an older version than the leader that wrote it and must be upgraded before it can continue; "+
			"stopping rather than skipping it, which would make this replica diverge", l.Index, l.Term, byte(typ))
		f.log.Error(msg, "error", err)
		panic("troika cluster: " + msg + ": " + err.Error())
	}
	msg := fmt.Sprintf("committed log entry %d (term %d, command type %#x) cannot be decoded by this version: "+
		"if the leader runs a newer version, upgrade this node; otherwise the log is corrupt. Stopping rather than diverging",
		l.Index, l.Term, byte(typ))
	f.log.Error(msg, "error", err)
	panic("troika cluster: " + msg + ": " + err.Error())
}

func (f *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: f.state.Snapshot(), metrics: f.metrics}, nil
}

func (f *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.state.Restore(rc); err != nil {
		return fmt.Errorf("restore fsm from raft snapshot: %w", err)
	}
	f.restores.Add(1)
	if f.metrics != nil {
		f.metrics.restores.Inc()
	}
	return nil
}

type fsmSnapshot struct {
	snap    *fsm.Snapshot
	metrics *metrics // nil: not measured
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	size, err := s.snap.WriteTo(sink)
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot %s: %w", sink.ID(), err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("persist snapshot %s: close: %w", sink.ID(), err)
	}
	if s.metrics != nil {
		s.metrics.snapshotTime.Observe(time.Since(start).Seconds())
		s.metrics.snapshotBytes.Set(float64(size))
	}
	return nil
}

func (s *fsmSnapshot) Release() {}
