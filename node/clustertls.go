package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/troika-sip/troika/cluster"
	"github.com/troika-sip/troika/internal/certs"
)

// ClusterTLSConfig is the [cluster.tls] section: TLS on the cluster port
// (raft, write forwarding and the dispatch link), with certificates of
// the cluster CA on both sides (cluster/tls.go). Without the section the
// port is plaintext, authenticated by the cluster key only.
type ClusterTLSConfig struct {
	CAFile   string `toml:"ca_file"`
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// VerifyIncoming refuses plaintext connections; VerifyOutgoing dials
	// TLS. Both default to true; false for the move of a running cluster
	// to TLS (deploy/runbook.md).
	VerifyIncoming *bool `toml:"verify_incoming"`
	VerifyOutgoing *bool `toml:"verify_outgoing"`
}

// certExpiryWarning: a node certificate closer than this to its end is
// warned about at start.
const certExpiryWarning = 30 * 24 * time.Hour

func (t *ClusterTLSConfig) incoming() bool { return t.VerifyIncoming == nil || *t.VerifyIncoming }
func (t *ClusterTLSConfig) outgoing() bool { return t.VerifyOutgoing == nil || *t.VerifyOutgoing }

// validateClusterTLS checks the [cluster.tls] keys (the files are read
// at start, ClusterTLS).
func (c *Config) validateClusterTLS() error {
	t := c.Cluster.TLS
	if t == nil {
		return nil
	}
	for _, k := range []struct{ key, value, what string }{
		{"ca_file", t.CAFile, "the cluster CA's certificate, e.g. /etc/troika/tls/ca.pem (`troika cert create-ca`)"},
		{"cert_file", t.CertFile, "this node's certificate, e.g. /etc/troika/tls/" + certs.NodeCertFile(c.NodeID) + " (`troika cert create-node`)"},
		{"key_file", t.KeyFile, "this node's private key, e.g. /etc/troika/tls/" + certs.NodeKeyFile(c.NodeID)},
	} {
		if k.value == "" {
			return fmt.Errorf("cluster.tls.%s: required with [cluster.tls]: %s", k.key, k.what)
		}
	}
	if t.incoming() && !t.outgoing() {
		return errors.New("cluster.tls: verify_incoming = true needs verify_outgoing = true (this node would dial plaintext, which nodes like it refuse); while moving a cluster to TLS set verify_incoming = false (deploy/runbook.md)")
	}
	return nil
}

// ClusterTLS reads and checks the [cluster.tls] files: nil without the
// section.
func (c *Config) ClusterTLS(now time.Time) (*cluster.TLSConfig, error) {
	t := c.Cluster.TLS
	if t == nil {
		return nil, nil
	}
	l, err := certs.Load(certs.Files{CA: t.CAFile, Cert: t.CertFile, Key: t.KeyFile}, c.NodeID, now)
	if err != nil {
		return nil, err
	}
	return &cluster.TLSConfig{CAs: l.CAs, Certificate: l.Cert, VerifyIncoming: t.incoming(), VerifyOutgoing: t.outgoing()}, nil
}

// logClusterTLS says at start how the cluster port is protected, and
// warns of a certificate about to expire.
func logClusterTLS(log *slog.Logger, tc *cluster.TLSConfig, now time.Time) {
	if tc == nil {
		log.Warn("cluster port: plaintext, authenticated by the cluster key only: set [cluster.tls] to encrypt it (deploy/runbook.md)")
		return
	}
	leaf := tc.Certificate.Leaf
	log.Info("cluster port: TLS", "verify_incoming", tc.VerifyIncoming, "verify_outgoing", tc.VerifyOutgoing,
		"certificate_expires", leaf.NotAfter.Format(time.DateOnly))
	if left := leaf.NotAfter.Sub(now); left < certExpiryWarning {
		log.Warn("cluster port: this node's certificate expires soon: make a new one (deploy/runbook.md, rotate certificates)",
			"expires", leaf.NotAfter.Format(time.RFC3339), "days_left", int(left.Hours()/24))
	}
}

// registerPortMetrics exports the cluster port's counters.
func registerPortMetrics(reg prometheus.Registerer, c *cluster.Node) {
	auto := promauto.With(reg)
	for _, reason := range cluster.RefusalReasons() {
		auto.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "cluster", Name: "conn_refused_total",
			Help:        "Connections the cluster port refused, by reason: plaintext, no_cert, bad_cert, not_node_cert, tls_handshake, tls_not_configured, cluster_key, handshake, busy.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(c.PortStats().Refused[reason]) })
	}
	for transport, get := range map[string]func(cluster.PortStats) uint64{
		"tls":       func(s cluster.PortStats) uint64 { return s.AcceptedTLS },
		"plaintext": func(s cluster.PortStats) uint64 { return s.AcceptedPlaintext },
	} {
		auto.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "cluster", Name: "conns_accepted_total",
			Help:        "Connections the cluster port accepted (handshake passed), by transport: tls or plaintext.",
			ConstLabels: prometheus.Labels{"transport": transport},
		}, func() float64 { return float64(get(c.PortStats())) })
	}
}

// devTLS makes a throwaway cluster CA and a certificate for node id in
// dir (replacing those of an earlier run) and returns the [cluster.tls]
// section that uses them: `troika dev` encrypts its cluster port like a
// production node. The certificate names loopback, localhost and sipIPs
// besides: the dev node's SIP TLS sockets show it too.
func devTLS(dir, id string, sipIPs ...net.IP) (*ClusterTLSConfig, error) {
	ca, err := certs.NewCA("troika dev CA (throwaway)", time.Now(), certs.CAValidity)
	if err != nil {
		return nil, fmt.Errorf("dev TLS: %w", err)
	}
	if err := certs.WriteCA(dir, ca, true); err != nil {
		return nil, fmt.Errorf("dev TLS: %w", err)
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, ip := range sipIPs {
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}
	is, err := ca.IssueNode(certs.NodeRequest{NodeID: id, IPs: ips, DNSNames: []string{"localhost"}})
	if err != nil {
		return nil, fmt.Errorf("dev TLS: %w", err)
	}
	cert, key, err := certs.WriteNode(dir, id, is, true)
	if err != nil {
		return nil, fmt.Errorf("dev TLS: %w", err)
	}
	return &ClusterTLSConfig{CAFile: filepath.Join(dir, certs.CACertFile), CertFile: cert, KeyFile: key}, nil
}
