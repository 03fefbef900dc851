package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// Files names a node's TLS files: the cluster CA's certificate (one or
// more, PEM: several while a CA is being replaced), the node's
// certificate (optionally followed by intermediates) and its private key.
type Files struct {
	CA, Cert, Key string
}

// Loaded is what Load read and checked.
type Loaded struct {
	CAs    *x509.CertPool
	Cert   tls.Certificate // Leaf set
	NodeID string          // the node the certificate names
}

// Load reads a node's TLS files and checks that they fit together: the
// certificate chains to a CA of the CA file for both client and server
// authentication, is valid at now, names node nodeID and matches the
// key. Errors name the file and say what to do; the keys named are those
// of the [cluster.tls] section.
func Load(f Files, nodeID string, now time.Time) (*Loaded, error) {
	pool, err := readCAs(f.CA)
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.cert_file %s and key_file %s: %w: give the node's certificate and the key made with it (`troika cert create-node`)", f.Cert, f.Key, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.cert_file %s: %w", f.Cert, err)
	}
	pair.Leaf = leaf
	id, err := NodeID(leaf)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.cert_file %s: %w", f.Cert, err)
	}
	if id != nodeID {
		return nil, fmt.Errorf("cluster.tls.cert_file %s names node %q, but this node's node_id is %q: use the certificate made for this node (`troika cert create-node --node %s`)", f.Cert, id, nodeID, nodeID)
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("cluster.tls.cert_file %s: intermediate certificate: %w", f.Cert, err)
		}
		inter.AddCert(c)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
		if err != nil {
			return nil, fmt.Errorf("cluster.tls.cert_file %s is not accepted by the CA of cluster.tls.ca_file %s: %w: %s", f.Cert, f.CA, err, verifyHint(err))
		}
	}
	return &Loaded{CAs: pool, Cert: pair, NodeID: id}, nil
}

// verifyHint says what to do about a failed certificate verification.
func verifyHint(err error) string {
	var inv x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return "make a new node certificate with `troika cert create-node` (runbook: rotate certificates), and check the clock"
	case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
		return "a node certificate must allow both server and client authentication: make it with `troika cert create-node`"
	case errors.As(err, &ua):
		return "the certificate was signed by another CA: make it with `troika cert create-node --ca DIR` where DIR holds this cluster's CA, or put that CA in ca_file"
	default:
		return "make the node certificate with `troika cert create-node --ca DIR` from this cluster's CA"
	}
}

// readCAs reads every certificate of a PEM file; each must be a CA.
func readCAs(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("cluster.tls.ca_file %s: certificate %d: %w", path, n+1, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("cluster.tls.ca_file %s: certificate %d (%s) is not a CA: give the cluster CA's certificate (ca.pem of `troika cert create-ca`), not a node's", path, n+1, c.Subject)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("cluster.tls.ca_file %s: no PEM certificate in it: give the cluster CA's certificate (ca.pem of `troika cert create-ca`)", path)
	}
	return pool, nil
}
