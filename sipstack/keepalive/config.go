package keepalive

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/transport"
)

// Config tunes the keepalive. Zero values take the defaults named on each
// field, except Interval: zero turns the keepalive off.
type Config struct {
	// Interval between two pings of one binding; 0: no pings.
	Interval time.Duration
	// Timeout is how long a ping waits for a final response (UDP
	// retransmits within it, as any request does). 5 s when zero, and
	// never more than Interval.
	Timeout time.Duration
	// Failures is how many failed pings in a row make a binding
	// unreachable. 3 when zero.
	Failures int
	// RemoveUnreachable removes a binding through the cluster once it is
	// unreachable, as its phone's own unregistration would.
	RemoveUnreachable bool
	// MaxPerSecond caps the pings this node starts in a second; due pings
	// beyond it wait for the next tick (counted). 2000 when zero.
	MaxPerSecond int
	// Tick is how often the due bindings are looked at. 1 s when zero
	// (tests make it shorter and move the clock).
	Tick time.Duration
	// Refresh is how often the bindings are read from the replicated
	// state. 5 s when zero, and never more than Interval.
	Refresh time.Duration

	Logger  *slog.Logger          // required
	Metrics prometheus.Registerer // required
	Now     func() time.Time      // required
}

// Defaults.
const (
	DefaultInterval     = 30 * time.Second
	DefaultTimeout      = 5 * time.Second
	DefaultFailures     = 3
	DefaultMaxPerSecond = 2000
	defaultTick         = time.Second
	defaultRefresh      = 5 * time.Second
)

// WithDefaults fills the zero values and checks c.
func (c Config) WithDefaults() (Config, error) {
	if c.Interval < 0 || c.Timeout < 0 || c.Failures < 0 || c.MaxPerSecond < 0 || c.Tick < 0 || c.Refresh < 0 {
		return c, errors.New("keepalive: durations and counts cannot be negative")
	}
	if c.Interval == 0 {
		return c, nil
	}
	c.Timeout = cmp.Or(c.Timeout, min(DefaultTimeout, c.Interval))
	if c.Timeout > c.Interval {
		return c, fmt.Errorf("keepalive timeout %s: longer than the interval %s", c.Timeout, c.Interval)
	}
	c.Failures = cmp.Or(c.Failures, DefaultFailures)
	c.MaxPerSecond = cmp.Or(c.MaxPerSecond, DefaultMaxPerSecond)
	c.Tick = cmp.Or(c.Tick, defaultTick)
	c.Refresh = cmp.Or(c.Refresh, min(defaultRefresh, c.Interval))
	if c.Logger == nil || c.Metrics == nil || c.Now == nil {
		return c, errors.New("keepalive: Logger, Metrics and Now are required")
	}
	return c, nil
}

// Sockets are the node's SIP sockets as the keepalive uses them (the SIP
// server).
type Sockets interface {
	// Sockets names the sockets of the addresses this node holds now.
	Sockets() []string
	// Named returns the stack that sends from the socket called name, or
	// nil.
	Named(name string) *transport.Socket
}

// State reads the replicated bindings (*fsm.State).
type State interface {
	AllBindings(now int64) []fsm.Binding
	Bindings(aor string, now int64) []fsm.Binding
}

// Store is the replicated write path, for removing unreachable bindings.
type Store interface {
	Propose(ctx context.Context, cmd fsm.Command) (fsm.Result, error)
}
