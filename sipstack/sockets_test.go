package sipstack

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

func socketsOn(ts *testServer, ip string) []string {
	var out []string
	for _, s := range ts.Sockets() {
		if strings.Contains(s, ":"+ip+":") {
			out = append(out, s)
		}
	}
	return out
}

// Alias sockets follow the replicated alias set: opened when an alias is
// added (main ports plus its extra ports), closed when it is removed; an
// address that cannot be bound is retried without disturbing the rest.
func TestAliasSocketsReconcile(t *testing.T) {
	t.Parallel()
	st := newTestState(t, false)
	ts := startServer(t, st, func(c *Config) {
		c.ServeAliases = true
		c.AliasRetry = 50 * time.Millisecond
	})
	aliasIP := testIP()
	port := testkit.FreePort(t, aliasIP)
	testkit.MustApply(t, st, &fsm.PutAlias{Alias: fsm.Alias{IP: aliasIP, Ports: fsm.AliasPorts{UDP: []int{port}, TCP: []int{port}, TLS: []int{port + 1}}}})
	extra := fmt.Sprintf("udp:%s:%d", aliasIP, port)
	testkit.WaitFor(t, 5*time.Second, "alias sockets", func() bool { return len(socketsOn(ts, aliasIP)) == 4 })
	if !contains(ts.Sockets(), extra) || !contains(ts.Sockets(), fmt.Sprintf("tcp:%s:%d", aliasIP, port)) {
		t.Fatalf("sockets %v", ts.Sockets())
	}
	if !strings.Contains(ts.logs.String(), "no TLS certificate") {
		t.Errorf("TLS alias ports without a certificate not reported")
	}
	if got := ts.counter("troika_sip_open_sockets"); got != 6 {
		t.Errorf("open_sockets gauge %v, want 6", got)
	}

	// A phone registering through the alias's extra port.
	p := newPhone(t, "UDP", strings.TrimPrefix(extra, "udp:"), "1001", "pw1001")
	wantStatus(t, p.register([]string{"<sip:1001@10.0.0.1>"}), 200, "OK")
	if bs := st.Bindings("1001", time.Now().UnixMilli()); len(bs) != 1 || bs[0].Ingress != extra {
		t.Errorf("bindings %+v", bs)
	}

	// Changing the ports closes the old extra socket and opens the new.
	port2 := testkit.FreePort(t, aliasIP)
	testkit.MustApply(t, st, &fsm.PutAlias{Alias: fsm.Alias{IP: aliasIP, Ports: fsm.AliasPorts{UDP: []int{port2}}}})
	testkit.WaitFor(t, 5*time.Second, "alias ports change", func() bool {
		return len(socketsOn(ts, aliasIP)) == 3 && contains(ts.Sockets(), fmt.Sprintf("udp:%s:%d", aliasIP, port2))
	})

	// Removing the alias closes its sockets; the main ones stay.
	testkit.MustApply(t, st, &fsm.DeleteAlias{IP: aliasIP})
	testkit.WaitFor(t, 5*time.Second, "alias sockets closed", func() bool { return len(socketsOn(ts, aliasIP)) == 0 })
	if len(socketsOn(ts, ts.ip)) != 2 {
		t.Errorf("main sockets %v", ts.Sockets())
	}
	if _, err := net.ListenPacket("udp", extra[4:]); err != nil {
		t.Errorf("closed alias port still bound: %v", err)
	}

	// An address this host does not have (three sockets: UDP and TCP on
	// the main ports, UDP 5070): retried, counted, harmless.
	testkit.MustApply(t, st, &fsm.PutAlias{Alias: fsm.Alias{IP: "192.0.2.77", Ports: fsm.AliasPorts{UDP: []int{5070}}}})
	testkit.WaitFor(t, 5*time.Second, "retries", func() bool { return ts.counter("troika_sip_socket_open_errors_total") >= 9 })
	if len(socketsOn(ts, ts.ip)) != 2 || len(socketsOn(ts, "192.0.2.77")) != 0 {
		t.Errorf("sockets %v", ts.Sockets())
	}
	if n := strings.Count(ts.logs.String(), "cannot open alias socket"); n != 3 {
		t.Errorf("logged %d open failures, want 3 (once per socket, not per retry)", n)
	}
}

