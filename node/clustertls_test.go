package node

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/certs"
)

// newTestCA writes a cluster CA into dir.
func newTestCA(t *testing.T, dir string) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA("node test CA", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteCA(dir, ca, false); err != nil {
		t.Fatal(err)
	}
	return ca
}

// writeTestCerts writes node id's certificate, made by ca, into dir
// (where newTestCA wrote ca) and returns the [cluster.tls] section that
// uses them.
func writeTestCerts(t *testing.T, ca *certs.CA, dir, id string) *ClusterTLSConfig {
	t.Helper()
	is, err := ca.IssueNode(certs.NodeRequest{NodeID: id, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := certs.WriteNode(dir, id, is, false)
	if err != nil {
		t.Fatal(err)
	}
	return &ClusterTLSConfig{CAFile: filepath.Join(dir, certs.CACertFile), CertFile: cert, KeyFile: key}
}

// The [cluster.tls] keys: required files, the switches' defaults and
// combinations, and files that do not fit refused at start with the key
// and what to do.
func TestClusterTLSConfig(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	good := writeTestCerts(t, ca, dir, "a")
	other := writeTestCerts(t, ca, dir, "b")
	base := soloConfig + "[cluster.tls]\n"
	files := `ca_file = "` + good.CAFile + `"
cert_file = "` + good.CertFile + `"
key_file = "` + good.KeyFile + `"
`
	c, err := loadText(t, base+files)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := c.ClusterTLS(time.Now())
	if err != nil || !tc.VerifyIncoming || !tc.VerifyOutgoing {
		t.Fatalf("defaults: %+v, %v: want TLS both ways", tc, err)
	}
	c, err = loadText(t, base+files+"verify_incoming = false\n")
	if err != nil {
		t.Fatal(err)
	}
	if tc, err := c.ClusterTLS(time.Now()); err != nil || tc.VerifyIncoming || !tc.VerifyOutgoing {
		t.Fatalf("the transition: %+v, %v", tc, err)
	}

	for name, tc := range map[string]struct{ text, want string }{
		"no ca_file":       {base + "cert_file = \"x\"\nkey_file = \"y\"\n", "cluster.tls.ca_file: required"},
		"no key_file":      {base + "ca_file = \"x\"\ncert_file = \"y\"\n", "cluster.tls.key_file: required"},
		"in without out":   {base + files + "verify_outgoing = false\n", "verify_incoming = true needs verify_outgoing = true"},
		"typo":             {base + files + "verify_incomming = false\n", "cluster.tls.verify_incomming"},
		"another's cert":   {strings.Replace(base+files, good.CertFile, other.CertFile, 1), ""},
		"missing key file": {strings.Replace(base+files, good.KeyFile, filepath.Join(dir, "nope.pem"), 1), ""},
	} {
		c, err := loadText(t, tc.text)
		if tc.want != "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want it to say %q", name, err, tc.want)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// Files are read at start.
		if _, err := c.ClusterTLS(time.Now()); err == nil || !strings.Contains(err.Error(), "cluster.tls.") {
			t.Errorf("%s: %v, want an error naming the key", name, err)
		}
	}
}

// `troika dev` runs TLS on its cluster port with a throwaway CA and node
// certificate in its data directory, keys 0600.
func TestDevConfigTLS(t *testing.T) {
	dir := t.TempDir()
	c, err := DevConfig(DevOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster.TLS == nil {
		t.Fatal("dev config without [cluster.tls]")
	}
	tc, err := c.ClusterTLS(time.Now())
	if err != nil || !tc.VerifyIncoming || !tc.VerifyOutgoing {
		t.Fatalf("dev TLS: %+v, %v", tc, err)
	}
	for _, p := range []string{c.Cluster.TLS.KeyFile, filepath.Join(dir, "dev-tls", certs.CAKeyFile)} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v: want 0600", p, err, st.Mode().Perm())
		}
	}
	// A restart with the same data directory makes them afresh.
	if _, err := DevConfig(DevOptions{DataDir: dir}); err != nil {
		t.Fatalf("second start: %v", err)
	}
}

// `troika dev --sip-tls-port` serves SIP over TLS on the main address and
// the alias with the dev node's certificate, which names both addresses
// and chains to the dev CA; a port it cannot use is refused naming the
// flag.
func TestDevConfigSIPTLS(t *testing.T) {
	dir := t.TempDir()
	c, err := DevConfig(DevOptions{DataDir: dir, SIPAddress: "127.0.0.81", AliasAddress: "127.0.0.82", SIPTLSPort: 5061})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SIP.TLSPorts) != 1 || c.SIP.TLSPorts[0] != 5061 || c.SIP.TLSCert != c.Cluster.TLS.CertFile || c.SIP.TLSKey != c.Cluster.TLS.KeyFile {
		t.Fatalf("dev SIP TLS: ports %v cert %q key %q", c.SIP.TLSPorts, c.SIP.TLSCert, c.SIP.TLSKey)
	}
	tc, err := c.ClusterTLS(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.81", "127.0.0.82", "127.0.0.1", "localhost"} {
		if _, err := tc.Certificate.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: tc.CAs}); err != nil {
			t.Errorf("the dev certificate for %s: %v", host, err)
		}
	}
	if c, err := DevConfig(DevOptions{DataDir: t.TempDir()}); err != nil || len(c.SIP.TLSPorts) != 0 {
		t.Errorf("without SIPTLSPort: TLS ports %v, %v", c.SIP.TLSPorts, err)
	}
	for _, o := range []DevOptions{{SIPTLSPort: -1}, {SIPTLSPort: 70000}, {SIPPort: 5070, SIPTLSPort: 5070}} {
		o.DataDir = t.TempDir()
		if _, err := DevConfig(o); err == nil || !strings.Contains(err.Error(), "--sip-tls-port") {
			t.Errorf("%+v: %v, want an error naming --sip-tls-port", o, err)
		}
	}
}

// troika dev offers MD5 alone unless --algorithms says otherwise; a
// wrong name is refused naming the key.
func TestDevConfigAlgorithms(t *testing.T) {
	for _, c := range []struct {
		in, want []string
		err      string
	}{
		{nil, []string{"MD5"}, ""},
		{[]string{"SHA-256", "MD5"}, []string{"SHA-256", "MD5"}, ""},
		{[]string{"SHA-512"}, nil, "registrar.algorithms"},
	} {
		cfg, err := DevConfig(DevOptions{DataDir: t.TempDir(), Algorithms: c.in})
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v, want an error naming %s", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(cfg.Registrar.Algorithms, c.want) {
			t.Errorf("%q: %q, %v; want %q", c.in, cfg.Registrar.Algorithms, err, c.want)
		}
	}
}
