package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/troika-sip/troika/internal/certs"
)

// portAuth is the security of the cluster port, both ways: the server
// side of the handshake for the mux (accept) and the client side for
// raft, forwarding and the link (dial). auth.go has the handshake,
// tls.go the certificates.
type portAuth struct {
	key       []byte
	tls       *TLSConfig  // nil: plaintext only
	serverTLS *tls.Config // from tls
	// expect returns the node a dialed address belongs to ("" when not
	// known: any node of the cluster is accepted).
	expect func(addr string) string
	log    *slog.Logger

	counters portCounters
	refusals *refusalLog
}

func newPortAuth(key []byte, tc *TLSConfig, expect func(string) string, log *slog.Logger) *portAuth {
	p := &portAuth{key: key, tls: tc, expect: expect, log: log, refusals: newRefusalLog(log)}
	if tc != nil {
		p.serverTLS = tc.serverConfig()
	}
	if p.expect == nil {
		p.expect = func(string) string { return "" }
	}
	return p
}

// accept runs the server side of the handshake on a new connection and
// returns the connection to hand to the handler of its type (a TLS
// connection over conn, or conn itself). A refusal is a *refusal; the
// caller closes conn.
func (p *portAuth) accept(conn net.Conn) (net.Conn, byte, error) {
	deadline := time.Now().Add(handshakeTimeout)
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, 0, &refusal{reason: RefusedHandshake, err: err}
	}
	hello := newHello(p.tls != nil)
	if _, err := conn.Write(hello); err != nil {
		return nil, 0, &refusal{reason: RefusedHandshake, err: fmt.Errorf("send challenge: %w", err)}
	}
	var first [1]byte
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		return nil, 0, &refusal{reason: RefusedHandshake, err: fmt.Errorf("read answer: %w", err)}
	}
	if first[0] == tlsHandshakeRecord {
		return p.acceptTLS(conn, first[0], deadline)
	}
	return p.acceptPlain(conn, hello[len(handshakeMagic):], first[0])
}

// acceptPlain finishes the plaintext handshake whose answer started with
// typ.
func (p *portAuth) acceptPlain(conn net.Conn, challenge []byte, typ byte) (net.Conn, byte, error) {
	if p.tls != nil && p.tls.VerifyIncoming {
		// Take the answer, so that the client reads the verdict rather
		// than a reset.
		_, _ = io.ReadFull(conn, make([]byte, macLen))
		_, _ = conn.Write([]byte{ackTLSRequired})
		return nil, 0, &refusal{reason: RefusedPlaintext, err: errors.New("a plaintext handshake, and this node requires TLS (cluster.tls.verify_incoming = true): give the dialing node [cluster.tls] with verify_outgoing = true")}
	}
	typ, err := checkAnswer(conn, p.key, challenge, typ)
	if err != nil {
		return nil, 0, &refusal{reason: keyOrHandshake(err), err: err}
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, 0, &refusal{reason: RefusedHandshake, err: err}
	}
	p.counters.acceptedPlain.Add(1)
	return conn, typ, nil
}

// acceptTLS runs TLS on conn, whose first byte (a ClientHello's) was
// already read, then the plain handshake inside it.
func (p *portAuth) acceptTLS(conn net.Conn, first byte, deadline time.Time) (net.Conn, byte, error) {
	if p.tls == nil {
		return nil, 0, &refusal{reason: RefusedTLSNotConfigured, err: errors.New("a TLS handshake, and this node has no [cluster.tls]: configure it (deploy/runbook.md, enabling TLS), or set verify_outgoing = false on the dialing node")}
	}
	tc := tls.Server(&prefixConn{Conn: conn, prefix: []byte{first}}, p.serverTLS)
	if err := tc.Handshake(); err != nil {
		return nil, 0, classifyTLS(err)
	}
	peer, _ := peerNode(tc.ConnectionState().PeerCertificates)
	typ, err := serverHandshake(tc, p.key, max(time.Until(deadline), time.Millisecond))
	if err != nil {
		return nil, 0, &refusal{reason: keyOrHandshake(err), err: fmt.Errorf("inside TLS: %w", err), peer: peer}
	}
	p.counters.acceptedTLS.Add(1)
	return tc, typ, nil
}