// A configured socket that cannot be opened makes Run fail, with what it
// had opened closed again.
func TestRunFailsOnBusyPort(t *testing.T) {
	t.Parallel()
	ip := testIP()
	busy, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.LocalAddr().(*net.UDPAddr).Port
	st := newTestState(t, false)
	s, err := New(Config{Addresses: []string{ip}, TCPPorts: []int{0}, UDPPorts: []int{port}, Registrar: RegistrarConfig{Realm: "troika"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st, testkit.NewStore(st))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("udp:%s:%d", ip, port)) {
		t.Fatalf("Run: %v", err)
	}
	if len(s.Sockets()) != 0 {
		t.Errorf("sockets left open: %v", s.Sockets())
	}
	select {
	case <-s.Ready():
		t.Errorf("Ready closed although Run failed")
	default:
	}
}

// writeTestCert writes a certificate for 127.0.0.1 (signed by a test CA)
// and its key.
func writeTestCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	f := testkit.WriteTLSFiles(t, t.TempDir(), "127.0.0.1")
	return f.Cert, f.Key
}

// Registration over TLS: two REGISTERs on one connection; the binding
// says transport tls and the TLS socket as ingress.
func TestRegisterOverTLS(t *testing.T) {
	t.Parallel()
	cert, key := writeTestCert(t)
	if _, err := New(Config{Addresses: []string{"127.0.0.1"}, TLSPorts: []int{0}, TLSCert: cert + ".missing", TLSKey: key,
		Registrar: RegistrarConfig{Realm: "troika"}}, fsm.New(), testkit.NewStore(nil)); err == nil || !strings.Contains(err.Error(), "TLS certificate") {
		t.Errorf("missing certificate file: %v", err)
	}
	ts := startServer(t, nil, func(c *Config) {
		c.TLSPorts, c.TLSCert, c.TLSKey = []int{0}, cert, key
	})
	srv := ts.addr(t, "tls", ts.ip)
	conn, err := tls.Dial("tcp", srv, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	extra := "Contact: <sip:1001@10.0.0.1;transport=tls>\r\n"
	chal := streamExchange(t, conn, rawRegister(srv, "1001", "tls1", 1, "TLS", extra))
	wantStatus(t, chal, 401, "Unauthorized")
	res := streamExchange(t, conn, rawRegister(srv, "1001", "tls1", 2, "TLS", extra+rawAuth(t, chal, "SHA-256", "sip:"+srv, "1001", "pw1001")))
	wantStatus(t, res, 200, "OK")
	bs := ts.st.Bindings("1001", time.Now().UnixMilli())
	if len(bs) != 1 || bs[0].Transport != "tls" || bs[0].Ingress != "tls:"+srv || bs[0].Source != conn.LocalAddr().String() {
		t.Errorf("bindings %+v (client %s)", bs, conn.LocalAddr())
	}
}

// Credentials using an algorithm that was not offered are challenged
// again, not accepted (no downgrade to MD5).
func TestAlgorithmNotOffered(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, func(c *Config) { c.Registrar.Algorithms = []string{"SHA-256"} })
	srv := ts.addr(t, "udp", ts.ip)
	extra := "Contact: <sip:1001@10.0.0.1>\r\n"
	chal := rawExchange(t, srv, rawRegister(srv, "1001", "alg1", 1, "UDP", extra), 3*time.Second)
	wantStatus(t, chal, 401, "Unauthorized")
	if n := len(chal.GetHeaders("WWW-Authenticate")); n != 1 {
		t.Fatalf("%d challenges, want 1", n)
	}
	c, err := digest.ParseChallenge(chal.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		t.Fatal(err)
	}
	c.Algorithm = "MD5"
	cred, err := digest.Digest(c, digest.Options{Method: "REGISTER", URI: "sip:" + srv, Username: "1001", Password: "pw1001", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	res := rawExchange(t, srv, rawRegister(srv, "1001", "alg1", 2, "UDP", extra+"Authorization: "+cred.String()+"\r\n"), 3*time.Second)
	wantStatus(t, res, 401, "Unauthorized")
	if len(ts.st.Bindings("1001", time.Now().UnixMilli())) != 0 {
		t.Errorf("registered with an algorithm not offered")
	}
}

func options(server, callID string) string {
	host, _, _ := net.SplitHostPort(server)
	return "OPTIONS sip:" + server + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP @LOCAL@;branch=z9hG4bK" + callID + ";rport\r\n" +
		"From: <sip:probe@" + host + ">;tag=p\r\nTo: <sip:" + host + ">\r\nCall-ID: " + callID + "\r\n" +
		"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
}

// sipgo's UDP reader remembers every remote address forever; past
// MaxUDPPeers the reader is restarted and forgets them, and every request
// is still answered.
func TestUDPPeersBounded(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, func(c *Config) { c.MaxUDPPeers = 3 })
	srv := ts.addr(t, "udp", ts.ip)
	for i := 0; i < 10; i++ {
		res := rawExchange(t, srv, options(srv, fmt.Sprintf("peer%d", i)), 3*time.Second)
		wantStatus(t, res, 200, "OK")
	}
	if n := ts.counter("troika_sip_udp_reader_recycles_total"); n < 2 {
		t.Errorf("%v recycles, want >= 2", n)
	}
	ts.mu.Lock()
	sock := ts.sockets["udp:"+srv]
	ts.mu.Unlock()
	if n := sock.UA.TransportLayer().Pool("udp").Size(); n > 3+1 {
		t.Errorf("UDP pool holds %d entries, want <= %d", n, 3+1)
	}
}

// TCP connections are bounded per socket and closed when idle.
func TestTCPLimits(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, func(c *Config) {
		c.MaxConnsPerSocket = 2
		c.TCPIdleTimeout = 300 * time.Millisecond
	})
	srv := ts.addr(t, "tcp", ts.ip)
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		conns = append(conns, dial(t, "tcp", srv))
	}
	// The first two are served.
	res := streamExchange(t, conns[0], strings.ReplaceAll(options(srv, "tcp1"), "SIP/2.0/UDP", "SIP/2.0/TCP"))
	wantStatus(t, res, 200, "OK")
	third := dial(t, "tcp", srv)
	third.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("third connection: read %v, want EOF", err)
	}
	testkit.WaitFor(t, 5*time.Second, "refused counted", func() bool { return ts.counter("troika_sip_tcp_connections_refused_total") == 1 })
	// Idle ones are closed.
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("idle connection: %v", err)
		}
	}
	// Room again.
	c := dial(t, "tcp", srv)
	wantStatus(t, streamExchange(t, c, strings.ReplaceAll(options(srv, "tcp2"), "SIP/2.0/UDP", "SIP/2.0/TCP")), 200, "OK")
}

