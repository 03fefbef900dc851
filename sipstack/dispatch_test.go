package sipstack

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/b2bua"
	"github.com/troika-sip/troika/sipstack/dispatch"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// memHub links Servers as the cluster link does: one FIFO per sender and
// receiver, bounded, Send never blocking; and it says which node holds
// each address.
type memHub struct {
	mu      sync.Mutex
	servers map[string]*Server
	holders map[string]string // ip -> node
	queues  map[[2]string]chan []byte
	wg      sync.WaitGroup
}

func newMemHub(t *testing.T) *memHub {
	h := &memHub{servers: map[string]*Server{}, holders: map[string]string{}, queues: map[[2]string]chan []byte{}}
	t.Cleanup(func() {
		h.mu.Lock()
		for _, q := range h.queues {
			close(q)
		}
		h.queues = map[[2]string]chan []byte{}
		h.mu.Unlock()
		h.wg.Wait()
	})
	return h
}

type memPeers struct {
	h    *memHub
	self string
}

func (p memPeers) Send(node string, frame []byte) bool {
	h := p.h
	h.mu.Lock()
	defer h.mu.Unlock()
	to := h.servers[node]
	if to == nil {
		return false
	}
	key := [2]string{p.self, node}
	q := h.queues[key]
	if q == nil {
		q = make(chan []byte, 4096)
		h.queues[key] = q
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			for f := range q {
				to.HandleFrame(p.self, f)
			}
		}()
	}
	select {
	case q <- frame:
		return true
	default:
		return false
	}
}

func (p memPeers) Dispatches(node string) bool {
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	return p.h.servers[node] != nil
}

func (p memPeers) Holder(socket string) (string, bool) {
	ap, err := transport.ParseSocketName(socket)
	if err != nil {
		return "", false
	}
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	n, ok := p.h.holders[ap.Addr().String()]
	return n, ok
}

// dispatchNode is one Server of an in-process cluster.
type dispatchNode struct {
	*testServer
	id    string
	addr  string      // its UDP socket, ip:port
	procs []Processor // the processors it was told of first
}

// startDispatchCluster runs one Server per id, each on its own loopback
// address with dispatching on, all sharing st, linked by a memHub, each
// knowing every node as a processor.
func startDispatchCluster(t *testing.T, st *fsm.State, ids ...string) []*dispatchNode {
	t.Helper()
	return startDispatchClusterTCP(t, st, false, ids...)
}

// startDispatchClusterTCP is startDispatchCluster, with a TCP socket on
// every node too when tcp.
func startDispatchClusterTCP(t *testing.T, st *fsm.State, tcp bool, ids ...string) []*dispatchNode {
	t.Helper()
	var tcpPorts []int
	if tcp {
		tcpPorts = []int{0}
	}
	hub := newMemHub(t)
	store := testkit.NewStore(st)
	var nodes []*dispatchNode
	var procs []Processor
	for _, id := range ids {
		ip := testIP()
		ts := &testServer{ip: ip, st: st, store: store, reg: prometheus.NewRegistry(), clock: &testkit.Clock{}, logs: &syncBuffer{}}
		s, err := New(Config{
			Addresses: []string{ip}, UDPPorts: []int{0}, TCPPorts: tcpPorts, Registrar: RegistrarConfig{Realm: "troika", Algorithms: []string{"SHA-256", "MD5"}},
			Dispatch: DispatchConfig{Enabled: true, Peers: memPeers{h: hub, self: id}},
			NodeID:   id, Logger: slog.New(slog.NewTextHandler(io.MultiWriter(ts.logs, testWriter{t}), &slog.HandlerOptions{Level: testLogLevel()})),
			Metrics: ts.reg, Now: ts.clock.Now, ClockJumps: ts.clock.Jumps,
		}, st, store)
		if err != nil {
			t.Fatal(err)
		}
		ts.Server = s
		hub.mu.Lock()
		hub.servers[id] = s
		hub.holders[ip] = id
		hub.mu.Unlock()
		runServer(t, s)
		nodes = append(nodes, &dispatchNode{testServer: ts, id: id, addr: ts.addr(t, "udp", ip)})
		procs = append(procs, Processor{ID: id})
	}
	for _, n := range nodes {
		n.SetProcessors(procs)
		n.procs = procs
	}
	return nodes
}

