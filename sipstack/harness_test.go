package sipstack

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// testSecret is the nonce secret of newTestState.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// newTestState has accounts 1001, 1002, 1005 (password "pw"+id), blocked
// account 1009, and a nonce secret unless noSecret.
func newTestState(t testing.TB, noSecret bool) *fsm.State {
	st := fsm.New()
	testkit.MustApply(t, st, &fsm.PutTariff{Tariff: fsm.Tariff{ID: "std", Currency: "USD", Rates: []fsm.Rate{{PerMinute: 1, FirstInterval: 60, NextInterval: 60}}}})
	for _, id := range []string{"1001", "1002", "1005", "1009"} {
		testkit.MustApply(t, st, &fsm.CreateAccount{Now: 1, Account: fsm.Account{ID: id, Credentials: testkit.Creds(id, "pw"+id), Billing: fsm.Prepaid, TariffOut: "std"}})
	}
	blocked := true
	testkit.MustApply(t, st, &fsm.UpdateAccount{ID: "1009", Patch: fsm.AccountPatch{Blocked: &blocked}})
	if !noSecret {
		testkit.MustApply(t, st, &fsm.InitNonceSecret{Secret: testSecret})
	}
	return st
}

// Each test gets its own loopback address, so fixed ports never collide
// between parallel tests.
var nextIP atomic.Int32

func testIP() string {
	n := nextIP.Add(1)
	return fmt.Sprintf("127.0.%d.%d", 83+n/250, 1+n%250)
}

type testServer struct {
	*Server
	ip    string
	st    *fsm.State
	store *testkit.Store
	reg   *prometheus.Registry
	clock *testkit.Clock
	logs  *syncBuffer
}

// addr returns the open socket of transport on ip as host:port.
func (ts *testServer) addr(t testing.TB, transport, ip string) string {
	t.Helper()
	for _, s := range ts.Sockets() {
		if strings.HasPrefix(s, transport+":"+ip+":") {
			return strings.TrimPrefix(s, transport+":")
		}
	}
	t.Fatalf("no %s socket on %s in %v", transport, ip, ts.Sockets())
	return ""
}

// counter reads a metric (summing label combinations matching labels).
func (ts *testServer) counter(name string, labels ...string) float64 {
	return testkit.Metric(ts.reg, name, labels...)
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

// startServer runs a Server on a fresh loopback address (UDP and TCP on
// free ports unless cfg sets ports) until the test ends.
func startServer(t testing.TB, st *fsm.State, mod func(*Config)) *testServer {
	t.Helper()
	ip := testIP()
	if st == nil {
		st = newTestState(t, false)
	}
	ts := &testServer{ip: ip, st: st, store: testkit.NewStore(st), reg: prometheus.NewRegistry(), clock: &testkit.Clock{}}
	logs := &syncBuffer{}
	level := slog.LevelInfo
	if os.Getenv("SIPSTACK_DEBUG") != "" {
		level = slog.LevelDebug
	}
	cfg := Config{
		Addresses: []string{ip},
		UDPPorts:  []int{0},
		TCPPorts:  []int{0},
		// Both algorithms, SHA-256 first (RFC 8760's order): the tests
		// answer the SHA-256 challenge, and MD5 where they say so.
		Registrar:  RegistrarConfig{Realm: "troika", Algorithms: []string{"SHA-256", "MD5"}},
		NodeID:     "test",
		Logger:     slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: level})),
		Metrics:    ts.reg,
		Now:        ts.clock.Now,
		ClockJumps: ts.clock.Jumps,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, st, ts.store)
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = s
	ts.logs = logs
	runServer(t, s)
	return ts
}

// logLines counts the server's log lines holding every one of substr.
func (ts *testServer) logLines(substr ...string) int {
	n := 0
line:
	for _, l := range strings.Split(ts.logs.String(), "\n") {
		for _, s := range substr {
			if !strings.Contains(l, s) {
				continue line
			}
		}
		n++
	}
	return n
}

func runServer(t testing.TB, s *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		testkit.WaitNoError(t, done, 10*time.Second, "Run")
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server not ready")
	}
}

