package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

var errFlaky = errors.New("flaky")

func TestDoRetriesUntilSuccess(t *testing.T) {
	tries := 0
	v, err := Do(context.Background(), Policy{Initial: time.Millisecond, Attempts: 5}, func(context.Context) (int, error) {
		tries++
		if tries < 3 {
			return 0, errFlaky
		}
		return 42, nil
	}, nil)
	if err != nil || v != 42 || tries != 3 {
		t.Fatalf("Do = %d, %v after %d tries; want 42, nil after 3", v, err, tries)
	}
}

func TestDoStopsAfterAttempts(t *testing.T) {
	tries, notified := 0, 0
	_, err := Do(context.Background(), Policy{Initial: time.Millisecond, Attempts: 3}, func(context.Context) (int, error) {
		tries++
		return 0, errFlaky
	}, func(error, time.Duration) { notified++ })
	if !errors.Is(err, errFlaky) || tries != 3 || notified != 2 {
		t.Fatalf("err %v, %d tries, %d notices; want errFlaky, 3, 2", err, tries, notified)
	}
}

func TestDoPermanentErrorEndsAtOnce(t *testing.T) {
	tries := 0
	_, err := Do(context.Background(), Policy{Initial: time.Millisecond, Attempts: 5}, func(context.Context) (int, error) {
		tries++
		return 0, Permanent(errFlaky)
	}, nil)
	if err != errFlaky || tries != 1 {
		t.Fatalf("err %v after %d tries; want errFlaky unwrapped after 1", err, tries)
	}
}

func TestDoEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tries := 0
	done := make(chan error)
	go func() {
		_, err := Do(ctx, Policy{Initial: time.Hour, Attempts: 5}, func(context.Context) (int, error) {
			tries++
			return 0, errFlaky
		}, func(error, time.Duration) { cancel() })
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errFlaky) || tries != 1 {
			t.Fatalf("err %v after %d tries; want the operation's error after 1", err, tries)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Do kept waiting an hour after its context ended")
	}
	if _, err := Do(ctx, Policy{Initial: time.Millisecond}, func(context.Context) (int, error) { return 1, nil }, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do on an ended context: %v; want context.Canceled without running", err)
	}
}

func TestBackoffGrowsWithJitterAndResets(t *testing.T) {
	b := Policy{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond}.New()
	var waits []time.Duration
	closed := make(chan struct{})
	close(closed)
	for range 6 {
		waits = append(waits, b.Next())
		if b.Wait(closed) {
			t.Fatal("Wait on a closed channel returned true")
		}
	}
	within := func(d, nominal time.Duration) bool {
		return d >= nominal*8/10 && d <= nominal*12/10
	}
	for i, nominal := range []time.Duration{100, 200, 400, 400, 400, 400} {
		if !within(waits[i], nominal*time.Millisecond) {
			t.Errorf("wait %d = %s; want %dms ±20%%", i, waits[i], nominal)
		}
	}
	b.Reset()
	if !within(b.Next(), 100*time.Millisecond) {
		t.Errorf("after Reset the next wait is %s; want 100ms ±20%%", b.Next())
	}
	if !(Policy{Initial: time.Microsecond}).New().Wait(nil) {
		t.Error("Wait(nil) returned false")
	}
}