// udpPhone is a phone on a UDP socket connected to one server address:
// the kernel only hands it datagrams that come from that address.
type udpPhone struct {
	t    *testing.T
	conn *net.UDPConn
}

func newUDPPhone(t *testing.T, server string) *udpPhone {
	ra, _ := net.ResolveUDPAddr("udp", server)
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.1")}, ra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpPhone{t: t, conn: c}
}

func (p *udpPhone) exchange(msg string) *sip.Response {
	p.t.Helper()
	msg = strings.ReplaceAll(msg, "@LOCAL@", p.conn.LocalAddr().String())
	if _, err := p.conn.Write([]byte(msg)); err != nil {
		p.t.Fatal(err)
	}
	buf := make([]byte, 65536)
	p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := p.conn.Read(buf)
	if err != nil {
		p.t.Fatalf("no answer from %s: %v", p.conn.RemoteAddr(), err)
	}
	m, err := sip.ParseMessage(buf[:n])
	if err != nil {
		p.t.Fatalf("unparseable answer %q: %v", buf[:n], err)
	}
	return m.(*sip.Response)
}

// REGISTERs with many Call-IDs sent to one node's address are processed
// by all three nodes (each by the node its Call-ID hashes to, the first
// node passing the others' datagrams over the link), every answer comes
// back from the address the phone sent to, and every binding records
// that socket as its ingress and the phone's own address as its source.
func TestDispatchSpreadsRegistrations(t *testing.T) {
	t.Parallel()
	st := newTestState(t, false)
	nodes := startDispatchCluster(t, st, "n1", "n2", "n3")
	a := nodes[0]
	const regs = 60
	phone := newUDPPhone(t, a.addr)
	local := phone.conn.LocalAddr().String()
	contact := "Contact: <sip:1001@" + local + ">\r\nExpires: 600\r\n"
	for i := range regs {
		cid := fmt.Sprintf("spread-%d@phone", i)
		chal := phone.exchange(rawRegister(a.addr, "1001", cid, 1, "UDP", contact))
		wantStatus(t, chal, 401, "")
		res := phone.exchange(rawRegister(a.addr, "1001", cid, 2, "UDP", contact+rawAuth(t, chal, "SHA-256", "sip:"+a.addr, "1001", "pw1001")))
		wantStatus(t, res, 200, "")
	}
	total := 0.0
	for _, n := range nodes {
		ok := n.counter("troika_sip_register_total", "result", sipmsg.ResultOK)
		if ok == 0 {
			t.Errorf("node %s processed no REGISTER", n.id)
		}
		total += ok
		t.Logf("node %s: %v REGISTERs registered", n.id, ok)
	}
	if total != regs {
		t.Errorf("%v REGISTERs registered in all, want %d", total, regs)
	}
	remote := a.counter("troika_sip_dispatch_datagrams_total", "target", "remote")
	if remote == 0 || a.counter("troika_sip_dispatch_datagrams_total", "target", "local") == 0 {
		t.Errorf("dispatcher: %v remote, %v local", remote, a.counter("troika_sip_dispatch_datagrams_total", "target", "local"))
	}
	// A node counts a datagram once sent, which may be after the phone
	// has it.
	testkit.WaitFor(t, 5*time.Second, "one answer sent for the others per request relayed", func() bool {
		return a.counter("troika_sip_dispatch_sent_total", "via", "relayed") == remote
	})
	for _, n := range nodes[1:] {
		if n.counter("troika_sip_dispatch_sent_total", "via", "remote") == 0 {
			t.Errorf("node %s sent no answer through the dispatcher", n.id)
		}
		if contains(n.Sockets(), "udp:"+a.addr) {
			t.Errorf("node %s lists %s, which it does not hold, among its sockets", n.id, a.addr)
		}
	}
	bs := st.Bindings("1001", time.Now().UnixMilli())
	if len(bs) != 1 || bs[0].Ingress != "udp:"+a.addr || bs[0].Source != local {
		t.Fatalf("bindings %+v, want one with ingress udp:%s and source %s", bs, a.addr, local)
	}
	for _, n := range nodes {
		if d := n.counter("troika_sip_dispatch_drops_total"); d != 0 {
			t.Errorf("node %s dropped %v datagrams", n.id, d)
		}
	}
}

