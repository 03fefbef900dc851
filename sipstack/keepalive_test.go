package sipstack

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/baresiptest"
	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/dispatch"
)

// The NAT keepalive (sipstack/keepalive): OPTIONS to each binding from
// the socket it registered through, on the test clock.

const testKeepalive = 30 * time.Second

// keepaliveConfig pings every 30 s of the test clock, looking every
// 10 ms of real time.
func keepaliveConfig(failures int, remove bool) KeepaliveConfig {
	return KeepaliveConfig{Interval: testKeepalive, Timeout: 5 * time.Second, Failures: failures, RemoveUnreachable: remove,
		Tick: 10 * time.Millisecond}
}

// nextPing moves the clock to the first ping of bindings just
// registered: past the keepalive's next reading of the replicated
// bindings (every 5 s), and, once it has read them, two intervals on (a
// fresh binding is first pinged at its phase in the interval after the
// one that follows its REGISTER).
func nextPing(t *testing.T, ts *testServer, bindings int) {
	t.Helper()
	ts.clock.Advance(5 * time.Second)
	testkit.WaitFor(t, 5*time.Second, "the keepalive to know the bindings", func() bool {
		return ts.counter("troika_sip_keepalive_bindings") == float64(bindings)
	})
	ts.clock.Advance(2 * testKeepalive)
}

// readPing reads the next datagram of pc: an OPTIONS, and where it came
// from.
func readPing(t *testing.T, pc *net.UDPConn) (*sip.Request, *net.UDPAddr) {
	t.Helper()
	buf := make([]byte, 65536)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := pc.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no keepalive reached the phone: %v", err)
	}
	m, err := sip.ParseMessage(buf[:n])
	if err != nil {
		t.Fatalf("unparseable keepalive %q: %v", buf[:n], err)
	}
	req, ok := m.(*sip.Request)
	if !ok || req.Method != sip.OPTIONS {
		t.Fatalf("the phone got %q, want an OPTIONS", buf[:n])
	}
	return req, from
}

// A phone registered through an alias's extra port (SIPp registers it)
// gets its keepalive OPTIONS from that alias socket, the address and
// port it talks to (what keeps its NAT pinhole open), addressed to its
// contact; its answer, a 405 here, counts as alive.
func TestKeepaliveFromAliasSocket(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	st := newTestState(t, false)
	aliasIP := testIP()
	aliasPort := testkit.FreePort(t, aliasIP)
	testkit.MustApply(t, st, &fsm.PutAlias{Alias: fsm.Alias{IP: aliasIP, Ports: fsm.AliasPorts{UDP: []int{aliasPort}}}})
	ts := startServer(t, st, func(c *Config) {
		c.ServeAliases = true
		c.Registrar.Algorithms = []string{"MD5"} // SIPp answers MD5 only
		c.Keepalive = keepaliveConfig(3, false)
	})
	alias := net.JoinHostPort(aliasIP, strconv.Itoa(aliasPort))
	testkit.WaitFor(t, 5*time.Second, "the alias socket", func() bool { return contains(ts.Sockets(), "udp:"+alias) })

	phoneIP := testIP()
	phonePort := testkit.FreePort(t, phoneIP)
	sippRegister(t, alias, phoneIP, phonePort, "1001")
	bs := st.Bindings("1001", ts.clock.Now().UnixMilli())
	if len(bs) != 1 || bs[0].Ingress != "udp:"+alias {
		t.Fatalf("bindings %+v, want one through udp:%s", bs, alias)
	}
	// The phone keeps its address and now listens there itself.
	phone, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(phoneIP), Port: phonePort})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()

	nextPing(t, ts, 1)
	req, from := readPing(t, phone)
	if from.String() != alias {
		t.Errorf("keepalive came from %s, want the alias socket %s (the main socket is %s)", from, alias, ts.addr(t, "udp", ts.ip))
	}
	if got, want := req.Recipient.String(), fmt.Sprintf("sip:1001@%s:%d", phoneIP, phonePort); got != want {
		t.Errorf("Request-URI %s, want the contact %s", got, want)
	}
	if via := req.Via(); via.Host != aliasIP || via.Port != aliasPort {
		t.Errorf("Via %s, want the alias socket", via.Value())
	}
	if node, ok := dispatch.MarkedNode(req.CallID().Value()); !ok || node != "test" {
		t.Errorf("Call-ID %s does not name the node (its answer must come back to it)", req.CallID().Value())
	}
	if _, err := phone.WriteToUDP([]byte(responseText(req, 405, "Method Not Allowed", "phone", "", "")), from); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the answer counted", func() bool {
		return ts.counter("troika_sip_keepalive_total", "result", "ok") == 1
	})
	s, ok := ts.KeepaliveStatus(bs[0])
	if !ok || !s.Reachable || s.LastSeen.Before(ts.clock.Now().Add(-time.Second)) {
		t.Errorf("status %+v %v: want reachable, seen just now", s, ok)
	}
	if n := ts.counter("troika_sip_keepalive_total", "result", "timeout") + ts.counter("troika_sip_keepalive_total", "result", "error"); n != 0 {
		t.Errorf("%v pings failed", n)
	}
}

