package sipstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/auth"
)

// Store is the replicated write path: Propose applies a command through
// consensus and returns its result once it is committed and applied.
// cluster.Node implements it (forwarding to the leader when needed).
type Store interface {
	Propose(ctx context.Context, cmd fsm.Command) (fsm.Result, error)
}

// RegistrarConfig tunes the registrar. Zero values take the defaults named
// on each field.
type RegistrarConfig struct {
	// Realm of the digest challenges. Every node of a cluster must use the
	// same realm: it is part of the nonce's MAC and of the password hash.
	Realm string

	// Expiry bounds in seconds: requests asking less than MinExpires (and
	// not 0) get 423 Interval Too Brief, more than MaxExpires are clamped.
	DefaultExpires int // 3600
	MinExpires     int // 60
	MaxExpires     int // 7200

	// MaxContacts caps the bindings of one AOR (an account's own
	// MaxContacts wins when set). 10 when zero.
	MaxContacts int

	// Algorithms are the digest algorithms offered, one WWW-Authenticate
	// each, in order of preference: MD5 alone when empty, which every
	// phone accepts (phones that predate RFC 8760 give up on a 401 with a
	// challenge they do not know, even next to an MD5 one). Credentials
	// using an algorithm not offered are challenged again (no downgrade).
	Algorithms []string

	// NonceTTL is how long a nonce may be used; an older one with otherwise
	// valid credentials gets a 401 with stale=true. 5 minutes when zero.
	NonceTTL time.Duration

	// AuthFailuresPerMinute is how many failed authentications one source
	// IP may make within a minute; the next one blocks it for AuthBlockFor,
	// during which its REGISTERs get 403 without being checked. 20 when
	// zero; negative disables the limit.
	AuthFailuresPerMinute int
	AuthBlockFor          time.Duration // 2 minutes when zero

	// AccountGuessesPerMinute bounds the failed authentications one user
	// name may take a minute from sources that have not authenticated for
	// it lately (AccountGuessBurst at once); past that such requests get
	// 503 with Retry-After without being checked, while the account's own
	// phones (sources that authenticated within TrustSourceFor) go on.
	// 20 (burst 10, trust 24 h) when zero; negative disables it.
	AccountGuessesPerMinute int
	AccountGuessBurst       int
	TrustSourceFor          time.Duration

	// ProposeTimeout bounds the replicated write of one REGISTER; when it
	// passes the phone gets 503 with Retry-After. 5 s when zero.
	ProposeTimeout time.Duration

	// MaxInFlight bounds the REGISTERs being processed at once by one
	// Server; more get 503 with Retry-After at once. 4096 when zero.
	MaxInFlight int

	// ShedAfter is the target wait of a REGISTER over UDP for a worker
	// (register_udp.go): while waits stay above it (even the shortest for
	// 100 ms), one without credentials that waited longer is answered 503
	// with Retry-After unread (one with credentials, past five times as
	// long). The node sheds what it cannot take and keeps its response
	// time for the rest. 20 ms when zero; negative never sheds.
	ShedAfter time.Duration
}