// callIDFor returns a Call-ID that the nodes' dispatchers send to node.
func callIDFor(t *testing.T, n *dispatchNode, node string) string {
	for range 1000 {
		cid := sip.GenerateTagN(12) + "@test"
		if id, _ := dispatch.Route(n.procs, cid, true); id == node {
			return cid
		}
	}
	t.Fatal("no Call-ID for " + node)
	return ""
}

// A call reaching n1's address whose Call-ID hashes to n2 is processed by
// n2 end to end: its callee leg's Call-ID names n2, so the callee's
// responses and its BYE (sent to n1's address like everything else)
// reach n2 although that Call-ID, as an ordinary one, would hash
// elsewhere. Every packet either phone gets comes from n1's address.
func TestDispatchCallAcrossNodes(t *testing.T) {
	t.Parallel()
	st := callState(t, 100_000_000)
	nodes := startDispatchCluster(t, st, "n1", "n2", "n3")
	a := nodes[0]
	callee := newEndpoint(t, "127.0.0.1")
	bind(t, st, "2002", "sip:2002@"+callee.addr, callee.addr, "udp:"+a.addr)
	caller := newEndpoint(t, "127.0.0.1")
	fromA := func(what string, from *net.UDPAddr) {
		t.Helper()
		if from.String() != a.addr {
			t.Fatalf("%s came from %s, want n1's address %s", what, from, a.addr)
		}
	}
	diverged := false
	for round := 0; round < 10 && !diverged; round++ {
		cid := callIDFor(t, a, "n2")
		c := inviteWithCallID(t, caller, a.addr, "2001", "pw2001", "2002", testSDP, cid)
		inv, from := callee.request("INVITE")
		fromA("the callee's INVITE", from)
		legID := inv.CallID().Value()
		if node, ok := dispatch.MarkedNode(legID); !ok || node != "n2" {
			t.Fatalf("callee leg Call-ID %q does not name n2", legID)
		}
		plain, _ := dispatch.RouteByHash(a.procs, legID, false) // as an ordinary Call-ID
		diverged = plain != "n2"

		callee.reply(inv, from, 180, "Ringing", "bob", "")
		callee.reply(inv, from, 200, "OK", "bob", calleeSDP)
		res := c.final(5*time.Second, nil)
		wantStatus(t, res, 200, "OK")
		c.ack()
		ack, from := callee.request("ACK")
		fromA("the callee's ACK", from)
		if ack.CallID().Value() != legID {
			t.Fatalf("ACK for %s", ack.CallID().Value())
		}
		testkit.WaitFor(t, 5*time.Second, "the answer in the state", func() bool { fc, ok := st.Call(cid); return ok && fc.ConnectAt != 0 })
		if fc, _ := st.Call(cid); fc.Node != "n2" {
			t.Fatalf("call ran on %s, want n2", fc.Node)
		}

		// The callee hangs up, through n1's address.
		bye := fmt.Sprintf("BYE sip:x@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKbye%d;rport\r\nFrom: %s\r\nTo: %s\r\n"+
			"Call-ID: %s\r\nCSeq: 11 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
			a.addr, callee.addr, round, inv.To().Value()+";tag=bob", inv.From().Value(), legID)
		callee.send(a.addr, bye)
		p := callee.wait("200 to BYE", 5*time.Second, isResponse("BYE", true))
		fromA("the answer to the callee's BYE", p.from)
		if r := p.msg.(*sip.Response); r.StatusCode != 200 {
			t.Fatalf("callee's BYE answered %d", r.StatusCode)
		}
		byeReq, byeFrom := caller.request("BYE")
		fromA("the caller's BYE", byeFrom)
		if byeReq.CallID().Value() != cid {
			t.Fatalf("caller BYE for %s", byeReq.CallID().Value())
		}
		caller.reply(byeReq, byeFrom, 200, "OK", "", "")
		if x := xdrFor(t, st, cid); x.DisconnectedBy != b2bua.ByCallee || x.Node != "n2" || st.Reserved("2001") != 0 {
			t.Fatalf("xDR %+v", x)
		}
		testkit.WaitFor(t, 5*time.Second, "n2 to forget the call", func() bool { return nodes[1].calls.Dialogs() == 0 && nodes[1].ActiveCalls() == 0 })
		t.Logf("round %d: callee leg %s would hash to %s", round, legID, plain)
	}
	if !diverged {
		t.Fatal("no callee leg Call-ID hashed away from its node in 10 calls")
	}
	for _, n := range []*dispatchNode{nodes[0], nodes[2]} {
		if got := n.counter("troika_sip_calls_started_total"); got != 0 {
			t.Errorf("node %s started %v calls", n.id, got)
		}
	}
	if nodes[1].counter("troika_sip_calls_started_total") == 0 {
		t.Error("n2 started no call")
	}
}