// startSIPpUAS runs a SIPp server scenario on ip:port; stop ends it (and
// the test's end does).
func startSIPpUAS(t testing.TB, scenario, ip string, port int) (log func() string, stop func()) {
	t.Helper()
	msgs := filepath.Join(t.TempDir(), "messages.log")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "sipp", "-sf", scenario, "-i", ip, "-p", strconv.Itoa(port),
		"-nostdin", "-fd", "1", "-trace_msg", "-message_file", msgs)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("SIPp did not stop")
		}
	}
	t.Cleanup(stop)
	sipptest.WaitListening(t, "udp", ip, port)
	return func() string {
		b, _ := os.ReadFile(msgs)
		return string(b)
	}, stop
}

// A SIPp phone answers its keepalives; once it is gone, two unanswered
// pings in a row mark its binding unreachable: the gauge, an INFO line
// naming account, contact and ingress, and the node's view of the
// binding say so. When it registers again it is reachable again.
func TestKeepaliveMarksUnreachable(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	ts := startServer(t, nil, func(c *Config) {
		c.Registrar.Algorithms = []string{"MD5"}
		c.Keepalive = keepaliveConfig(2, false)
	})
	server := ts.addr(t, "udp", ts.ip)
	phoneIP := testIP()
	phonePort := testkit.FreePort(t, phoneIP)
	sippRegister(t, server, phoneIP, phonePort, "1001")
	log, stop := startSIPpUAS(t, "testdata/options_uas.xml", phoneIP, phonePort)

	nextPing(t, ts, 1)
	testkit.WaitFor(t, 10*time.Second, "SIPp's answer counted", func() bool {
		return ts.counter("troika_sip_keepalive_total", "result", "ok") == 1
	})
	if !strings.Contains(log(), fmt.Sprintf("OPTIONS sip:1001@%s:%d SIP/2.0", phoneIP, phonePort)) {
		t.Errorf("SIPp's log shows no OPTIONS to its contact:\n%s", tail(log(), 2000))
	}
	b := st1001(t, ts)
	if s, ok := ts.KeepaliveStatus(b); !ok || !s.Reachable {
		t.Fatalf("status %+v %v after an answer", s, ok)
	}

	stop() // the phone is gone; its binding is not
	for i := 1; i <= 2; i++ {
		if i == 1 {
			ts.clock.Advance(testKeepalive)
		} else {
			ts.clock.Advance(testKeepalive - 5*time.Second) // the next phase
		}
		testkit.WaitFor(t, 5*time.Second, "a ping waiting for an answer", func() bool {
			return ts.counter("troika_sip_keepalive_pending") == 1
		})
		ts.clock.Advance(5 * time.Second) // its timeout
		testkit.WaitFor(t, 5*time.Second, "the ping timed out", func() bool {
			return ts.counter("troika_sip_keepalive_total", "result", "timeout") == float64(i)
		})
		if i == 1 && ts.counter("troika_sip_keepalive_unreachable") != 0 {
			t.Fatal("unreachable after one unanswered ping, want two")
		}
	}
	if got := ts.counter("troika_sip_keepalive_unreachable"); got != 1 {
		t.Fatalf("unreachable gauge %v, want 1", got)
	}
	s, ok := ts.KeepaliveStatus(b)
	if !ok || s.Reachable || s.Unanswered != 2 {
		t.Errorf("status %+v %v: want unreachable after 2 unanswered", s, ok)
	}
	logs := ts.logs.String()
	line := ""
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "unreachable") && strings.Contains(l, "level=INFO") {
			line = l
		}
	}
	for _, want := range []string{"account=1001", fmt.Sprintf("contact=sip:1001@%s:%d", phoneIP, phonePort), "ingress=udp:" + server} {
		if !strings.Contains(line, want) {
			t.Errorf("the unreachable log line %q lacks %s", line, want)
		}
	}
	if len(st1001All(ts)) != 1 {
		t.Error("the binding was removed without keepalive_remove_unreachable")
	}

	// It registers again: reachable.
	sippRegister(t, server, phoneIP, phonePort, "1001")
	ts.clock.Advance(10 * time.Second) // the keepalive rereads the bindings every 5 s
	testkit.WaitFor(t, 5*time.Second, "reachable after a new REGISTER", func() bool {
		return ts.counter("troika_sip_keepalive_unreachable") == 0
	})
	if !strings.Contains(ts.logs.String(), "reachable again: it registered again") {
		t.Error("no log line for the phone coming back")
	}
}

