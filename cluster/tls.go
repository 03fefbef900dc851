package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/troika-sip/troika/internal/certs"
)

// TLSConfig protects the cluster port with mutually authenticated TLS
// (TLS 1.3, at least 1.2). Each side presents a certificate that chains
// to the cluster CA and names a node (the URI SAN troika-node:<node_id>,
// internal/certs); a dialer that knows which node it is calling (a raft
// server, a link peer) also checks that the certificate names that node.
// Inside TLS the cluster key is proven as before (auth.go).
//
// The two switches, Consul's verify_incoming and verify_outgoing, let a
// running plaintext cluster move to TLS with two rolling restarts
// (deploy/runbook.md):
//
//   - VerifyIncoming false (the transition): TLS is offered and a TLS
//     dialer must present a good certificate, but the plaintext handshake
//     with the cluster key is still accepted. True: plaintext is refused.
//   - VerifyOutgoing true: this node dials TLS to every node that offers
//     it. A node that offers none (an older build, or one without
//     [cluster.tls] yet) is dialed in plaintext while this node itself
//     accepts plaintext (VerifyIncoming false), and refused once it does
//     not. False: this node dials plaintext.
//
// VerifyIncoming without VerifyOutgoing is refused: such a node could
// not talk to nodes like itself.
type TLSConfig struct {
	// CAs are the cluster CA certificates a peer's certificate must chain
	// to (several while the CA is replaced).
	CAs *x509.CertPool
	// Certificate is this node's, with its key; it must name this node.
	// Leaf is parsed when nil.
	Certificate    tls.Certificate
	VerifyIncoming bool
	VerifyOutgoing bool
}

// check validates the TLS settings of node nodeID.
func (c *TLSConfig) check(nodeID string) error {
	if c.CAs == nil {
		return errors.New("tls: no cluster CA (cluster.tls.ca_file)")
	}
	if len(c.Certificate.Certificate) == 0 || c.Certificate.PrivateKey == nil {
		return errors.New("tls: no node certificate and key (cluster.tls.cert_file, key_file)")
	}
	if c.Certificate.Leaf == nil {
		leaf, err := x509.ParseCertificate(c.Certificate.Certificate[0])
		if err != nil {
			return fmt.Errorf("tls: node certificate: %w", err)
		}
		c.Certificate.Leaf = leaf
	}
	id, err := certs.NodeID(c.Certificate.Leaf)
	if err != nil {
		return fmt.Errorf("tls: node certificate: %w", err)
	}
	if id != nodeID {
		return fmt.Errorf("tls: the node certificate names node %q, not this node %q: use the certificate made for this node", id, nodeID)
	}
	if c.VerifyIncoming && !c.VerifyOutgoing {
		return errors.New("tls: verify_incoming = true needs verify_outgoing = true (this node would dial plaintext, which nodes like it refuse)")
	}
	return nil
}

// serverConfig is the TLS configuration of accepted connections: a
// client certificate of the cluster CA, naming a node, is required.
func (c *TLSConfig) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{c.Certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    c.CAs,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := peerNode(cs.PeerCertificates)
			return err
		},
	}
}

// clientConfig is the TLS configuration of a connection to the node
// called want ("" when any node of the cluster will do: a join address).
func (c *TLSConfig) clientConfig(want string) *tls.Config {
	cert := c.Certificate
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Always present the certificate, even when the server's list of
		// acceptable CAs does not name its issuer: the server then says
		// why it refuses it (a certificate of another CA) rather than that
		// none came.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		// The server's certificate has no host name to check: it names a
		// node. Verified below, in full: the chain to the cluster CA for
		// server authentication, then the node's name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs.PeerCertificates, c.CAs, want)
		},
	}
}

// errWrongNode: the server's certificate names another node than the
// one dialed.
var errWrongNode = errors.New("the certificate names another node")

// verifyServer checks a server's certificate chain against the cluster
// CAs and, when want is set, that it names node want.
func verifyServer(chain []*x509.Certificate, cas *x509.CertPool, want string) error {
	if len(chain) == 0 {
		return errors.New("the peer presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: cas, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: chain, Err: err}
	}
	id, err := peerNode(chain)
	if err != nil {
		return err
	}
	if want != "" && id != want {
		return fmt.Errorf("%w: %q, dialed as %q (is the address of %s in the raft configuration right?)", errWrongNode, id, want, want)
	}
	return nil
}

// peerNode is the node a verified peer chain names.
func peerNode(chain []*x509.Certificate) (string, error) {
	if len(chain) == 0 {
		return "", errors.New("no certificate")
	}
	return certs.NodeID(chain[0])
}

// peerNodeID is the node the TLS certificate of conn's peer names; ok is
// false for a plaintext connection.
func peerNodeID(conn net.Conn) (id string, ok bool) {
	for conn != nil {
		if tc, isTLS := conn.(*tls.Conn); isTLS {
			id, err := peerNode(tc.ConnectionState().PeerCertificates)
			return id, err == nil
		}
		u, isWrapper := conn.(interface{ NetConn() net.Conn })
		if !isWrapper {
			return "", false
		}
		conn = u.NetConn()
	}
	return "", false
}

// netConn is the connection under conn's wrappers (TLS, the mux's
// tracking): the TCP connection, for socket options.
func netConn(conn net.Conn) net.Conn {
	for {
		u, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			return conn
		}
		conn = u.NetConn()
	}
}

// prefixConn gives back bytes already read from its connection before
// reading further: the first byte of a TLS ClientHello, which told the
// server that the client speaks TLS.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *prefixConn) NetConn() net.Conn { return c.Conn }
