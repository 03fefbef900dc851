package testkit

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troika-sip/troika/fsm"
)

func TestStoreAppliesAndFails(t *testing.T) {
	s := NewStore(nil)
	res, err := s.Propose(context.Background(), &fsm.PutTariff{Tariff: fsm.Tariff{ID: "t", Currency: "USD", Rates: []fsm.Rate{{PerMinute: 1, FirstInterval: 60, NextInterval: 60}}}})
	if err != nil || res.Err != nil {
		t.Fatalf("Propose: %v %v", err, res.Err)
	}
	if _, ok := s.State.Tariff("t"); !ok {
		t.Fatal("the tariff was not applied")
	}
	s.Fail.Store(true)
	if _, err := s.Propose(context.Background(), &fsm.PutTariff{Tariff: fsm.Tariff{ID: "u", Currency: "USD", Rates: []fsm.Rate{{PerMinute: 1, FirstInterval: 60, NextInterval: 60}}}}); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Propose while failing: %v", err)
	}
	if _, ok := s.State.Tariff("u"); ok || s.Writes.Load() != 2 {
		t.Fatalf("failing write applied, or %d writes counted", s.Writes.Load())
	}
}

func TestEventuallyAndHolds(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 5 {
			n.Add(1)
		}
	}()
	if !Eventually(5*time.Second, func() bool { return n.Load() == 5 }) {
		t.Fatal("Eventually missed a condition that came true")
	}
	if Eventually(30*time.Millisecond, func() bool { return false }) {
		t.Fatal("Eventually reported a condition that never held")
	}
	Holds(t, 30*time.Millisecond, "n stays 5", func() bool { return n.Load() == 5 })
}

func TestBinaryIsBuiltOnceAndShared(t *testing.T) {
	if testing.Short() {
		t.Skip("builds troika")
	}
	os.Unsetenv(BinaryEnv)
	a, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	fa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	fb, _ := os.Stat(b)
	if a != b || !fa.ModTime().Equal(fb.ModTime()) {
		t.Fatalf("second call rebuilt: %s (%s) vs %s (%s)", a, fa.ModTime(), b, fb.ModTime())
	}
}

// Advance moves Now and closes the channel Jumps gave before it; a new
// one waits for the next jump.
func TestClockJumps(t *testing.T) {
	var c Clock
	before := c.Now()
	jumps := c.Jumps()
	select {
	case <-jumps:
		t.Fatal("jumped before Advance")
	default:
	}
	c.Advance(time.Hour)
	select {
	case <-jumps:
	default:
		t.Fatal("Advance did not close the channel")
	}
	if d := c.Now().Sub(before); d < time.Hour {
		t.Fatalf("Now moved %s, want an hour", d)
	}
	select {
	case <-c.Jumps():
		t.Fatal("the next jump's channel is closed already")
	default:
	}
}
