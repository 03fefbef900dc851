package cluster

import (
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/troika-sip/troika/internal/logthrottle"
)

// Why the cluster port refused a connection: the reason label of
// troika_cluster_conn_refused_total, and of the log line.
const (
	// RefusedPlaintext: a plaintext handshake, and this node requires TLS
	// (verify_incoming).
	RefusedPlaintext = "plaintext"
	// RefusedNoCert: TLS without a client certificate.
	RefusedNoCert = "no_cert"
	// RefusedBadCert: a certificate that does not verify against the
	// cluster CA: another CA's, expired, or not for client use.
	RefusedBadCert = "bad_cert"
	// RefusedNotNode: a certificate of the cluster CA that names no node.
	RefusedNotNode = "not_node_cert"
	// RefusedTLS: any other failure of the TLS handshake (versions,
	// ciphers, a broken or slow handshake).
	RefusedTLS = "tls_handshake"
	// RefusedTLSNotConfigured: a TLS ClientHello at a node without
	// [cluster.tls].
	RefusedTLSNotConfigured = "tls_not_configured"
	// RefusedClusterKey: the cluster key was not proven (in the clear or
	// inside TLS).
	RefusedClusterKey = "cluster_key"
	// RefusedHandshake: no answer in time, garbage, an unknown connection
	// type.
	RefusedHandshake = "handshake"
	// RefusedBusy: too many connections in their handshake at once.
	RefusedBusy = "busy"
)

// RefusalReasons lists every reason, in a fixed order.
func RefusalReasons() []string {
	return []string{RefusedPlaintext, RefusedNoCert, RefusedBadCert, RefusedNotNode, RefusedTLS,
		RefusedTLSNotConfigured, RefusedClusterKey, RefusedHandshake, RefusedBusy}
}

const numRefusalReasons = 9

// PortStats counts the cluster port's connections since the node
// started.
type PortStats struct {
	// Refused by reason (every reason of RefusalReasons is present).
	Refused map[string]uint64
	// Accepted connections that passed the handshake, by transport.
	AcceptedTLS, AcceptedPlaintext uint64
}

// portCounters are the atomic counters behind PortStats.
type portCounters struct {
	refused                    [numRefusalReasons]atomic.Uint64
	acceptedTLS, acceptedPlain atomic.Uint64
}

func (c *portCounters) refuse(reason string) {
	for i, r := range RefusalReasons() {
		if r == reason {
			c.refused[i].Add(1)
			return
		}
	}
}

func (c *portCounters) stats() PortStats {
	st := PortStats{Refused: make(map[string]uint64, numRefusalReasons), AcceptedTLS: c.acceptedTLS.Load(), AcceptedPlaintext: c.acceptedPlain.Load()}
	for i, r := range RefusalReasons() {
		st.Refused[r] = c.refused[i].Load()
	}
	return st
}

// refusal is why the port refused a connection.
type refusal struct {
	reason string
	err    error
	peer   string // the node its certificate names, when known
}

func (r *refusal) Error() string { return r.reason + ": " + r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

const (
	// refusalLogEvery: a remote host is logged at most once per reason
	// in this time; the refusals in between are counted, and the next
	// line says how many.
	refusalLogEvery = 30 * time.Second
	// refusalLogHosts bounds the hosts remembered; beyond it, all other
	// hosts share one entry per reason (host "*").
	refusalLogHosts = 1024
)

// refusalLog logs refused connections, one line per refusal, but at most
// one per remote host and reason every refusalLogEvery: a misconfigured
// node redialing in a loop, or a scan, cannot flood the log.
type refusalLog struct {
	log  *slog.Logger
	now  func() time.Time
	gate *logthrottle.Gate
}

func newRefusalLog(log *slog.Logger) *refusalLog {
	return &refusalLog{log: log, now: time.Now, gate: logthrottle.New(refusalLogEvery, refusalLogHosts)}
}

// note logs (or counts, when logged recently) a refusal of a connection
// from remote.
func (l *refusalLog) note(remote string, r *refusal) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ok, suppressed := l.gate.Allow(logthrottle.Key{Who: host, What: r.reason}, l.now())
	if !ok {
		return
	}
	attrs := []any{"remote", remote, "reason", r.reason, "error", r.err.Error()}
	if r.peer != "" {
		attrs = append(attrs, "peer_node", r.peer)
	}
	if suppressed > 0 {
		attrs = append(attrs, "not_logged_since_last", suppressed)
	}
	attrs = append(attrs, "next_log_for_this_host_and_reason_after", l.gate.Every())
	l.log.Warn("cluster port: refused a connection", attrs...)
}