func st1001All(ts *testServer) []fsm.Binding {
	return ts.st.Bindings("1001", ts.clock.Now().UnixMilli())
}

func st1001(t *testing.T, ts *testServer) fsm.Binding {
	t.Helper()
	bs := st1001All(ts)
	if len(bs) != 1 {
		t.Fatalf("bindings of 1001: %+v", bs)
	}
	return bs[0]
}

// With keepalive_remove_unreachable, a binding that stops answering is
// removed through the replicated write path, as an unregistration; the
// phone registering again later (the next CSeq of its Call-ID) gets a
// new binding.
func TestKeepaliveRemovesUnreachable(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, func(c *Config) { c.Keepalive = keepaliveConfig(1, true) })
	server := ts.addr(t, "udp", ts.ip)
	phone := newUDPPhone(t, server) // reads, never answers OPTIONS
	contact := "Contact: <sip:1001@" + phone.conn.LocalAddr().String() + ">\r\nExpires: 600\r\n"
	register := func(cseq int) {
		chal := exchangeIgnoringPings(t, phone, rawRegister(server, "1001", "gone@phone", cseq, "UDP", contact))
		wantStatus(t, chal, 401, "")
		res := exchangeIgnoringPings(t, phone, rawRegister(server, "1001", "gone@phone", cseq+1, "UDP", contact+rawAuth(t, chal, "SHA-256", "sip:"+server, "1001", "pw1001")))
		wantStatus(t, res, 200, "")
	}
	register(1)
	writes := ts.store.Writes.Load()
	nextPing(t, ts, 1)
	testkit.WaitFor(t, 5*time.Second, "a ping waiting for an answer", func() bool {
		return ts.counter("troika_sip_keepalive_pending") == 1
	})
	ts.clock.Advance(5 * time.Second)
	testkit.WaitFor(t, 5*time.Second, "the binding removed", func() bool { return len(st1001All(ts)) == 0 })
	if got := ts.counter("troika_sip_keepalive_removed_total"); got != 1 {
		t.Errorf("removed counter %v", got)
	}
	if w := ts.store.Writes.Load() - writes; w != 1 {
		t.Errorf("%d replicated writes for one ping and one removal, want 1 (pings write nothing)", w)
	}
	if !strings.Contains(ts.logs.String(), "removed an unreachable registration") {
		t.Error("the removal is not logged")
	}
	// The phone's next refresh (CSeq 3 of its Call-ID) registers it anew.
	register(3)
	if len(st1001All(ts)) != 1 {
		t.Fatal("the phone could not register again after its binding was removed")
	}
}

