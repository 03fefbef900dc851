package b2bua

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/logthrottle"
	"github.com/troika-sip/troika/sipstack/auth"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// Config configures a B2BUA.
type Config struct {
	Calls CallConfig // with defaults filled (CallConfig.WithDefaults)
	// Delivery tunes what happens beyond the called account's own
	// delivery: 3xx redirects and follow-me (redirect.go).
	Delivery DeliveryConfig
	// NodeID names this node in the calls it runs.
	NodeID string
	// NodeAlive reports whether another node is up and runs its calls
	// (alive in gossip, neither starting nor leaving): its answered calls
	// are not adopted (adopt.go). nil: no other node is.
	NodeAlive func(node string) bool
	// AdoptThroughLog reports whether every voter applies fsm.AdoptCall:
	// an adopter then moves the call to itself in the state first. While
	// it is false (a rolling upgrade from a version without AdoptCall) an
	// adopter writes nothing and runs the call, as those versions did.
	// nil: true.
	AdoptThroughLog func() bool
	// QuotaThroughLog reports whether every voter applies the commands of
	// quota reservations (fsm.StartCall with a chunk, fsm.ExtendCall):
	// calls then reserve Calls.ReserveChunkSeconds at a time. While it is
	// false (a rolling upgrade from a version without them) calls reserve
	// their whole length at setup, as those versions did, and none is
	// extended. nil: true.
	QuotaThroughLog func() bool
	// Addresses and Ports are the switch's main addresses and their ports
	// (every transport): a 3xx to one of them is a loop.
	Addresses []string
	Ports     []int
	Now       func() time.Time
	// ClockJumps, when not nil, returns a channel closed when Now next
	// jumps forward (a test's clock: testkit.Clock.Jumps); answered calls
	// re-arm their timers then. nil: Now runs as time does.
	ClockJumps func() <-chan struct{}
	Logger     *slog.Logger
	Metrics    *Metrics // NewMetrics'
	// Panics, when not nil, counts the panics of call goroutines (each
	// ends only its goroutine).
	Panics prometheus.Counter
}

// Store is the replicated write path.
type Store interface {
	Propose(ctx context.Context, cmd fsm.Command) (fsm.Result, error)
}

// Sockets is what the B2BUA needs from the node's SIP sockets.
type Sockets interface {
	// Named returns the socket called name from which this node can send:
	// its own, or a relay socket for one another node holds. nil when
	// there is none.
	Named(name string) *transport.Socket
	// Main returns an open socket of transport on a main address, or nil.
	Main(transport string) *transport.Socket
	// All names every socket this node can send from.
	All() []string
}

// Router is what the B2BUA needs from the dispatcher
// (dispatch.Dispatcher is one).
type Router interface {
	// NewCallID makes the Call-ID of a leg the switch starts, which routes
	// back to this node (with the key of the Call-ID with).
	NewCallID(with string) string
	// Owns reports whether this node gets the messages of callID now;
	// known is false while no processors are known.
	Owns(callID string) (mine, known bool)
	// ForwardToCallNode passes req, received on sock, to node when that is
	// another live processor.
	ForwardToCallNode(sock *transport.Socket, node string, req *sip.Request) bool
	// ForwardFresh passes req, which matched nothing here, to the node
	// that takes the new requests of its Call-ID while this node drains.
	ForwardFresh(sock *transport.Socket, req *sip.Request) bool
}

// B2BUA runs the calls of one node. It is safe for concurrent use.
type B2BUA struct {
	cfg     Config
	state   *fsm.State
	store   Store
	auth    *auth.Authenticator
	sockets Sockets
	router  Router
	m       *Metrics
	log     *slog.Logger
	calls   *callTable
	rules   rulesCache // compiled translation rules (vendor.go)
	// refusals gates the "call refused" lines (logRefusal).
	refusals *logthrottle.Gate

	// ctx ends when the SIP server stops: calls still ringing fail (503)
	// and no new transaction starts.
	ctx context.Context
	// writes is the context of the calls' replicated writes: it outlives
	// ctx until Stop has waited for the calls' goroutines, so the calls
	// that end at shutdown are still written.
	writes     context.Context
	stopWrites context.CancelFunc
}

const (
	// refusalLogEvery: a source is logged at most once per status code
	// in this time; the next line counts the refusals not logged.
	refusalLogEvery = 10 * time.Second
	// refusalLogSources bounds the sources remembered for that.
	refusalLogSources = 4096
)

// New returns a B2BUA. ctx ends when the SIP server stops.
func New(ctx context.Context, cfg Config, state *fsm.State, store Store, a *auth.Authenticator, sockets Sockets, router Router) (*B2BUA, error) {
	if state == nil || store == nil || a == nil || sockets == nil || router == nil || cfg.Metrics == nil || cfg.Logger == nil || cfg.Now == nil {
		return nil, errors.New("b2bua: state, store, authenticator, sockets, router, metrics, logger and clock are required")
	}
	b := &B2BUA{cfg: cfg, state: state, store: store, auth: a, sockets: sockets, router: router, m: cfg.Metrics,
		log: cfg.Logger, ctx: ctx, rules: rulesCache{m: map[string]*billing.Rules{}},
		refusals: logthrottle.New(refusalLogEvery, refusalLogSources)}
	b.writes, b.stopWrites = context.WithCancel(context.WithoutCancel(ctx))
	b.calls = newCallTable(cfg.Calls.MaxCalls, func(p any) {
		b.log.Error("call goroutine panicked", "panic", p, "stack", string(debug.Stack()))
		if cfg.Panics != nil {
			cfg.Panics.Inc()
		}
	})
	return b, nil
}

// Stop tells answered calls to stop their timers (they stay in the
// cluster state, for another node to adopt) and waits up to timeout for
// every call goroutine to end; then the calls' writes are cut short. It
// reports whether they all ended.
func (b *B2BUA) Stop(timeout time.Duration) bool {
	defer b.stopWrites()
	return b.calls.shutdown(timeout)
}

// reply answers req with r and ends its transaction.
func (b *B2BUA) reply(tx sip.ServerTransaction, req *sip.Request, r sipmsg.Reply) {
	if err := sipmsg.Respond(tx, req, r); err != nil {
		b.log.Debug("could not send response", "code", r.Code, "to", req.Source(), "error", err)
	}
}
