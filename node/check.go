package node

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/troika-sip/troika/admin"
)

// Check reads every file the configuration names (certificates, keys)
// and describes what a node started from it would do: the addresses it
// would listen on, the real addresses it would take, the peers it would
// reach. It starts nothing and changes nothing (`troika agent --check`).
// The error names the first key that is wrong; warnings are in the
// description, marked "warning:".
func (c *Config) Check(now time.Time) ([]string, error) {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }

	add("node %s, data in %s%s", c.NodeID, c.DataDir, existsNote(c.DataDir))
	add("logs: %s, level %s", c.LogFormat, c.LogLevel)

	peers, err := c.ClusterPeers()
	if err != nil {
		return nil, err
	}
	add("cluster port %s (raft, write forwarding, dispatch link)", c.Cluster.Bind)
	switch {
	case c.Cluster.Bootstrap && len(peers) == 0:
		add("  bootstraps a new one-node cluster on first start")
	case len(peers) > 0:
		var ps []string
		for _, p := range peers {
			ps = append(ps, p.ID+"="+p.Addr)
		}
		add("  peers: %s", strings.Join(ps, ", "))
	case len(c.Cluster.Join) > 0:
		add("  joins the cluster through %s", strings.Join(c.Cluster.Join, ", "))
	}
	tc, err := c.ClusterTLS(now)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls: %w", err)
	}
	if tc == nil {
		add("  warning: plaintext, authenticated by the cluster key only: set [cluster.tls] (deploy/runbook.md)")
	} else {
		add("  TLS (verify_incoming %v, verify_outgoing %v), certificate valid until %s", tc.VerifyIncoming, tc.VerifyOutgoing,
			tc.Certificate.Leaf.NotAfter.Format(time.DateOnly))
	}

	var socks []string
	for _, a := range c.SIP.Addresses {
		for _, p := range c.SIP.UDPPorts {
			socks = append(socks, fmt.Sprintf("udp:%s:%d", a, p))
		}
		for _, p := range c.SIP.TCPPorts {
			socks = append(socks, fmt.Sprintf("tcp:%s:%d", a, p))
		}
		for _, p := range c.SIP.TLSPorts {
			socks = append(socks, fmt.Sprintf("tls:%s:%d", a, p))
		}
	}
	add("SIP sockets: %s", strings.Join(socks, ", "))
	if len(c.SIP.TLSPorts) > 0 {
		if _, err := tls.LoadX509KeyPair(c.SIP.TLSCert, c.SIP.TLSKey); err != nil {
			return nil, fmt.Errorf("sip.tls_cert, sip.tls_key: %w", err)
		}
	}
	if c.SIP.ServeAliases {
		add("  and the IP aliases of the replicated state, on the addresses this node holds")
	}
	add("registrar: realm %q, digest %s", c.Registrar.Realm, strings.Join(c.Registrar.Algorithms, ", "))
	add("%s", c.keepaliveSummary())

	if v := c.VIP; v != nil {
		iface := v.Interface
		if _, err := net.InterfaceByName(iface); err != nil {
			add("warning: vip.interface %q is not on this host (%v): the node would fail to take addresses", iface, err)
		}
		add("TAKES REAL ADDRESSES on %s when the cluster places them here: %s, and the IP aliases of the replicated state",
			iface, strings.Join(v.Addresses, ", "))
		add("  (gratuitous ARP announces each address taken: run this only where those addresses belong to this cluster)")
	} else {
		add("no [vip] section: this node takes no address")
	}

	ac := c.Admin
	scheme := "http"
	if ac.TLS() {
		if _, err := admin.ServerTLS(ac.TLSCertFile, ac.TLSKeyFile, ac.TLSClientCAFile); err != nil {
			return nil, fmt.Errorf("admin.tls_cert_file, admin.tls_key_file, admin.tls_client_ca_file: %w", err)
		}
		scheme = "https"
	}
	var toks []string
	for _, t := range ac.APITokens() {
		toks = append(toks, fmt.Sprintf("%s (%s)", t.Name, t.Scope))
	}
	add("admin API %s://%s, tokens: %s", scheme, ac.Listen, strings.Join(toks, ", "))
	if !ac.TLS() && !loopback(ac.Listen) {
		add("  warning: plain HTTP on a non-loopback address: tokens cross the network in clear (set admin.tls_cert_file)")
	}
	return out, nil
}

func existsNote(dir string) string {
	if _, err := os.Stat(dir); err != nil {
		return " (created at first start)"
	}
	return ""
}