// Config configures a Server.
type Config struct {
	// Addresses are the main (virtual) IPs this node serves, e.g.
	// ["127.0.0.1"]. Each is served on every port below.
	Addresses []string
	// Main ports per transport, e.g. UDPPorts [5060]. Port 0 picks a free
	// port (tests); Sockets reports the one chosen.
	UDPPorts []int
	TCPPorts []int
	// TLSPorts are optional; when set TLSCert and TLSKey (PEM files) are
	// required.
	TLSPorts []int
	TLSCert  string
	TLSKey   string

	// ServeAliases also listens on every IP alias of the replicated state:
	// the alias IP on the main ports plus the alias's extra ports. The set
	// is reconciled whenever the aliases change (new sockets opened,
	// removed ones closed); sockets that fail to open are retried every
	// AliasRetry.
	ServeAliases bool
	AliasRetry   time.Duration // 5 s when zero

	Registrar RegistrarConfig
	Calls     CallConfig
	// Delivery tunes what happens beyond the called account's own
	// delivery: 3xx redirects and follow-me (b2bua_redirect.go).
	Delivery DeliveryConfig
	// Keepalive pings the bindings of the sockets this node holds, to keep
	// their NAT pinholes open and find phones that are gone
	// (sipstack/keepalive); its Interval zero turns it off. Logger,
	// Metrics and Now are the Server's.
	Keepalive KeepaliveConfig
	// Dispatch turns on the dispatcher role and reaches the other nodes
	// (dispatch.go).
	Dispatch DispatchConfig
	// NodeAlive reports whether another node is up and runs its calls
	// (alive in gossip, neither starting nor leaving): its answered calls
	// are not adopted (b2bua_adopt.go). nil: no other node is.
	NodeAlive func(node string) bool
	// AdoptThroughLog reports whether every voter applies fsm.AdoptCall:
	// an adopter then moves the call to itself in the state first. While
	// it is false (a rolling upgrade from a version without AdoptCall: an
	// older node cannot apply the command) an adopter writes nothing and
	// runs the call, as those versions did. nil: true.
	AdoptThroughLog func() bool
	// QuotaThroughLog reports whether every voter applies the commands of
	// quota reservations (fsm.StartCall with a chunk, fsm.ExtendCall):
	// calls then reserve Calls.ReserveChunkSeconds at a time. While it is
	// false (a rolling upgrade from a version without them) calls reserve
	// their whole length at setup, as those versions did. nil: true.
	QuotaThroughLog func() bool
	// UnboundNonces reports whether a voter may run a build that issues
	// digest nonces bound to nothing (a rolling upgrade from one): such
	// nonces are then accepted (auth.Config.UnboundNonces). nil: never.
	UnboundNonces func() bool

	// TCPIdleTimeout closes a TCP or TLS connection that has sent nothing
	// for this long. MaxExpires + 60 s when zero (a registered phone
	// refreshes before that, keeping its connection).
	TCPIdleTimeout time.Duration
	// MaxConnsPerSocket bounds the open TCP/TLS connections of one
	// listening socket; more are closed on accept. 10000 when zero.
	MaxConnsPerSocket int
	// MaxUDPPeers bounds the remote addresses one UDP socket remembers
	// (sipgo keeps one connection-pool entry per remote address, forever);
	// past it the socket's reader is restarted, which forgets them.
	// 65536 when zero.
	MaxUDPPeers int
	// UDPSocketBuffer is the receive and send buffer asked of the kernel
	// for each UDP socket this node opens (capped by net.core.rmem_max and
	// wmem_max): a burst of datagrams waits there instead of being
	// dropped, which a phone would only notice by retransmitting 500 ms
	// later. 2 MiB when zero; negative leaves the kernel's default
	// (net.core.rmem_default, 208 KiB on most systems: a few hundred
	// REGISTERs).
	UDPSocketBuffer int

	NodeID  string
	Logger  *slog.Logger          // slog.Default() when nil
	Metrics prometheus.Registerer // a private registry when nil
	Now     func() time.Time      // time.Now when nil
	// ClockJumps, when not nil, returns a channel closed when Now next
	// jumps forward (tests: testkit.Clock.Jumps); answered calls re-arm
	// their timers then.
	ClockJumps func() <-chan struct{}
}

const (
	defaultRealm             = "troika"
	defaultExpires           = 3600
	defaultMinExpires        = 60
	defaultMaxExpires        = 7200
	defaultMaxContacts       = 10
	defaultNonceTTL          = 5 * time.Minute
	defaultAuthFailures      = 20
	defaultAuthBlockFor      = 2 * time.Minute
	defaultAccountGuesses    = 20
	defaultAccountGuessBurst = 10
	defaultTrustSourceFor    = 24 * time.Hour
	defaultProposeTimeout    = 5 * time.Second
	defaultMaxInFlight       = 4096
	defaultShedAfter         = 20 * time.Millisecond
	defaultAliasRetry        = 5 * time.Second
	defaultMaxConns          = 10000
	defaultMaxUDPPeers       = 65536
	defaultUDPSocketBuffer   = 2 << 20
)

