package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/metric"
)

// Config configures an Authenticator.
type Config struct {
	// Realm of the digest challenges. Every node of a cluster must use the
	// same realm: it is part of the nonce's MAC and of the password hash.
	Realm string
	// Algorithms are the digest algorithms offered, one challenge each,
	// in order of preference (SHA256, MD5). Credentials using an algorithm
	// not offered are challenged again (no downgrade).
	Algorithms []string
	// NonceTTL is how long a nonce may be used; an older one with
	// otherwise valid credentials is challenged again with stale=true.
	NonceTTL time.Duration
	// FailuresPerMinute is how many failed authentications one source IP
	// may make within a minute; the next one blocks it for BlockFor.
	// Zero or negative disables the limit.
	FailuresPerMinute int
	BlockFor          time.Duration
	// AccountGuessesPerMinute is how many failed authentications a user
	// name may take a minute from sources it has not authenticated from
	// lately (AccountGuessBurst at once); past that its requests from such
	// sources get 503 with Retry-After, unverified (guard.go). Zero or
	// negative disables the guard.
	AccountGuessesPerMinute int
	AccountGuessBurst       int
	// TrustSourceFor is how long a source that authenticated for a user
	// name is exempt from the guard.
	TrustSourceFor time.Duration
	// UnboundNonces reports whether a node of the cluster may still issue
	// nonces bound to nothing: a build before bound nonces, during a
	// rolling upgrade. A nonce a node of that build issued is then
	// accepted (as that build accepts it: from any source, for any
	// request, until its TTL) if it was issued before UnboundNonces last
	// said true here, so that a phone challenged by an old node and
	// answering the node that took its address over is not refused. nil:
	// never (every nonce must be bound).
	UnboundNonces func() bool
	// MaxNonces bounds the nonces whose nc this node remembers (ncache.go).
	MaxNonces int
	// VendorFailures, when not nil, counts failed digest authentications
	// of vendors (the B2BUA's vendor call outcomes).
	VendorFailures prometheus.Counter
	Metrics        prometheus.Registerer
	Logger         *slog.Logger
}

// State is what authentication reads from the replicated state
// (*fsm.State is one).
type State interface {
	NonceSecret() []byte
	Realm() string // of the stored credentials; "" until recorded
	Account(id string) (fsm.Account, bool)
	ConnectionForUser(name string) (fsm.Connection, fsm.Vendor, bool)
	ConnectionForSource(ip netip.Addr) (fsm.Connection, bool)
	Vendor(id string) (fsm.Vendor, bool)
}

// Authenticator checks the digest credentials of requests against the
// accounts and vendors of the replicated state, and counts failures per
// source. It is safe for concurrent use.
type Authenticator struct {
	cfg     Config
	state   State
	limiter *limiter
	guard   *accountGuard
	nc      *ncCache
	macs    macPool         // HMAC states for nonces
	nobody  fsm.Credentials // verified against for unknown users
	// unboundUntil is when (unix ms) Config.UnboundNonces last said true:
	// unbound nonces issued later are refused.
	unboundUntil atomic.Int64
	failures     prometheus.Counter
	refusals     *prometheus.CounterVec
	blocks       prometheus.Counter
	log          *slog.Logger
}

// Why an authentication was refused: the reason label of
// troika_sip_auth_refusals_total.
const (
	refusalWrongPassword = "wrong_password" // a verified nonce, a wrong response (or unknown user)
	refusalForeignNonce  = "foreign_nonce"  // a nonce not ours, or issued to another source, Call-ID or From tag
	refusalURIMismatch   = "uri_mismatch"   // the digest uri is not the Request-URI
	refusalReplay        = "replay"         // an nc already used by another request
	refusalThrottled     = "throttled"      // the user name's guesses are used up (guard.go)
	refusalRateLimited   = "rate_limited"   // the source is blocked (ratelimit.go)
)

var refusalReasons = []string{refusalWrongPassword, refusalForeignNonce, refusalURIMismatch, refusalReplay,
	refusalThrottled, refusalRateLimited}

