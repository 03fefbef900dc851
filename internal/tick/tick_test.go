package tick

import (
	"sync/atomic"
	"testing"
	"time"
)

// f runs on each tick and no more once done is closed; Every returns then.
func TestEvery(t *testing.T) {
	done := make(chan struct{})
	var calls atomic.Int64
	third := make(chan struct{})
	returned := make(chan struct{})
	go func() {
		Every(done, time.Millisecond, func() {
			if calls.Add(1) == 3 {
				close(third)
			}
		})
		close(returned)
	}()
	select {
	case <-third:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d calls in 10 s at a 1 ms period", calls.Load())
	}
	close(done)
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after done was closed")
	}
}
