// Package certs makes and reads the certificates of the cluster port's
// TLS (cluster/tls.go): a cluster CA, and one certificate per node that
// names the node.
//
// A node certificate names its node with the URI SAN troika-node:<node_id>
// (NodeURI), besides DNS and IP SANs for people and tools. It is an ECDSA
// P-256 key, valid for TLS server and client authentication both: every
// node dials and is dialed. The CA is an ECDSA P-256 key too, allowed to
// sign end certificates only (path length 0).
//
// Files, as `troika cert` writes them: ca.pem and ca-key.pem in the CA's
// directory, <node_id>.pem and <node_id>-key.pem for a node. Private keys
// are written 0600, certificates 0644.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

const (
	// NodeURIScheme is the scheme of the URI SAN that names a node.
	NodeURIScheme = "troika-node"

	// CAValidity and NodeValidity are the default lifetimes.
	CAValidity   = 10 * 365 * 24 * time.Hour
	NodeValidity = 2 * 365 * 24 * time.Hour

	// CACertFile and CAKeyFile are the file names in a CA directory.
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"

	// backdate is how long before now a certificate becomes valid, so a
	// node whose clock is a little behind accepts it.
	backdate = time.Hour
)

// nodeIDPattern is cluster's: what a node id may be.
var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$`)

// NodeCertFile and NodeKeyFile are the file names of node id's
// certificate and key.
func NodeCertFile(id string) string { return id + ".pem" }

// NodeKeyFile is the file name of node id's private key.
func NodeKeyFile(id string) string { return id + "-key.pem" }

// NodeURI is the URI SAN that names node id: troika-node:<id>.
func NodeURI(id string) *url.URL { return &url.URL{Scheme: NodeURIScheme, Opaque: id} }

// ErrNotNodeCert: a certificate names no troika node (no, or more than
// one, troika-node: URI SAN).
var ErrNotNodeCert = errors.New("the certificate names no troika node (no troika-node:<node_id> URI SAN): make node certificates with `troika cert create-node`")

// NodeID returns the node a certificate names.
func NodeID(cert *x509.Certificate) (string, error) {
	id := ""
	for _, u := range cert.URIs {
		if u.Scheme != NodeURIScheme {
			continue
		}
		if id != "" || !nodeIDPattern.MatchString(u.Opaque) {
			return "", ErrNotNodeCert
		}
		id = u.Opaque
	}
	if id == "" {
		return "", ErrNotNodeCert
	}
	return id, nil
}

// CA is a cluster CA: its certificate and private key.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a self-signed CA named name, valid from now (less an hour)
// for validity.
func NewCA(name string, now time.Time, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"troika"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// CertPEM is the CA certificate, PEM-encoded.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Pool is a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// NodeRequest describes a node certificate.
type NodeRequest struct {
	NodeID   string
	IPs      []net.IP
	DNSNames []string // besides NodeID, which is always one
	// Now and Validity: the certificate is valid from Now (less an hour)
	// for Validity (default NodeValidity), but never past the CA's end.
	Now      time.Time
	Validity time.Duration
}

// Issued is a node certificate with its key.
type Issued struct {
	Cert    *x509.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// TLS is the certificate and key for crypto/tls, with Leaf set.
func (is *Issued) TLS() (tls.Certificate, error) {
	c, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	c.Leaf = is.Cert
	return c, nil
}

// IssueNode makes a node certificate signed by the CA.
func (ca *CA) IssueNode(req NodeRequest) (*Issued, error) {
	if !nodeIDPattern.MatchString(req.NodeID) {
		return nil, fmt.Errorf("node id %q: must be 1-64 letters, digits, '_', '.' or '-' (the node's node_id)", req.NodeID)
	}
	if req.Now.IsZero() {
		req.Now = time.Now()
	}
	if req.Validity <= 0 {
		req.Validity = NodeValidity
	}
	notAfter := req.Now.Add(req.Validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	dns := []string{req.NodeID}
	for _, d := range req.DNSNames {
		if d != req.NodeID {
			dns = append(dns, d)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: req.NodeID, Organization: []string{"troika"}},
		NotBefore:    req.Now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{NodeURI(req.NodeID)},
		DNSNames:     dns,
		IPAddresses:  req.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	return &Issued{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func serial() *big.Int {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return s.Add(s, big.NewInt(1))
}

// WriteCA writes ca.pem and ca-key.pem into dir (made 0700 if missing).
// It refuses to replace an existing CA unless overwrite: every node
// certificate it signed would stop being trusted.
func WriteCA(dir string, ca *CA, overwrite bool) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return writePair(dir, CACertFile, ca.CertPEM(), CAKeyFile, keyPEM, overwrite)
}

// WriteNode writes <id>.pem and <id>-key.pem into dir and returns their
// paths.
func WriteNode(dir, id string, is *Issued, overwrite bool) (certPath, keyPath string, err error) {
	if err := writePair(dir, NodeCertFile(id), is.CertPEM, NodeKeyFile(id), is.KeyPEM, overwrite); err != nil {
		return "", "", err
	}
	return filepath.Join(dir, NodeCertFile(id)), filepath.Join(dir, NodeKeyFile(id)), nil
}

func writePair(dir, certName string, certPEM []byte, keyName string, keyPEM []byte, overwrite bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	certPath, keyPath := filepath.Join(dir, certName), filepath.Join(dir, keyName)
	if !overwrite {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s exists: remove it, write elsewhere, or pass --force to replace it", p)
			}
		}
	}
	// The key first: a certificate without its key is useless, a key
	// without its certificate harmless.
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(certPath, certPEM, 0o644)
}

// writeFile replaces path atomically with data, mode perm (whatever the
// umask).
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after the rename there is nothing to remove
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadCA reads the CA that WriteCA wrote into dir.
func ReadCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("read the CA in %s (%s, %s, as `troika cert create-ca` writes them): %w", dir, CACertFile, CAKeyFile, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA {
		return nil, fmt.Errorf("%s: not a troika CA (an ECDSA CA certificate and its key)", dir)
	}
	return &CA{Cert: cert, Key: key}, nil
}