// exchangeIgnoringPings sends msg from p and returns the response,
// passing over the keepalive OPTIONS (and their retransmissions) that
// reach p meanwhile.
func exchangeIgnoringPings(t *testing.T, p *udpPhone, msg string) *sip.Response {
	t.Helper()
	msg = strings.ReplaceAll(msg, "@LOCAL@", p.conn.LocalAddr().String())
	if _, err := p.conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			t.Fatalf("no answer from %s: %v", p.conn.RemoteAddr(), err)
		}
		m, err := sip.ParseMessage(buf[:n])
		if err != nil {
			t.Fatalf("unparseable message %q: %v", buf[:n], err)
		}
		if res, ok := m.(*sip.Response); ok {
			return res
		}
	}
}

// Phones on TCP and TLS: a double-CRLF ping of their own gets a single
// CRLF (RFC 5626 §3.5.1); the keepalive OPTIONS reaches them over the
// connection they opened; once that connection is gone nothing can reach
// them, and the keepalive counts it (result "error") without trying to
// open one to a phone behind NAT.
func TestKeepaliveOverStreams(t *testing.T) {
	t.Parallel()
	cert, key := writeTestCert(t)
	for _, network := range []string{"tcp", "tls"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, nil, func(c *Config) {
				c.TLSPorts, c.TLSCert, c.TLSKey = []int{0}, cert, key
				c.Keepalive = keepaliveConfig(1, false)
			})
			server := ts.addr(t, network, ts.ip)
			var conn net.Conn
			var err error
			if network == "tls" {
				conn, err = tls.Dial("tcp", server, &tls.Config{InsecureSkipVerify: true})
			} else {
				conn, err = net.Dial("tcp", server)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			up := strings.ToUpper(network)
			contact := "Contact: <sip:1001@" + conn.LocalAddr().String() + ";transport=" + network + ">\r\n"
			chal := streamExchange(t, conn, rawRegister(server, "1001", network+"-ka", 1, up, contact))
			wantStatus(t, chal, 401, "")
			wantStatus(t, streamExchange(t, conn, rawRegister(server, "1001", network+"-ka", 2, up, contact+rawAuth(t, chal, "SHA-256", "sip:"+server, "1001", "pw1001"))), 200, "")

			r := bufio.NewReader(conn)
			if _, err := conn.Write([]byte("\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			pong := make([]byte, 2)
			if _, err := io.ReadFull(r, pong); err != nil || string(pong) != "\r\n" {
				t.Fatalf("double-CRLF ping answered with %q, %v; want one CRLF", pong, err)
			}

			nextPing(t, ts, 1)
			req := readStreamRequest(t, conn, r)
			if req.Method != sip.OPTIONS || !strings.Contains(req.Via().Value(), up+" "+server) {
				t.Fatalf("got %s with Via %s over the phone's connection, want a keepalive OPTIONS from %s", req.Method, req.Via().Value(), server)
			}
			if _, err := conn.Write([]byte(responseText(req, 200, "OK", "phone", "", ""))); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, 5*time.Second, "the answer counted", func() bool {
				return ts.counter("troika_sip_keepalive_total", "result", "ok") == 1
			})

			conn.Close()
			sock := ts.Named(network + ":" + server)
			testkit.WaitFor(t, 5*time.Second, "the server to drop the closed connection", func() bool {
				_, err := sock.UA.TransportLayer().GetConnection(network, conn.LocalAddr().String())
				return err != nil
			})
			ts.clock.Advance(testKeepalive)
			testkit.WaitFor(t, 5*time.Second, "the phone unreachable", func() bool {
				return ts.counter("troika_sip_keepalive_unreachable") == 1
			})
			if got := ts.counter("troika_sip_keepalive_total", "result", "error"); got != 1 {
				t.Errorf("%v errors counted, want 1 (no connection)", got)
			}
			if got := ts.counter("troika_sip_keepalive_pending"); got != 0 {
				t.Errorf("%v pings waiting: one was sent without a connection", got)
			}
		})
	}
}

// readStreamRequest reads one request from a stream.
func readStreamRequest(t *testing.T, c net.Conn, r *bufio.Reader) *sip.Request {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	m := readStreamMessage(t, r)
	req, ok := m.(*sip.Request)
	if !ok {
		t.Fatalf("got %q, want a request", m.String())
	}
	return req
}