// withDefaults fills zero values and checks the result.
func (c Config) withDefaults() (Config, error) {
	r := &c.Registrar
	if len(r.Algorithms) == 0 {
		r.Algorithms = []string{auth.MD5}
	}
	setDef(&r.NonceTTL, defaultNonceTTL)
	ac, err := c.authConfig().Check()
	if err != nil {
		return c, fmt.Errorf("registrar %w", err)
	}
	r.Algorithms = ac.Algorithms
	setDef(&r.DefaultExpires, defaultExpires)
	setDef(&r.MinExpires, defaultMinExpires)
	setDef(&r.MaxExpires, defaultMaxExpires)
	setDef(&r.MaxContacts, defaultMaxContacts)
	setDef(&r.AuthFailuresPerMinute, defaultAuthFailures)
	setDef(&r.AuthBlockFor, defaultAuthBlockFor)
	setDef(&r.AccountGuessesPerMinute, defaultAccountGuesses)
	setDef(&r.AccountGuessBurst, defaultAccountGuessBurst)
	setDef(&r.TrustSourceFor, defaultTrustSourceFor)
	setDef(&r.ProposeTimeout, defaultProposeTimeout)
	setDef(&r.MaxInFlight, defaultMaxInFlight)
	setDef(&r.ShedAfter, defaultShedAfter)
	switch {
	case r.MinExpires < 1:
		return c, fmt.Errorf("registrar min expires %d: must be at least 1 s", r.MinExpires)
	case r.MaxExpires < r.MinExpires:
		return c, fmt.Errorf("registrar max expires %d: below min expires %d", r.MaxExpires, r.MinExpires)
	case r.DefaultExpires < r.MinExpires || r.DefaultExpires > r.MaxExpires:
		return c, fmt.Errorf("registrar default expires %d: must be between min %d and max %d", r.DefaultExpires, r.MinExpires, r.MaxExpires)
	case r.MaxContacts < 0:
		return c, fmt.Errorf("registrar max contacts %d: cannot be negative", r.MaxContacts)
	}
	if c.Calls, err = c.Calls.WithDefaults(); err != nil {
		return c, err
	}
	setDef(&c.AliasRetry, defaultAliasRetry)
	setDef(&c.TCPIdleTimeout, time.Duration(r.MaxExpires)*time.Second+time.Minute)
	setDef(&c.MaxConnsPerSocket, defaultMaxConns)
	setDef(&c.MaxUDPPeers, defaultMaxUDPPeers)
	setDef(&c.UDPSocketBuffer, defaultUDPSocketBuffer)

	if len(c.Addresses) == 0 {
		return c, errors.New("sip addresses: at least one IP address is required")
	}
	for _, a := range c.Addresses {
		ip, err := netip.ParseAddr(a)
		if err != nil || ip.Zone() != "" {
			return c, fmt.Errorf("sip address %q: not an IP address", a)
		}
	}
	if len(c.UDPPorts)+len(c.TCPPorts)+len(c.TLSPorts) == 0 {
		return c, errors.New("sip ports: at least one UDP, TCP or TLS port is required")
	}
	for name, ports := range map[string][]int{"udp": c.UDPPorts, "tcp": c.TCPPorts, "tls": c.TLSPorts} {
		for _, p := range ports {
			if p < 0 || p > 65535 {
				return c, fmt.Errorf("sip %s port %d: not a port", name, p)
			}
		}
	}
	if len(c.TLSPorts) > 0 && (c.TLSCert == "" || c.TLSKey == "") {
		return c, errors.New("sip TLS ports are set: TLSCert and TLSKey (PEM files) are required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

func setDef[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// authConfig is the authenticator's part of c.
func (c Config) authConfig() auth.Config {
	r := c.Registrar
	return auth.Config{Realm: r.Realm, Algorithms: r.Algorithms, NonceTTL: r.NonceTTL,
		FailuresPerMinute: r.AuthFailuresPerMinute, BlockFor: r.AuthBlockFor, AccountGuessesPerMinute: r.AccountGuessesPerMinute,
		AccountGuessBurst: r.AccountGuessBurst, TrustSourceFor: r.TrustSourceFor, UnboundNonces: c.UnboundNonces,
		Metrics: c.Metrics, Logger: c.Logger}
}

// mainPorts lists the main ports of every transport.
func (c Config) mainPorts() []int {
	return append(append(append([]int(nil), c.UDPPorts...), c.TCPPorts...), c.TLSPorts...)
}