// testWriter sends logs to t.Log when -v is given.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// phone is a SIP user agent built on a sipgo client.
type phone struct {
	t        testing.TB
	client   *sipgo.Client
	ua       *sipgo.UserAgent
	user     string
	password string
	server   string // host:port
	host     string
	port     int
	network  string // UDP or TCP
	callID   string
	tag      string
	cseq     uint32
	alg      string         // digest algorithm to answer with
	nc       map[string]int // uses of each nonce (the digest nc)
}

func newPhone(t testing.TB, network, server, user, password string) *phone {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("testphone"), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	host, ps, _ := net.SplitHostPort(server)
	port, _ := strconv.Atoi(ps)
	return &phone{t: t, client: client, ua: ua, user: user, password: password, server: server, host: host, port: port,
		network: network, callID: sip.GenerateTagN(16) + "@test", tag: sip.GenerateTagN(8), cseq: 1, alg: "SHA-256",
		nc: map[string]int{}}
}

// request builds a REGISTER with the phone's Call-ID and the next CSeq.
func (p *phone) request(contacts []string, hdrs ...sip.Header) *sip.Request {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: p.host, Port: p.port})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: p.user, Host: p.host}}
	from.Params.Add("tag", p.tag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: p.user, Host: p.host}})
	cid := sip.CallIDHeader(p.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: p.cseq, MethodName: sip.REGISTER})
	p.cseq++
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	for _, c := range contacts {
		req.AppendHeader(sip.NewHeader("Contact", c))
	}
	req.AppendHeader(sip.NewHeader("User-Agent", "testphone/1.0"))
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	req.SetTransport(p.network)
	return req
}

func (p *phone) do(req *sip.Request) *sip.Response {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.client.Do(ctx, req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", req.Method, p.server, err)
	}
	return res
}

// authorization answers a 401 with the phone's algorithm, counting the
// nonce's uses up in nc as a phone does (RFC 7616 §3.4).
func (p *phone) authorization(res *sip.Response) sip.Header {
	p.t.Helper()
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		chal, err := digest.ParseChallenge(h.Value())
		if err != nil {
			p.t.Fatalf("challenge %q: %v", h.Value(), err)
		}
		if !strings.EqualFold(chal.Algorithm, p.alg) {
			continue
		}
		p.nc[chal.Nonce]++
		cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: fmt.Sprintf("sip:%s:%d", p.host, p.port),
			Username: p.user, Password: p.password, Count: p.nc[chal.Nonce]})
		if err != nil {
			p.t.Fatal(err)
		}
		return sip.NewHeader("Authorization", cred.String())
	}
	p.t.Fatalf("no %s challenge in %s", p.alg, res.String())
	return nil
}

// register sends a REGISTER, answers the challenge, and returns the final
// response.
func (p *phone) register(contacts []string, hdrs ...sip.Header) *sip.Response {
	p.t.Helper()
	res := p.do(p.request(contacts, hdrs...))
	if res.StatusCode != 401 {
		return res
	}
	return p.do(p.request(contacts, append(hdrs, p.authorization(res))...))
}

