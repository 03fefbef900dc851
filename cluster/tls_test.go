package cluster

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/certs"
	"github.com/troika-sip/troika/internal/testkit"
)

// testPKI is a cluster CA for tests.
type testPKI struct{ ca *certs.CA }

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := certs.NewCA("test cluster CA", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca}
}

// cert is a node certificate for id, made by this CA.
func (p *testPKI) cert(t testing.TB, id string) tls.Certificate {
	t.Helper()
	is, err := p.ca.IssueNode(certs.NodeRequest{NodeID: id, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := is.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tlsFor is node id's TLS configuration with a certificate of this CA.
func (p *testPKI) tlsFor(t testing.TB, id string, in, out bool) *TLSConfig {
	return &TLSConfig{CAs: p.ca.Pool(), Certificate: p.cert(t, id), VerifyIncoming: in, VerifyOutgoing: out}
}

// withTLS tunes the nodes of a test cluster to TLS with p's certificates.
func (p *testPKI) withTLS(t testing.TB, in, out bool) func(*Config) {
	return func(c *Config) { c.TLS = p.tlsFor(t, c.NodeID, in, out) }
}

// logTap keeps the lines logged through its logger (and passes them to
// the test's log).
type logTap struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logTap) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logTap) logger(t testing.TB) *slog.Logger {
	if t == nil {
		return slog.New(slog.NewTextHandler(l, nil))
	}
	return slog.New(slog.NewMultiHandler(slog.NewTextHandler(l, nil), testLogger(t).Handler()))
}

// lines returns the logged lines that contain every one of parts.
func (l *logTap) lines(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, line := range strings.Split(l.buf.String(), "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// Three nodes with TLS both ways form a cluster: writes through a
// follower are forwarded and replicated, the dispatch link connects, and
// every connection the ports accepted was TLS.
func TestTLSClusterReplicates(t *testing.T) {
	pki := newTestPKI(t)
	c, ctx, leader := newLedCluster(t, pki.withTLS(t, true, true), 45*time.Second)
	fol := c.follower(leader)
	ids := createAccounts(ctx, t, c.nodes[fol].node, "tls", 20)
	for _, tn := range c.nodes {
		testkit.WaitFor(t, 10*time.Second, "accounts on "+tn.cfg.NodeID, func() bool {
			for _, id := range ids {
				if _, ok := tn.state.Account(id); !ok {
					return false
				}
			}
			return true
		})
	}
	sinks := make([]*linkSink, len(c.nodes))
	links := make([]*Link, len(c.nodes))
	for i, tn := range c.nodes {
		sinks[i] = newLinkSink()
		links[i] = startLink(t, tn.node, sinks[i])
	}
	testkit.WaitFor(t, 10*time.Second, "link n1 -> n2 up", func() bool { return links[0].Connected("n2") })
	if !links[0].Send("n2", []byte("over TLS")) {
		t.Fatal("link message not queued")
	}
	testkit.WaitFor(t, 5*time.Second, "link message on n2", func() bool { return sinks[1].count("n1") == 1 })
	for _, tn := range c.nodes {
		st := tn.node.PortStats()
		t.Logf("%s: accepted %d TLS, %d plaintext; refused %v", tn.cfg.NodeID, st.AcceptedTLS, st.AcceptedPlaintext, st.Refused)
		if st.AcceptedTLS == 0 || st.AcceptedPlaintext != 0 {
			t.Errorf("%s accepted %d TLS and %d plaintext connections: want only TLS", tn.cfg.NodeID, st.AcceptedTLS, st.AcceptedPlaintext)
		}
		for r, k := range st.Refused {
			if k != 0 {
				t.Errorf("%s refused %d connections (%s)", tn.cfg.NodeID, k, r)
			}
		}
	}
}

// A node whose certificate another CA signed cannot join: the leader
// refuses each of its connections, counts every one (bad_cert) and logs
// the first with the remote address (the retries are not logged again
// within refusalLogEvery).
func TestTLSForeignCertCannotJoin(t *testing.T) {
	pki := newTestPKI(t)
	taps := map[string]*logTap{}
	var tapsMu sync.Mutex
	c, _, leader := newLedCluster(t, func(cfg *Config) {
		pki.withTLS(t, true, true)(cfg)
		tap := &logTap{}
		tapsMu.Lock()
		taps[cfg.NodeID] = tap
		tapsMu.Unlock()
		cfg.Logger = tap.logger(t)
	}, 45*time.Second)
	ln := c.nodes[leader].node
	foreign := newTestPKI(t)
	j := c.addNode("n4", func(cfg *Config) {
		cfg.Join = []string{ln.Addr()}
		// It trusts the cluster's CA (that is public), but its own
		// certificate comes from elsewhere.
		cfg.TLS = &TLSConfig{CAs: pki.ca.Pool(), Certificate: foreign.cert(t, "n4"), VerifyIncoming: true, VerifyOutgoing: true}
	})
	testkit.WaitFor(t, 15*time.Second, "three refusals of n4 by the leader", func() bool {
		return ln.PortStats().Refused[RefusedBadCert] >= 3
	})
	if v := ln.voters(); len(v) != 3 {
		t.Fatalf("voters %v: n4 got in", v)
	}
	if c.nodes[j].node.isMember() {
		t.Fatal("n4 thinks it is a member")
	}
	lines := taps[c.nodes[leader].cfg.NodeID].lines("refused a connection", "reason="+RefusedBadCert)
	if len(lines) != 1 || !strings.Contains(lines[0], "remote=127.0.0.1:") || !strings.Contains(lines[0], "unknown authority") {
		t.Fatalf("the leader logged %d refusal lines, want 1 with the remote address and the reason:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	t.Logf("the leader refused n4 %d times, logged once: %s", ln.PortStats().Refused[RefusedBadCert], lines[0])
}

// plainDialTo and tlsDialTo dial one node's port as a plaintext node, or
// as a TLS node with tc.
func tlsDialTo(addr string, key []byte, tc *TLSConfig, expect string) (net.Conn, error) {
	p := newPortAuth(key, tc, func(string) string { return expect }, slog.New(slog.DiscardHandler))
	return p.dial(addr, connForward, 2*time.Second)
}

// dialNoCert speaks TLS to addr without a client certificate and returns
// the error of the first read (the server's verdict).
func dialNoCert(t *testing.T, addr string) error {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, offered, err := readChallenge(conn); err != nil || !offered {
		t.Fatalf("challenge: offered %v, %v", offered, err)
	}
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		return err
	}
	_, err = tc.Read(make([]byte, 1))
	return err
}

// notNodeCert is a certificate of the CA that names no node.
func (p *testPKI) notNodeCert(t *testing.T) tls.Certificate {
	t.Helper()
	other, err := p.ca.IssueNode(certs.NodeRequest{NodeID: "x"}) // for a key pair
	if err != nil {
		t.Fatal(err)
	}
	pair, err := other.TLS()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "some client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca.Cert, other.Cert.PublicKey, p.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: pair.PrivateKey}
}

// A node that requires TLS (verify_incoming) refuses, counts and logs
// (once per reason) every dialer without the right credentials: in
// plaintext, without a certificate, with another CA's, with one that
// names no node, with the wrong cluster key inside TLS. A dialer that
// expected another node refuses the server. A good TLS dialer gets in,
// with TLS 1.3.
func TestTLSRefusals(t *testing.T) {
	pki := newTestPKI(t)
	tap := &logTap{}
	c := newCluster(t, 1, func(cfg *Config) {
		cfg.Bootstrap = true
		cfg.Peers = nil
		cfg.TLS = pki.tlsFor(t, cfg.NodeID, true, true)
		cfg.Logger = tap.logger(t)
	})
	n := c.nodes[0].node
	addr := n.Addr()
	foreign := newTestPKI(t)

	if _, err := dialAuth(addr, c.key, connForward, 2*time.Second); !errors.Is(err, errTLSRequired) {
		t.Errorf("plaintext dialer: %v, want the TLS-required refusal", err)
	}
	if err := dialNoCert(t, addr); err == nil {
		t.Error("a TLS dialer without a certificate got in")
	}
	other := &TLSConfig{CAs: pki.ca.Pool(), Certificate: foreign.cert(t, "n2"), VerifyIncoming: true, VerifyOutgoing: true}
	if _, err := tlsDialTo(addr, c.key, other, ""); err == nil || !strings.Contains(err.Error(), "refused this node's certificate") {
		t.Errorf("a certificate of another CA: %v, want a refusal that says so", err)
	}
	noName := &TLSConfig{CAs: pki.ca.Pool(), Certificate: pki.notNodeCert(t), VerifyIncoming: true, VerifyOutgoing: true}
	if _, err := tlsDialTo(addr, c.key, noName, ""); err == nil {
		t.Error("a certificate that names no node got in")
	}
	good := pki.tlsFor(t, "n2", true, true)
	if _, err := tlsDialTo(addr, newKey(t), good, ""); !errors.Is(err, errAuthRefused) {
		t.Errorf("a good certificate with the wrong cluster key: %v, want the key refused", err)
	}
	if _, err := tlsDialTo(addr, c.key, good, "n3"); !errors.Is(err, errWrongNode) {
		t.Errorf("dialing n3 and reaching n1: %v, want the dialer to refuse", err)
	}
	conn, err := tlsDialTo(addr, c.key, good, "n1")
	if err != nil {
		t.Fatalf("a good TLS dialer: %v", err)
	}
	tc, ok := conn.(*tls.Conn)
	if !ok || tc.ConnectionState().Version != tls.VersionTLS13 {
		t.Fatalf("a good TLS dialer got %T (version %#x), want TLS 1.3", conn, tc.ConnectionState().Version)
	}
	conn.Close()

	want := map[string]uint64{RefusedPlaintext: 1, RefusedNoCert: 1, RefusedBadCert: 1, RefusedNotNode: 1, RefusedClusterKey: 1, RefusedTLS: 1}
	// The node counts a connection once it has read the dialer's first
	// frame, which may be after the dialer's handshake returned.
	testkit.WaitFor(t, 5*time.Second, "every refusal and the good dialer counted", func() bool {
		st := n.PortStats()
		if st.AcceptedTLS < 1 {
			return false
		}
		for r, k := range want {
			if st.Refused[r] != k {
				return false
			}
		}
		return true
	})
	st := n.PortStats()
	if st.AcceptedTLS != 1 || st.AcceptedPlaintext != 0 {
		t.Errorf("accepted %d TLS, %d plaintext: want 1, 0", st.AcceptedTLS, st.AcceptedPlaintext)
	}
	for r := range want {
		if lines := tap.lines("refused a connection", "reason="+r, "remote=127.0.0.1:"); len(lines) != 1 {
			t.Errorf("reason %s logged %d times, want once:\n%s", r, len(lines), strings.Join(lines, "\n"))
		}
	}
	t.Logf("refusals: %v\n%s", st.Refused, strings.Join(tap.lines("refused a connection"), "\n"))
}

// A node in the transition (verify_incoming = false) accepts a
// plaintext dialer and a TLS dialer alike; a TLS dialer without a
// certificate is still refused.
func TestTLSTransitionAcceptsBoth(t *testing.T) {
	pki := newTestPKI(t)
	c := newCluster(t, 1, func(cfg *Config) {
		cfg.Bootstrap = true
		cfg.Peers = nil
		cfg.TLS = pki.tlsFor(t, cfg.NodeID, false, true)
	})
	n := c.nodes[0].node
	plain, err := dialAuth(n.Addr(), c.key, connForward, 2*time.Second)
	if err != nil {
		t.Fatalf("plaintext dialer: %v", err)
	}
	plain.Close()
	conn, err := tlsDialTo(n.Addr(), c.key, pki.tlsFor(t, "n2", false, true), "n1")
	if err != nil {
		t.Fatalf("TLS dialer: %v", err)
	}
	if _, ok := conn.(*tls.Conn); !ok {
		t.Fatalf("TLS dialer got a %T", conn)
	}
	conn.Close()
	if err := dialNoCert(t, n.Addr()); err == nil {
		t.Error("a TLS dialer without a certificate got in")
	}
	testkit.WaitFor(t, 5*time.Second, "counters", func() bool {
		st := n.PortStats()
		return st.AcceptedTLS == 1 && st.AcceptedPlaintext == 1 && st.Refused[RefusedNoCert] == 1
	})
}

// The runbook's procedure on a running plaintext cluster: one rolling
// restart with certificates and verify_incoming = false, verify_outgoing
// = true (a restarted node dials TLS to the restarted ones and plaintext
// to the others, and accepts both), then one with verify_incoming = true.
// Writes replicate at every step; at the end no connection is plaintext.
func TestTLSRollingEnable(t *testing.T) {
	pki := newTestPKI(t)
	c, ctx, _ := newLedCluster(t, nil, 90*time.Second)
	var acks []ackedBinding
	write := func(step string) {
		t.Helper()
		leader := c.waitLeader()
		b, err := register(ctx, c.nodes[c.follower(leader)].node, "roll", len(acks))
		if err != nil {
			t.Fatalf("%s: write through a follower: %v", step, err)
		}
		acks = append(acks, b)
		for _, tn := range c.nodes {
			testkit.WaitFor(t, 10*time.Second, step+": writes on "+tn.cfg.NodeID, func() bool { return missing(tn.state, acks) == 0 })
		}
	}
	if err := createAccount(ctx, c.nodes[0].node, "roll"); err != nil {
		t.Fatal(err)
	}
	write("plaintext")
	for round, in := range []bool{false, true} {
		for i, tn := range c.nodes {
			c.stop(i)
			tn.cfg.TLS = pki.tlsFor(t, tn.cfg.NodeID, in, true)
			c.start(i)
			write(tn.cfg.NodeID + " restarted in round " + string(rune('1'+round)))
			if round == 0 && i == 0 {
				st := tn.node.PortStats()
				if st.AcceptedPlaintext == 0 {
					t.Errorf("the first node with TLS accepted no plaintext connection from the others: %+v", st)
				}
			}
		}
	}
	for _, tn := range c.nodes {
		st := tn.node.PortStats()
		t.Logf("%s after the second round: accepted %d TLS, %d plaintext, refused %v", tn.cfg.NodeID, st.AcceptedTLS, st.AcceptedPlaintext, st.Refused)
		if st.AcceptedTLS == 0 || st.AcceptedPlaintext != 0 || st.Refused[RefusedPlaintext] != 0 {
			t.Errorf("%s: %+v: want TLS connections only, none refused", tn.cfg.NodeID, st)
		}
	}
}

// The refusal log writes one line per host and reason per interval, and
// the next line counts what it did not log.
func TestRefusalLogRateLimit(t *testing.T) {
	tap := &logTap{}
	var clock testkit.Clock
	l := newRefusalLog(tap.logger(nil))
	l.now = clock.Now
	r := &refusal{reason: RefusedBadCert, err: errors.New("x509: unknown authority")}
	for range 5 {
		l.note("192.0.2.1:4000", r)
	}
	l.note("192.0.2.2:4000", r)
	l.note("192.0.2.1:4001", &refusal{reason: RefusedPlaintext, err: errors.New("plaintext")})
	if got := len(tap.lines("refused a connection")); got != 3 {
		t.Fatalf("%d lines, want 3 (one per host and reason)", got)
	}
	clock.Advance(refusalLogEvery)
	l.note("192.0.2.1:4002", r)
	if got := tap.lines("remote=192.0.2.1:4002", "not_logged_since_last=4"); len(got) != 1 {
		t.Fatalf("after the interval: %q", tap.lines("refused a connection"))
	}
	// A scan from many addresses: beyond refusalLogHosts, the others
	// share one entry per reason.
	before := len(tap.lines("refused a connection"))
	for i := range 2 * refusalLogHosts {
		l.note(net.JoinHostPort(net.IPv4(10, 0, byte(i>>8), byte(i)).String(), "1"), r)
	}
	if n := l.gate.Len(); n > refusalLogHosts+numRefusalReasons {
		t.Fatalf("%d hosts remembered, bound %d", n, refusalLogHosts)
	}
	if got := len(tap.lines("refused a connection")) - before; got > refusalLogHosts+1 {
		t.Fatalf("%d lines for %d hosts", got, 2*refusalLogHosts)
	}
}

// Bad TLS settings are refused, saying what to do.
func TestTLSConfigValidation(t *testing.T) {
	pki := newTestPKI(t)
	cases := []struct {
		name string
		tc   *TLSConfig
		want string
	}{
		{"incoming without outgoing", pki.tlsFor(t, "n1", true, false), "verify_incoming = true needs verify_outgoing = true"},
		{"another node's certificate", pki.tlsFor(t, "n2", true, true), `names node "n2", not this node "n1"`},
		{"no CA", &TLSConfig{Certificate: pki.cert(t, "n1")}, "no cluster CA"},
	}
	for _, tc := range cases {
		cfg := Config{NodeID: "n1", DataDir: "x", BindAddr: "127.0.0.1:0", Key: newKey(t), TLS: tc.tc}
		if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.name, err, tc.want)
		}
	}
}

// Against a node without [cluster.tls]: a node that requires TLS will
// not dial it in plaintext, one in the transition does; a TLS ClientHello
// it did not offer is refused as such.
func TestTLSAgainstPlaintextNode(t *testing.T) {
	pki := newTestPKI(t)
	c := newCluster(t, 1, func(cfg *Config) { cfg.Bootstrap = true; cfg.Peers = nil })
	n := c.nodes[0].node
	if _, err := tlsDialTo(n.Addr(), c.key, pki.tlsFor(t, "n2", true, true), ""); err == nil || !strings.Contains(err.Error(), "offers no TLS") {
		t.Errorf("a node requiring TLS dialing a plaintext node: %v, want a refusal that says why", err)
	}
	conn, err := tlsDialTo(n.Addr(), c.key, pki.tlsFor(t, "n2", false, true), "")
	if err != nil {
		t.Fatalf("a node in the transition dialing a plaintext node: %v", err)
	}
	if _, isTLS := conn.(*tls.Conn); isTLS {
		t.Fatal("TLS with a node that has no certificate")
	}
	conn.Close()
	raw, err := net.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	if _, offered, err := readChallenge(raw); err != nil || offered {
		t.Fatalf("a plaintext node's challenge: offered %v, %v", offered, err)
	}
	if err := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}).Handshake(); err == nil {
		t.Fatal("a plaintext node completed a TLS handshake")
	}
	testkit.WaitFor(t, 5*time.Second, "the refusal counted", func() bool {
		st := n.PortStats()
		return st.Refused[RefusedTLSNotConfigured] == 1 && st.AcceptedPlaintext == 1
	})
}