// BenchmarkKeepalivePings measures what the keepalive costs the node
// that pings: rounds of OPTIONS to 2,000 bindings (registered ten
// minutes ago), all answered by a SIPp phone, and the process's CPU time
// per ping (user and system; the SIPp process excluded, the benchmark's
// polling of the metrics and the pinger's bookkeeping at a clock running
// fast included).
func BenchmarkKeepalivePings(b *testing.B) {
	sipptest.Need(b)
	const n = 2000
	st := newTestState(b, false)
	ts := startServer(b, st, func(c *Config) {
		c.Keepalive = KeepaliveConfig{Interval: testKeepalive, Timeout: testKeepalive, Tick: 10 * time.Millisecond, MaxPerSecond: 1 << 20}
	})
	server := ts.addr(b, "udp", ts.ip)
	phoneIP := testIP()
	phonePort := testkit.FreePort(b, phoneIP)
	phone := net.JoinHostPort(phoneIP, strconv.Itoa(phonePort))
	now := ts.clock.Now().UnixMilli()
	for i := range n {
		id := strconv.Itoa(100000 + i)
		testkit.MustApply(b, st, &fsm.CreateAccount{Now: 1, Account: fsm.Account{ID: id, Credentials: testkit.Creds(id, "pw"), Billing: fsm.Prepaid}})
		testkit.MustApply(b, st, &fsm.Register{AOR: id, CallID: "bench-" + id, CSeq: 1, Now: now - 600_000, Bindings: []fsm.Binding{{
			Contact: "sip:" + id + "@" + phone, Source: phone, Transport: "udp", Ingress: "udp:" + server, ExpiresAt: now + 3600_000, Q: -1}}})
	}
	startSIPpUAS(b, "testdata/options_uas.xml", phoneIP, phonePort)
	ts.clock.Advance(5 * time.Second)
	testkit.WaitFor(b, 10*time.Second, "the keepalive to know the bindings", func() bool {
		return ts.counter("troika_sip_keepalive_bindings") == n
	})
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	count := func(name string, labels ...string) float64 { return ts.counter(name, labels...) }
	// state reads the pings started so far and those waiting, from one
	// gathering of the metrics (polling them costs CPU too).
	state := func() (started, pending float64) {
		mfs, _ := ts.reg.Gather()
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				switch mf.GetName() {
				case "troika_sip_keepalive_total":
					started += m.GetCounter().GetValue()
				case "troika_sip_keepalive_pending":
					pending = m.GetGauge().GetValue()
				}
			}
		}
		return started + pending, pending
	}
	b.ResetTimer()
	first, _ := state()
	start, wall := cpu(), time.Now()
	for range b.N {
		// An interval in steps of a second, as time passes: each step
		// pings the bindings whose phase it crosses (a thirtieth of them),
		// and the next waits for their answers.
		for range 30 {
			before, _ := state()
			ts.clock.Advance(time.Second)
			if !testkit.Eventually(10*time.Second, func() bool { s, p := state(); return s > before && p == 0 }) {
				b.Fatalf("pings unanswered after 10 s: pending %v, ok %v", count("troika_sip_keepalive_pending"), count("troika_sip_keepalive_total", "result", "ok"))
			}
		}
	}
	used, took := cpu()-start, time.Since(wall)
	last, _ := state()
	pings := last - first
	b.ReportMetric(float64(used.Microseconds())/pings, "cpu-µs/ping")
	b.ReportMetric(pings/took.Seconds(), "pings/s")
	if f := ts.counter("troika_sip_keepalive_total", "result", "timeout"); f != 0 {
		b.Errorf("%v pings unanswered", f)
	}
}