// ServeUDP serves any PacketConn (the dispatcher's virtual ones later) and
// names the socket after its local address.
func TestServeGivenPacketConn(t *testing.T) {
	t.Parallel()
	st := newTestState(t, false)
	s, err := New(Config{Addresses: []string{"127.0.0.1"}, UDPPorts: []int{0}, Registrar: RegistrarConfig{Realm: "troika"}}, st, testkit.NewStore(st))
	if err != nil {
		t.Fatal(err)
	}
	ip := testIP()
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := contextWithCancel(t)
	go func() { done <- s.ServeUDP(ctx, pc) }()
	name := "udp:" + pc.LocalAddr().String()
	testkit.WaitFor(t, 5*time.Second, "socket listed", func() bool { return contains(s.Sockets(), name) })
	wantStatus(t, rawExchange(t, pc.LocalAddr().String(), options(pc.LocalAddr().String(), "given"), 3*time.Second), 200, "OK")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeUDP: %v", err)
	}
	if len(s.Sockets()) != 0 {
		t.Errorf("socket still listed: %v", s.Sockets())
	}
	// Unspecified addresses are refused: the socket name is the ingress.
	any, _ := net.ListenPacket("udp", "0.0.0.0:0")
	defer any.Close()
	if err := s.ServeUDP(t.Context(), any); err == nil {
		t.Errorf("ServeUDP on 0.0.0.0 accepted")
	}
}
