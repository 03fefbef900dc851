package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// recordingStore is a LogStore that records the batches written.
type recordingStore struct {
	raft.LogStore
	batches [][]uint64
	err     error
}

func (s *recordingStore) StoreLogs(logs []*raft.Log) error {
	var b []uint64
	for _, l := range logs {
		b = append(b, l.Index)
	}
	s.batches = append(s.batches, b)
	return s.err
}

// lingerStore passes every batch through as it is, with its error; it
// never waits on a follower, nor before a batch that is already big.
func TestLingerStore(t *testing.T) {
	rec := &recordingStore{}
	leading := false
	s := &lingerStore{LogStore: rec, linger: time.Hour, leads: func() bool { return leading }}
	logs := func(from, n int) []*raft.Log {
		var out []*raft.Log
		for i := range n {
			out = append(out, &raft.Log{Index: uint64(from + i)})
		}
		return out
	}
	// A follower writes at once, however recent its last write (a wait
	// here would take the hour).
	for i := range 3 {
		if err := s.StoreLogs(logs(1+2*i, 2)); err != nil {
			t.Fatal(err)
		}
	}
	leading = true
	if err := s.StoreLogs(logs(7, lingerSkipBatch)); err != nil { // big: at once
		t.Fatal(err)
	}
	leading = false
	rec.err = errors.New("disk full")
	if err := s.StoreLog(&raft.Log{Index: 200}); !errors.Is(err, rec.err) {
		t.Fatalf("error %v, want the store's", err)
	}
	if len(rec.batches) != 5 || rec.batches[4][0] != 200 || len(rec.batches[3]) != lingerSkipBatch || rec.batches[0][1] != 2 {
		t.Fatalf("batches %v", rec.batches)
	}
	// A small batch on the leader waits for the linger since the last
	// write's start, then is written whole.
	s.linger, leading, rec.err = time.Millisecond, true, nil
	if err := s.StoreLogs(logs(300, 3)); err != nil || len(rec.batches) != 6 || len(rec.batches[5]) != 3 {
		t.Fatalf("err %v, batches %v", err, rec.batches)
	}
}