// Debian's baresip, registered through an alias's extra port over UDP
// and over TCP, answers the keepalive; its own SIP trace shows the
// OPTIONS coming from the alias socket (over its own connection, on TCP)
// and its answer going back there.
func TestKeepaliveBaresip(t *testing.T) {
	baresiptest.Need(t)
	t.Parallel()
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			st := newTestState(t, false)
			aliasIP := testIP()
			port := testkit.FreePort(t, aliasIP)
			testkit.MustApply(t, st, &fsm.PutAlias{Alias: fsm.Alias{IP: aliasIP, Ports: fsm.AliasPorts{UDP: []int{port}, TCP: []int{port}}}})
			ts := startServer(t, st, func(c *Config) {
				c.ServeAliases = true
				c.Registrar.Algorithms = []string{"MD5"}
				c.Keepalive = keepaliveConfig(3, false)
			})
			alias := net.JoinHostPort(aliasIP, strconv.Itoa(port))
			testkit.WaitFor(t, 5*time.Second, "the alias socket", func() bool { return contains(ts.Sockets(), network+":"+alias) })

			phone := baresiptest.Start(t, baresiptest.Options{Name: "keepalive-" + network, LocalIP: testIP()})
			phone.Register(baresiptest.Account{User: "1001", Password: "pw1001", Server: alias, Transport: network})
			b := st1001(t, ts)
			if b.Ingress != network+":"+alias {
				t.Fatalf("binding %+v, want it through %s:%s", b, network, alias)
			}
			nextPing(t, ts, 1)
			testkit.WaitFor(t, 10*time.Second, "baresip's answer counted", func() bool {
				return ts.counter("troika_sip_keepalive_total", "result", "ok") == 1
			})
			var got, answered bool
			for _, m := range phone.Trace() {
				switch {
				case m.Method() == "OPTIONS":
					got = true
					if m.Src != alias || m.Dst != b.Source {
						t.Errorf("baresip got the OPTIONS %s, want it from the alias socket %s to %s", m, alias, b.Source)
					}
				case m.Method() == "" && m.CSeq() == "1 OPTIONS":
					answered = true
					t.Logf("baresip answered %s", m)
				}
			}
			if !got || !answered {
				t.Errorf("baresip's trace: OPTIONS received %v, answered %v\n%s", got, answered, tail(phone.Log(), 3000))
			}
			if s, ok := ts.KeepaliveStatus(b); !ok || !s.Reachable {
				t.Errorf("status %+v %v", s, ok)
			}
		})
	}
}

// A node that stops while a ping waits for its answer says nothing about
// the phone: no timeout, no unreachable phone, no removal.
func TestKeepaliveStopIsNotAFailure(t *testing.T) {
	t.Parallel()
	ip := testIP()
	st := newTestState(t, false)
	ts := &testServer{ip: ip, st: st, store: testkit.NewStore(st), reg: prometheus.NewRegistry(), clock: &testkit.Clock{}, logs: &syncBuffer{}}
	s, err := New(Config{Addresses: []string{ip}, UDPPorts: []int{0}, Registrar: RegistrarConfig{Realm: "troika"},
		Keepalive: keepaliveConfig(1, true), NodeID: "test", Metrics: ts.reg, Now: ts.clock.Now,
		Logger: slog.New(slog.NewTextHandler(ts.logs, nil))}, st, ts.store)
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-s.Ready()
	server := ts.addr(t, "udp", ip)
	phone := newUDPPhone(t, server) // never answers OPTIONS
	contact := "Contact: <sip:1001@" + phone.conn.LocalAddr().String() + ">\r\nExpires: 600\r\n"
	chal := exchangeIgnoringPings(t, phone, rawRegister(server, "1001", "stop@phone", 1, "UDP", contact))
	wantStatus(t, exchangeIgnoringPings(t, phone, rawRegister(server, "1001", "stop@phone", 2, "UDP", contact+rawAuth(t, chal, "MD5", "sip:"+server, "1001", "pw1001"))), 200, "")
	nextPing(t, ts, 1)
	testkit.WaitFor(t, 5*time.Second, "a ping waiting for an answer", func() bool {
		return ts.counter("troika_sip_keepalive_pending") == 1
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := ts.counter("troika_sip_keepalive_total", "result", "timeout") + ts.counter("troika_sip_keepalive_unreachable"); n != 0 {
		t.Errorf("stopping counted %v timeouts or unreachable phones", n)
	}
	if len(st1001All(ts)) != 1 || strings.Contains(ts.logs.String(), "phone unreachable") || strings.Contains(ts.logs.String(), "removing") {
		t.Errorf("stopping marked or removed the phone:\n%s", ts.logs.String())
	}
}
