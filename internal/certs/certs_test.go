package certs

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustCA(t *testing.T, dir string) *CA {
	t.Helper()
	ca, err := NewCA("test CA", time.Now(), CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	if dir != "" {
		if err := WriteCA(dir, ca, false); err != nil {
			t.Fatal(err)
		}
	}
	return ca
}

func mustNode(t *testing.T, ca *CA, dir, id string, req NodeRequest) Files {
	t.Helper()
	req.NodeID = id
	is, err := ca.IssueNode(req)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := WriteNode(dir, id, is, true)
	if err != nil {
		t.Fatal(err)
	}
	return Files{CA: filepath.Join(dir, CACertFile), Cert: cert, Key: key}
}

// A CA and a node certificate written to files load back, name their
// node, carry what the CLI promises (P-256, lifetimes, both usages, the
// SANs) and keep their keys private.
func TestCreateWriteLoad(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t, dir)
	f := mustNode(t, ca, dir, "sip1", NodeRequest{IPs: []net.IP{net.ParseIP("192.0.2.1")}, DNSNames: []string{"sip1.example.net"}})
	l, err := Load(f, "sip1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf := l.Cert.Leaf
	if l.NodeID != "sip1" || leaf.Subject.CommonName != "sip1" {
		t.Fatalf("node id %q, CN %q", l.NodeID, leaf.Subject.CommonName)
	}
	if got := leaf.URIs[0].String(); got != "troika-node:sip1" {
		t.Fatalf("URI SAN %q", got)
	}
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("192.0.2.1")) || len(leaf.DNSNames) != 2 {
		t.Fatalf("SANs: %v %v", leaf.IPAddresses, leaf.DNSNames)
	}
	if leaf.PublicKeyAlgorithm != x509.ECDSA || ca.Cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatal("not ECDSA")
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < NodeValidity || d > NodeValidity+2*time.Hour {
		t.Fatalf("node certificate valid for %s", d)
	}
	if d := ca.Cert.NotAfter.Sub(ca.Cert.NotBefore); d < CAValidity || d > CAValidity+2*time.Hour {
		t.Fatalf("CA valid for %s", d)
	}
	for _, p := range []string{f.Key, filepath.Join(dir, CAKeyFile)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, st.Mode().Perm())
		}
	}
	back, err := ReadCA(dir)
	if err != nil || !back.Cert.Equal(ca.Cert) {
		t.Fatalf("ReadCA: %v", err)
	}
	if err := WriteCA(dir, ca, false); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("overwriting a CA: %v", err)
	}
}

// Load refuses files that do not fit, and says which key and what to do.
func TestLoadRefuses(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t, dir)
	good := mustNode(t, ca, dir, "sip1", NodeRequest{})
	otherDir := t.TempDir()
	other := mustCA(t, otherDir)
	foreign := mustNode(t, other, otherDir, "sip1", NodeRequest{})
	two := mustNode(t, ca, dir, "sip2", NodeRequest{})

	cases := []struct {
		name string
		f    Files
		id   string
		now  time.Time
		want string
	}{
		{"another node's certificate", good, "sip9", time.Now(), `names node "sip1", but this node's node_id is "sip9"`},
		{"signed by another CA", Files{CA: good.CA, Cert: foreign.Cert, Key: foreign.Key}, "sip1", time.Now(), "signed by another CA"},
		{"expired", good, "sip1", time.Now().Add(NodeValidity + 24*time.Hour), "make a new node certificate"},
		{"key of another certificate", Files{CA: good.CA, Cert: good.Cert, Key: two.Key}, "sip1", time.Now(), "key_file"},
		{"node certificate as CA", Files{CA: good.Cert, Cert: good.Cert, Key: good.Key}, "sip1", time.Now(), "is not a CA"},
		{"missing CA file", Files{CA: filepath.Join(dir, "nope.pem"), Cert: good.Cert, Key: good.Key}, "sip1", time.Now(), "cluster.tls.ca_file"},
	}
	for _, c := range cases {
		_, err := Load(c.f, c.id, c.now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to say %q", c.name, err, c.want)
		}
	}
}

// NodeID accepts exactly one well-formed troika-node URI.
func TestNodeID(t *testing.T) {
	ca := mustCA(t, "")
	is, err := ca.IssueNode(NodeRequest{NodeID: "n-1.a_b"})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := NodeID(is.Cert); err != nil || id != "n-1.a_b" {
		t.Fatalf("NodeID = %q, %v", id, err)
	}
	if _, err := NodeID(ca.Cert); err == nil {
		t.Fatal("the CA certificate names a node")
	}
	if _, err := ca.IssueNode(NodeRequest{NodeID: "bad id"}); err == nil {
		t.Fatal("a node id with a space was accepted")
	}
}