// dial connects to address over network until the test ends.
func dial(t testing.TB, network, address string) net.Conn {
	t.Helper()
	c, err := net.Dial(network, address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawExchange sends one message over UDP (from a fresh socket) and returns
// the response, or nil if none comes within wait.
func rawExchange(t testing.TB, server, msg string, wait time.Duration) *sip.Response {
	t.Helper()
	c, err := net.Dial("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return datagramExchange(t, c, msg, wait)
}

// rawUDPFrom is rawExchange from a given local address.
func rawUDPFrom(t testing.TB, local, server, msg string) *sip.Response {
	t.Helper()
	la, _ := net.ResolveUDPAddr("udp", local)
	ra, _ := net.ResolveUDPAddr("udp", server)
	c, err := net.DialUDP("udp", la, ra)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return datagramExchange(t, c, msg, 3*time.Second)
}

// datagramExchange sends msg (@LOCAL@ replaced by c's address) on the
// connected datagram socket c and reads the response.
func datagramExchange(t testing.TB, c net.Conn, msg string, wait time.Duration) *sip.Response {
	t.Helper()
	msg = strings.ReplaceAll(msg, "@LOCAL@", c.LocalAddr().String())
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	return readDatagram(t, c, wait)
}

// readDatagram reads one response from the datagram socket c, or nil if
// none comes within wait; a datagram that does not parse fails the test.
func readDatagram(t testing.TB, c net.Conn, wait time.Duration) *sip.Response {
	t.Helper()
	buf := make([]byte, 65536)
	c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	m, err := sip.ParseMessage(buf[:n])
	if err != nil {
		t.Fatalf("unparseable response %q: %v", buf[:n], err)
	}
	return m.(*sip.Response)
}

// streamExchange sends msg over an established stream and reads one
// response.
func streamExchange(t testing.TB, c net.Conn, msg string) *sip.Response {
	t.Helper()
	msg = strings.ReplaceAll(msg, "@LOCAL@", c.LocalAddr().String())
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	m := readStreamMessage(t, bufio.NewReader(c))
	res, ok := m.(*sip.Response)
	if !ok {
		t.Fatalf("got %q, want a response", m.String())
	}
	return res
}

// readStreamMessage reads one SIP message from a stream.
func readStreamMessage(t testing.TB, r *bufio.Reader) sip.Message {
	t.Helper()
	var head bytes.Buffer
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, head.String())
		}
		if head.Len() == 0 && strings.TrimSpace(line) == "" {
			continue // keep-alive CRLF
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	n := 0
	for _, l := range strings.Split(head.String(), "\r\n") {
		if name, v, ok := strings.Cut(l, ":"); ok && (strings.EqualFold(name, "Content-Length") || strings.EqualFold(name, "l")) {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	m, err := sip.ParseMessage(append(head.Bytes(), body...))
	if err != nil {
		t.Fatalf("unparseable %q: %v", head.String(), err)
	}
	return m
}

// rawRegister returns a REGISTER text for user with the given extra
// header lines (each ending in \r\n). @LOCAL@ is replaced by the sender's
// address.
func rawRegister(server, user, callID string, cseq int, transport, extra string) string {
	host, _, _ := net.SplitHostPort(server)
	return fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\n"+
		"Via: SIP/2.0/%s @LOCAL@;branch=z9hG4bK%s%d;rport\r\n"+
		"From: <sip:%s@%s>;tag=t%s\r\n"+
		"To: <sip:%s@%s>\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: %d REGISTER\r\n"+
		"Max-Forwards: 70\r\n"+
		"%s"+
		"Content-Length: 0\r\n\r\n",
		server, transport, callID, cseq, user, host, callID, user, host, callID, cseq, extra)
}

// rawAuth computes an Authorization line answering res for user.
func rawAuth(t testing.TB, res *sip.Response, alg, uri, user, password string) string {
	t.Helper()
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		chal, err := digest.ParseChallenge(h.Value())
		if err != nil {
			t.Fatal(err)
		}
		if chal.Algorithm != alg {
			continue
		}
		cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: uri, Username: user, Password: password, Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		return "Authorization: " + cred.String() + "\r\n"
	}
	t.Fatalf("no %s challenge in %v", alg, res)
	return ""
}

// header is the value of a message's header name ("" if it has none).
func header(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

func contactsOf(res *sip.Response) []string {
	var out []string
	for _, h := range res.GetHeaders("Contact") {
		out = append(out, h.Value())
	}
	return out
}

func wantStatus(t testing.TB, res *sip.Response, code int, reason string) {
	t.Helper()
	if res == nil {
		t.Fatalf("no response, want %d %s", code, reason)
	}
	if res.StatusCode != code || (reason != "" && res.Reason != reason) {
		t.Fatalf("got %d %s, want %d %s\n%s", res.StatusCode, res.Reason, code, reason, res.String())
	}
}

// wantRetryLater checks for a 503 that says when to try again.
func wantRetryLater(t testing.TB, res *sip.Response) {
	t.Helper()
	wantStatus(t, res, 503, "")
	if header(res, "Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
}

func contextWithCancel(t testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}