func keyOrHandshake(err error) string {
	if errors.Is(err, errWrongKey) {
		return RefusedClusterKey
	}
	return RefusedHandshake
}

// classifyTLS turns a failed server TLS handshake into a refusal with
// its reason and what to do.
func classifyTLS(err error) *refusal {
	var cve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cve):
		subject := ""
		if len(cve.UnverifiedCertificates) > 0 {
			c := cve.UnverifiedCertificates[0]
			subject = fmt.Sprintf(" (certificate of %q issued by %q)", c.Subject.String(), c.Issuer.String())
		}
		return &refusal{reason: RefusedBadCert, err: fmt.Errorf("%w%s: the dialing node's certificate must be made by this cluster's CA (cluster.tls.ca_file) and be current", err, subject)}
	case errors.Is(err, certs.ErrNotNodeCert):
		return &refusal{reason: RefusedNotNode, err: err}
	case strings.Contains(err.Error(), "didn't provide a certificate"):
		return &refusal{reason: RefusedNoCert, err: fmt.Errorf("%w: every node must present its certificate (cluster.tls.cert_file)", err)}
	case isRemoteAlert(err):
		return &refusal{reason: RefusedTLS, err: fmt.Errorf("%w: the dialing node refused this node's certificate: does its cluster.tls.ca_file hold this cluster's CA, and is this the node it meant to dial?", err)}
	default:
		return &refusal{reason: RefusedTLS, err: err}
	}
}

// dial opens an authenticated connection of type typ to the cluster
// port at addr: TLS when this node dials TLS and the peer offers it,
// else plaintext (see TLSConfig).
func (p *portAuth) dial(addr string, typ byte, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: dialKeepAlive}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c, err := p.clientSide(conn, addr, typ, time.Now().Add(timeout))
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	return c, nil
}

func (p *portAuth) clientSide(conn net.Conn, addr string, typ byte, deadline time.Time) (net.Conn, error) {
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	challenge, offered, err := readChallenge(conn)
	if err != nil {
		return nil, err
	}
	useTLS := p.tls != nil && p.tls.VerifyOutgoing
	if useTLS && !offered {
		if p.tls.VerifyIncoming {
			return nil, errors.New("the peer offers no TLS on its cluster port (an older troika, or no [cluster.tls] there), and this node requires TLS: give the peer [cluster.tls], or set verify_incoming = false here while the cluster moves to TLS")
		}
		p.log.Debug("cluster port: the peer offers no TLS; dialing in plaintext (verify_incoming = false)", "peer", addr)
		useTLS = false
	}
	if !useTLS {
		if err := answerChallenge(conn, p.key, challenge, typ); err != nil {
			return nil, err
		}
		return conn, conn.SetDeadline(time.Time{})
	}
	tc := tls.Client(conn, p.tls.clientConfig(p.expect(addr)))
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	if err := clientHandshake(tc, p.key, typ, max(time.Until(deadline), time.Millisecond)); err != nil {
		if isRemoteAlert(err) {
			// TLS 1.3: the server judges the client's certificate after
			// the client has finished its handshake; its verdict comes
			// with the first read.
			return nil, fmt.Errorf("inside TLS: %w: the peer refused this node's certificate: is cluster.tls.cert_file made by the CA in the peer's cluster.tls.ca_file, and current?", err)
		}
		return nil, fmt.Errorf("inside TLS: %w", err)
	}
	return tc, nil
}

// isRemoteAlert: err is a TLS alert the other side sent.
func isRemoteAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// stats are the port's counters.
func (p *portAuth) stats() PortStats { return p.counters.stats() }

// refused counts a refusal and logs it (rate-limited).
func (p *portAuth) refused(remote string, r *refusal) {
	p.counters.refuse(r.reason)
	p.refusals.note(remote, r)
}