func (a *Authenticator) refused(reason string) { a.refusals.WithLabelValues(reason).Inc() }

// Check returns cfg with the algorithms in canonical form, or an error
// naming what is wrong.
func (cfg Config) Check() (Config, error) {
	if cfg.Realm == "" {
		return cfg, errors.New("realm: required (the same on every node)")
	}
	if strings.ContainsAny(cfg.Realm, "\"\\\r\n\x00") || len(cfg.Realm) > 128 {
		return cfg, fmt.Errorf("realm %q: at most 128 characters, no quotes, backslashes or line breaks", cfg.Realm)
	}
	algs, err := CheckAlgorithms(cfg.Algorithms)
	if err != nil {
		return cfg, err
	}
	if len(algs) == 0 {
		return cfg, errors.New("algorithms: at least one is required")
	}
	cfg.Algorithms = algs
	if cfg.NonceTTL < time.Second {
		return cfg, fmt.Errorf("nonce TTL %s: at least 1 s", cfg.NonceTTL)
	}
	return cfg, nil
}

const (
	defaultMaxNonces      = 500_000
	defaultTrustSourceFor = 24 * time.Hour
)

// New checks cfg and returns an Authenticator over state.
func New(cfg Config, state State) (*Authenticator, error) {
	cfg, err := cfg.Check()
	if err != nil {
		return nil, err
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxNonces <= 0 {
		cfg.MaxNonces = defaultMaxNonces
	}
	if cfg.TrustSourceFor <= 0 {
		cfg.TrustSourceFor = defaultTrustSourceFor
	}
	if cfg.AccountGuessBurst <= 0 {
		cfg.AccountGuessBurst = max(cfg.AccountGuessesPerMinute, 1)
	}
	f := metric.New(cfg.Metrics, "sip")
	a := &Authenticator{
		cfg:     cfg,
		state:   state,
		limiter: newLimiter(cfg.FailuresPerMinute, cfg.BlockFor),
		guard:   newAccountGuard(cfg.AccountGuessesPerMinute, cfg.AccountGuessBurst, cfg.TrustSourceFor),
		nc:      newNCCache(cfg.MaxNonces, cfg.NonceTTL.Milliseconds()),
		nobody:  fsm.HashCredentials("\x00", cfg.Realm, "\x00"),
		failures: f.Counter("auth_failures_total",
			"Digest authentications that failed (wrong password, unknown or blocked account, user mismatch)."),
		refusals: f.CounterVec("auth_refusals_total",
			"Digest authentications refused, by reason (wrong_password, foreign_nonce, uri_mismatch, replay, throttled, rate_limited).",
			"reason"),
		blocks: f.Counter("auth_blocks_total",
			"Source addresses (IPv6: /64 prefixes) this node blocked after too many failed authentications (registrar.auth_failures_per_minute); their requests get 403 for registrar.auth_block_for."),
		log: cfg.Logger,
	}
	f.GaugeFunc("auth_blocked_sources",
		"Source addresses (IPv6: /64 prefixes) blocked on this node now by the failed-authentication limit.",
		func() float64 { return float64(len(a.limiter.list(time.Now()))) })
	metric.Zero(a.refusals.WithLabelValues, refusalReasons...)
	return a, nil
}

// CheckAlgorithms returns the canonical names of algs (SHA-256, MD5), or
// an error naming one that is not supported or listed twice.
func CheckAlgorithms(algs []string) ([]string, error) {
	out := make([]string, 0, len(algs))
	for _, a := range algs {
		a = strings.ToUpper(strings.TrimSpace(a))
		if a != SHA256 && a != MD5 {
			return nil, fmt.Errorf("algorithm %q: only SHA-256 and MD5 are supported", a)
		}
		if slices.Contains(out, a) {
			return nil, fmt.Errorf("algorithm %q: listed twice", a)
		}
		out = append(out, a)
	}
	return out, nil
}
