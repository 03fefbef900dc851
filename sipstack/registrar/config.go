package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/logthrottle"
	"github.com/troika-sip/troika/internal/metric"
	"github.com/troika-sip/troika/sipstack/auth"
	"github.com/troika-sip/troika/sipstack/sipmsg"
)

// Config tunes a Registrar. Every field is required (the SIP server fills
// the defaults).
type Config struct {
	// Expiry bounds in seconds: requests asking less than MinExpires (and
	// not 0) get 423 Interval Too Brief, more than MaxExpires are clamped.
	DefaultExpires, MinExpires, MaxExpires int
	// MaxContacts caps the bindings of one AOR (an account's own
	// MaxContacts wins when set).
	MaxContacts int
	// ProposeTimeout bounds the replicated write of one REGISTER; when it
	// passes the phone gets 503 with Retry-After.
	ProposeTimeout time.Duration
	// MaxInFlight bounds the REGISTERs being written at once; more get
	// 503 with Retry-After at once.
	MaxInFlight int
	Metrics     prometheus.Registerer
	Logger      *slog.Logger
	Now         func() time.Time
}

// Store is the replicated write path (a cluster node, or a test's).
type Store interface {
	Propose(ctx context.Context, cmd fsm.Command) (fsm.Result, error)
}

// Bindings reads the bindings of an AOR current at nowMs (*fsm.State).
type Bindings interface {
	Bindings(aor string, nowMs int64) []fsm.Binding
}

// Registrar answers REGISTERs. It is safe for concurrent use.
type Registrar struct {
	cfg         Config
	state       Bindings
	store       Store
	auth        *auth.Authenticator
	slots       chan struct{} // REGISTERs being written
	results     *prometheus.CounterVec
	proposeTime prometheus.Histogram
	log         *slog.Logger
	refusals    *logthrottle.Gate // of the "REGISTER refused" lines
}

const (
	// refusalLogEvery: a source is logged at most once per result in
	// this time; the next line counts the refusals not logged.
	refusalLogEvery = 10 * time.Second
	// refusalLogSources bounds the sources remembered for that.
	refusalLogSources = 4096
)

// results lists every outcome, pre-created on the metric.
var results = []string{sipmsg.ResultOK, sipmsg.ResultQuery, sipmsg.ResultRetransmission, sipmsg.ResultUnauthorized,
	sipmsg.ResultStale, sipmsg.ResultForbidden, sipmsg.ResultRateLimited, sipmsg.ResultTooBrief, sipmsg.ResultBadRequest,
	sipmsg.ResultTooManyContacts, sipmsg.ResultStaleCSeq, sipmsg.ResultUnavailable, sipmsg.ResultError, sipmsg.ResultReplayed,
	sipmsg.ResultThrottled, sipmsg.ResultOverloaded}

// New returns a Registrar that reads bindings from state, writes them
// through store and authenticates with a.
func New(cfg Config, state Bindings, store Store, a *auth.Authenticator) (*Registrar, error) {
	switch {
	case state == nil || store == nil || a == nil:
		return nil, errors.New("registrar: state, store and authenticator are required")
	case cfg.MinExpires < 1 || cfg.MaxExpires < cfg.MinExpires || cfg.DefaultExpires < cfg.MinExpires || cfg.DefaultExpires > cfg.MaxExpires:
		return nil, fmt.Errorf("registrar expires: need 1 <= min (%d) <= default (%d) <= max (%d)", cfg.MinExpires, cfg.DefaultExpires, cfg.MaxExpires)
	case cfg.MaxInFlight < 1 || cfg.ProposeTimeout <= 0 || cfg.Metrics == nil || cfg.Logger == nil || cfg.Now == nil:
		return nil, errors.New("registrar: max in flight, propose timeout, metrics, logger and clock are required")
	}
	f := metric.New(cfg.Metrics, "sip")
	reg := &Registrar{
		cfg:      cfg,
		state:    state,
		store:    store,
		auth:     a,
		slots:    make(chan struct{}, cfg.MaxInFlight),
		refusals: logthrottle.New(refusalLogEvery, refusalLogSources),
		results: f.CounterVec("register_total",
			"REGISTER requests by result.",
			"result"),
		proposeTime: f.Histogram("register_propose_seconds",
			"Time to replicate one REGISTER's bindings.",
			[]float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5}),
		log: cfg.Logger,
	}
	metric.Zero(reg.results.WithLabelValues, results...)
	return reg, nil
}
