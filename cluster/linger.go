package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Group commit. The leader writes the entries proposed while its previous
// write was on disk as one batch (raft's BatchApplyCh), each batch one
// BoltDB transaction with its fdatasync. Those cost the same for one
// entry as for a hundred, and with a fast disk a batch is written before
// the next proposal arrives: at a few thousand proposals a second nearly
// every entry got a transaction of its own, and the writes took a fifth
// of the node's CPU. lingerStore makes the leader start its next write no
// sooner than linger after the start of the previous one, so that what
// arrives meanwhile goes in the same batch: a write waits at most linger
// longer, and at load the transactions per second stay under 1/linger
// whatever the rate. Nothing is acknowledged before it is on disk, as
// before. Followers store what the leader sends as it comes: their
// batches are the leader's.
type lingerStore struct {
	raft.LogStore
	linger time.Duration
	leads  func() bool

	mu   sync.Mutex
	last time.Time // start of the previous write
}

// lingerSkipBatch: a batch this big is written at once (raft's batches are
// at most MaxAppendEntries, 256).
const lingerSkipBatch = 128

func (s *lingerStore) StoreLogs(logs []*raft.Log) error {
	s.mu.Lock()
	if s.linger > 0 && len(logs) < lingerSkipBatch && s.leads() {
		if wait := s.linger - time.Since(s.last); wait > 0 {
			time.Sleep(wait)
		}
	}
	s.last = time.Now()
	s.mu.Unlock()
	return s.LogStore.StoreLogs(logs)
}

func (s *lingerStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }
