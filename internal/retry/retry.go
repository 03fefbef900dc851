// Package retry is troika's one way of trying something again: exponential
// waits with jitter (github.com/cenkalti/backoff/v5), bounded in length and
// in attempts, and cut short when the caller stops.
//
// Two shapes cover every retrying loop of the switch:
//
//   - Do runs an operation until it succeeds, the attempts are used up, or
//     the context ends (a replicated write of a call);
//   - a Backoff paces a loop that retries for as long as it runs (a socket
//     read after an error, a reconnect): Wait after a failure, Reset after a
//     success.
package retry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Policy says how to wait between attempts.
type Policy struct {
	// Initial is the first wait (before jitter).
	Initial time.Duration
	// Max caps a wait (before jitter); Initial when zero or smaller.
	Max time.Duration
	// Attempts bounds the tries of Do (the first included); 0 means no
	// bound. Backoff ignores it: its loop decides when to stop.
	Attempts int
}

// jitter spreads each wait over ±20% of its nominal length, so that nodes
// or connections that failed together do not retry in lockstep.
const jitter = 0.2

func (p Policy) exponential() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = p.Initial
	b.MaxInterval = max(p.Max, p.Initial)
	b.Multiplier = 2
	b.RandomizationFactor = jitter
	b.Reset()
	return b
}

// Backoff paces a loop that retries until it is told to stop. It is not
// safe for concurrent use: one loop owns it.
type Backoff struct {
	b    *backoff.ExponentialBackOff
	next time.Duration
}

// New returns a Backoff starting at p.Initial.
func (p Policy) New() *Backoff {
	b := &Backoff{b: p.exponential()}
	b.next = b.b.NextBackOff()
	return b
}

// Next is the wait the next call to Wait will make (for logs).
func (b *Backoff) Next() time.Duration { return b.next }

// Wait sleeps the next wait, which then grows. It returns false, at once,
// when done is closed (done may be nil: never).
func (b *Backoff) Wait(done <-chan struct{}) bool {
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = b.b.NextBackOff()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// Reset starts the waits again from Initial, after a success.
func (b *Backoff) Reset() {
	b.b.Reset()
	b.next = b.b.NextBackOff()
}

// Do calls op until it returns no error, at most p.Attempts times, waiting
// between attempts. It stops early when ctx ends (returning the last
// error of op, or ctx's when op never ran) or when op's error is marked
// Permanent. notify, when not nil, hears of each failure that will be
// retried.
func Do[T any](ctx context.Context, p Policy, op func(context.Context) (T, error), notify func(err error, wait time.Duration)) (T, error) {
	var zero T
	b := p.New()
	var last error
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			if last == nil {
				last = err
			}
			return zero, last
		}
		v, err := op(ctx)
		if err == nil {
			return v, nil
		}
		last = err
		if perm := (*backoff.PermanentError)(nil); errors.As(err, &perm) {
			return zero, perm.Err
		}
		if p.Attempts > 0 && attempt >= p.Attempts {
			return zero, fmt.Errorf("after %d attempts: %w", attempt, err)
		}
		if notify != nil {
			notify(err, b.Next())
		}
		if !b.Wait(ctx.Done()) {
			return zero, last
		}
	}
}

// Permanent marks err as one that trying again cannot fix: Do returns it
// (unwrapped) at once.
func Permanent(err error) error { return backoff.Permanent(err) }