// inviteWithCallID is invite with a chosen Call-ID.
func inviteWithCallID(t testing.TB, e *endpoint, server, user, pw, cld, sdp, callID string) *testCall {
	t.Helper()
	return startInvite(t, e, server, user, pw, cld, sdp, callID, "")
}

var contentLength = regexp.MustCompile(`(?im)^(?:content-length|l)[ \t]*:[ \t]*([0-9]+)`)

// tcpPhone is a phone connected over TCP: it reads whole messages.
type tcpPhone struct {
	t    *testing.T
	conn net.Conn
	in   chan sip.Message
}

func newTCPPhone(t *testing.T, server string) *tcpPhone {
	t.Helper()
	c, err := net.Dial("tcp", server)
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpPhone{t: t, conn: c, in: make(chan sip.Message, 64)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := bufio.NewReader(c)
		for {
			var head bytes.Buffer
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if head.Len() == 0 && line == "\r\n" {
					continue // keepalive
				}
				head.WriteString(line)
				if line == "\r\n" {
					break
				}
			}
			msg := head.Bytes()
			if m := contentLength.FindSubmatch(msg); m != nil {
				n, _ := strconv.Atoi(string(m[1]))
				body := make([]byte, n)
				if _, err := io.ReadFull(r, body); err != nil {
					return
				}
				msg = append(msg, body...)
			}
			m, err := sip.ParseMessage(msg)
			if err != nil {
				t.Logf("TCP phone: unparseable %q: %v", msg, err)
				continue
			}
			p.in <- m
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return p
}

func (p *tcpPhone) wait(what string, match func(sip.Message) bool) sip.Message {
	p.t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		select {
		case m := <-p.in:
			if match(m) {
				return m
			}
		case <-timer.C:
			p.t.Fatalf("TCP phone: timed out waiting for %s", what)
			return nil
		}
	}
}

// ping sends an OPTIONS over the connection to server and waits for its
// answer: the server's stack has then accepted the connection.
func (p *tcpPhone) ping(server string) {
	p.t.Helper()
	local := p.conn.LocalAddr().String()
	p.send(fmt.Sprintf("OPTIONS sip:%s;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bKping\r\n"+
		"From: <sip:2002@%s>;tag=ping\r\nTo: <sip:%s>\r\nCall-ID: ping-%s\r\nCSeq: 1 OPTIONS\r\n"+
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", server, local, local, server, local))
	p.wait("the answer to OPTIONS", func(m sip.Message) bool {
		res, ok := m.(*sip.Response)
		return ok && res.CSeq().MethodName == sip.OPTIONS
	})
}

func (p *tcpPhone) send(msg string) {
	p.t.Helper()
	if _, err := p.conn.Write([]byte(msg)); err != nil {
		p.t.Fatal(err)
	}
}

// reply answers req with raw headers over the phone's connection.
func (p *tcpPhone) reply(req *sip.Request, code int, reason, toTag, body string) {
	contact := ""
	if code >= 200 && code < 300 && req.Method == sip.INVITE {
		contact = fmt.Sprintf("<sip:2002@%s;transport=tcp>", p.conn.LocalAddr())
	}
	p.send(responseText(req, code, reason, toTag, contact, body))
}

// A call reaching n1 over UDP and processed by n2, to a callee registered
// over TCP through n1's TCP socket: n2 cannot write into n1's connection,
// so it sends the leg's requests through n1 (a stream relay), which
// writes them into the phone's connection; n1 passes the callee's
// responses and its BYE, which arrive on that connection, back to n2 by
// the leg's Call-ID. The callee sees everything on its one connection,
// with Via and Contact on n1's TCP socket.
func TestDispatchCallToTCPCalleeThroughOwner(t *testing.T) {
	t.Parallel()
	st := callState(t, 100_000_000)
	nodes := startDispatchClusterTCP(t, st, true, "n1", "n2", "n3")
	a := nodes[0]
	aTCP := a.testServer.addr(t, "tcp", a.ip)
	callee := newTCPPhone(t, aTCP)
	local := callee.conn.LocalAddr().String()
	bind(t, st, "2002", "sip:2002@"+local+";transport=tcp", local, "tcp:"+aTCP)
	caller := newEndpoint(t, "127.0.0.1")
	callee.ping(aTCP) // n1's stack has accepted the connection

	cid := callIDFor(t, a, "n2")
	c := inviteWithCallID(t, caller, a.addr, "2001", "pw2001", "2002", testSDP, cid)
	inv := callee.wait("INVITE", isRequest("INVITE")).(*sip.Request)
	if v := inv.Via(); v.Transport != "TCP" || fmt.Sprintf("%s:%d", v.Host, v.Port) != aTCP {
		t.Errorf("callee's INVITE Via %q, want TCP on %s", v.Value(), aTCP)
	}
	if ct := inv.Contact(); ct == nil || !strings.Contains(ct.Value(), "transport=tcp") {
		t.Errorf("callee's INVITE Contact %v", inv.Contact())
	}
	legID := inv.CallID().Value()
	if node, ok := dispatch.MarkedNode(legID); !ok || node != "n2" {
		t.Fatalf("callee leg Call-ID %q does not name n2", legID)
	}
	callee.reply(inv, 180, "Ringing", "bob", "")
	callee.reply(inv, 200, "OK", "bob", calleeSDP)
	wantStatus(t, c.final(5*time.Second, nil), 200, "OK")
	c.ack()
	callee.wait("ACK", isRequest("ACK"))
	testkit.WaitFor(t, 5*time.Second, "the answer in the state", func() bool { fc, ok := st.Call(cid); return ok && fc.ConnectAt != 0 })

	callee.send(fmt.Sprintf("BYE sip:x@%s;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bKtcpbye\r\nFrom: %s\r\nTo: %s\r\n"+
		"Call-ID: %s\r\nCSeq: 11 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		aTCP, local, inv.To().Value()+";tag=bob", inv.From().Value(), legID))
	if r := callee.wait("200 to BYE", isResponse("BYE", true)).(*sip.Response); r.StatusCode != 200 {
		t.Fatalf("callee's BYE answered %d", r.StatusCode)
	}
	bye, from := caller.request("BYE")
	caller.reply(bye, from, 200, "OK", "", "")
	if x := xdrFor(t, st, cid); x.DisconnectedBy != b2bua.ByCallee || x.Node != "n2" {
		t.Fatalf("xDR %+v", x)
	}
	// 180, 200 and BYE; n1 counts each once it has handed it over, which
	// may be after n2 has acted on it.
	testkit.WaitFor(t, 5*time.Second, "n1 to count 3 stream messages passed to n2", func() bool {
		return a.counter("troika_sip_dispatch_forwarded_total", "reason", "stream") >= 3
	})
	if nodes[1].counter("troika_sip_calls_started_total") != 1 || a.counter("troika_sip_calls_started_total") != 0 {
		t.Error("the call did not run on n2")
	}
}

func testLogLevel() slog.Level {
	if os.Getenv("SIPSTACK_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// A node joins while a call is up, and the caller's Call-ID now hashes to
// it: the caller's BYE reaches the new node, which finds in the cluster
// state that a live node runs the call and passes the BYE there instead
// of adopting the call itself. The call ends once, on its own node.
func TestDispatchForwardsToTheCallsNodeAfterAJoin(t *testing.T) {
	t.Parallel()
	st := callState(t, 100_000_000)
	nodes := startDispatchCluster(t, st, "n1", "n2", "n3")
	a := nodes[0]
	two := []Processor{{ID: "n1"}, {ID: "n2"}}
	for _, n := range nodes {
		n.SetProcessors(two) // n3 is not up yet
	}
	var cid string
	for range 1000 {
		c := sip.GenerateTagN(12) + "@test"
		before, _ := dispatch.Route(two, c, true)
		after, _ := dispatch.Route(processors("n1", "n2", "n3"), c, true)
		if before == "n2" && after == "n3" {
			cid = c
			break
		}
	}
	callee := newEndpoint(t, "127.0.0.1")
	bind(t, st, "2002", "sip:2002@"+callee.addr, callee.addr, "udp:"+a.addr)
	caller := newEndpoint(t, "127.0.0.1")
	c := inviteWithCallID(t, caller, a.addr, "2001", "pw2001", "2002", testSDP, cid)
	inv, from := callee.request("INVITE")
	callee.reply(inv, from, 200, "OK", "bob", calleeSDP)
	wantStatus(t, c.final(5*time.Second, nil), 200, "OK")
	c.ack()
	callee.request("ACK")
	testkit.WaitFor(t, 5*time.Second, "the answer in the state", func() bool { fc, ok := st.Call(cid); return ok && fc.ConnectAt != 0 })

	for _, n := range nodes {
		n.SetProcessors(processors("n1", "n2", "n3")) // n3 joins
	}
	c.bye(t)
	bye, byeFrom := callee.request("BYE")
	if byeFrom.String() != a.addr || bye.CallID().Value() != inv.CallID().Value() {
		t.Fatalf("callee BYE from %s for %s", byeFrom, bye.CallID().Value())
	}
	callee.reply(bye, byeFrom, 200, "OK", "", "")
	if x := xdrFor(t, st, cid); x.DisconnectedBy != b2bua.ByCaller || x.Node != "n2" {
		t.Fatalf("xDR %+v", x)
	}
	// The BYE, and the caller's ACK when it was still on its way at the
	// join.
	testkit.WaitFor(t, 5*time.Second, "n3 to count the BYE it passed on", func() bool {
		return nodes[2].counter("troika_sip_dispatch_forwarded_total", "reason", "call_node") >= 1
	})
	if got := nodes[2].counter("troika_sip_dispatch_forwarded_total", "reason", "call_node"); got > 2 {
		t.Errorf("n3 passed %v requests to the call's node, want the BYE (and maybe the ACK)", got)
	}
	for _, n := range nodes {
		if got := n.counter("troika_sip_calls_adopted_total"); got != 0 {
			t.Errorf("%s adopted %v calls", n.id, got)
		}
	}
}

// processors lists the nodes ids as processors.
func processors(ids ...string) []Processor {
	out := make([]Processor, len(ids))
	for i, id := range ids {
		out[i] = Processor{ID: id}
	}
	return out
}
