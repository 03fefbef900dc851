package sipstack

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// Test harness for calls: accounts with tariffs, bindings put straight
// into the fsm, and raw UDP endpoints playing phones, so every header and
// the source address of every packet can be checked.

const testSDP, calleeSDP = testkit.CallerSDP, testkit.CalleeSDP

// callState is a state with tariff "t1" (per minute 60 units: 1 unit a
// second, 1/1 intervals), caller 2001 with balance, callee 2002 with no
// incoming tariff.
func callState(t testing.TB, balance int64) *fsm.State {
	st := newTestState(t, false)
	putTariff(t, st, "t1", fsm.Rate{PerMinute: 60_000_000, FirstInterval: 1, NextInterval: 1})
	addAccount(t, st, fsm.Account{ID: "2001", Credentials: testkit.Creds("2001", "pw2001"), DisplayName: "Alice", Billing: fsm.Prepaid, Balance: balance, TariffOut: "t1"})
	addAccount(t, st, fsm.Account{ID: "2002", Credentials: testkit.Creds("2002", "pw2002"), Billing: fsm.Prepaid, TariffOut: "t1"})
	return st
}

func putTariff(t testing.TB, st *fsm.State, id string, rates ...fsm.Rate) {
	t.Helper()
	testkit.MustApply(t, st, &fsm.PutTariff{Tariff: fsm.Tariff{ID: id, Currency: "USD", Rates: rates}})
}

func addAccount(t testing.TB, st *fsm.State, a fsm.Account) {
	t.Helper()
	testkit.MustApply(t, st, &fsm.CreateAccount{Now: 1, Account: a})
}

// bind registers contact for aor as if it had REGISTERed from source
// through the socket named ingress.
func bind(t testing.TB, st *fsm.State, aor, contact, source, ingress string) {
	t.Helper()
	now := time.Now().UnixMilli()
	testkit.MustApply(t, st, &fsm.Register{AOR: aor, CallID: "reg-" + contact, CSeq: 1, Now: now, MaxContacts: 10,
		Bindings: []fsm.Binding{{Contact: contact, Source: source, Transport: strings.SplitN(ingress, ":", 2)[0],
			Ingress: ingress, ExpiresAt: now + 3600_000, Q: -1}}})
}

// serveCallee starts a server on st (mod applied to its config) and
// binds aor to a raw UDP callee through the server's UDP socket srv.
func serveCallee(t *testing.T, st *fsm.State, aor string, mod func(*Config)) (ts *testServer, srv string, callee *endpoint) {
	t.Helper()
	ts = startServer(t, st, mod)
	srv = ts.addr(t, "udp", ts.ip)
	callee = newEndpoint(t, "127.0.0.1")
	bind(t, st, aor, "sip:"+aor+"@"+callee.addr, callee.addr, "udp:"+srv)
	return ts, srv, callee
}

// callFrom2001 serves callState(t, 100_000_000) with 2002 bound to a
// callee (serveCallee, mod as there) and sends 2001's INVITE to 2002 from
// a caller phone on 127.0.0.1 (c.e), answering the challenge.
func callFrom2001(t *testing.T, mod func(*Config)) (st *fsm.State, ts *testServer, callee *endpoint, c *testCall) {
	t.Helper()
	st = callState(t, 100_000_000)
	ts, srv, callee := serveCallee(t, st, "2002", mod)
	c = invite(t, newEndpoint(t, "127.0.0.1"), srv, "2001", "pw2001", "2002", testSDP)
	return st, ts, callee, c
}

// endpoint is a phone on a UDP socket: it sends raw messages and hands
// out what it receives, with the source address.
type endpoint struct {
	t    testing.TB
	conn *net.UDPConn
	addr string
	in   chan packet
}

type packet struct {
	msg  sip.Message
	from *net.UDPAddr
	raw  string
}

func newEndpoint(t testing.TB, ip string) *endpoint {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	e := &endpoint{t: t, conn: conn, addr: conn.LocalAddr().String(), in: make(chan packet, 256)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			raw := string(buf[:n])
			m, err := sip.ParseMessage(buf[:n])
			if err != nil {
				continue
			}
			select {
			case e.in <- packet{msg: m, from: from, raw: raw}:
			default:
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); wg.Wait() })
	return e
}

func (e *endpoint) send(to, msg string) {
	e.t.Helper()
	ua, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.conn.WriteToUDP([]byte(msg), ua); err != nil {
		e.t.Fatal(err)
	}
}

// wait returns the next packet that match accepts (others are dropped).
func (e *endpoint) wait(what string, d time.Duration, match func(sip.Message) bool) packet {
	e.t.Helper()
	p, ok := e.maybe(d, match)
	if !ok {
		e.t.Fatalf("%s: timed out waiting for %s", e.addr, what)
	}
	return p
}

// maybe is wait without failing: ok false when nothing matched in d.
func (e *endpoint) maybe(d time.Duration, match func(sip.Message) bool) (packet, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case p := <-e.in:
			if match(p.msg) {
				return p, true
			}
		case <-timer.C:
			return packet{}, false
		}
	}
}

func isRequest(method string) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && string(r.Method) == method
	}
}

func isResponse(method string, final bool) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.CSeq() != nil && string(r.CSeq().MethodName) == method && (!final || r.StatusCode >= 200)
	}
}

// isStatus matches a response with the status code.
func isStatus(code int) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.StatusCode == code
	}
}

func (e *endpoint) request(method string) (*sip.Request, *net.UDPAddr) {
	e.t.Helper()
	p := e.wait(method, 10*time.Second, isRequest(method))
	return p.msg.(*sip.Request), p.from
}

// reply answers req (received from `from`) with raw header lines.
func (e *endpoint) reply(req *sip.Request, from *net.UDPAddr, code int, reason, toTag, body string, extra ...string) {
	e.t.Helper()
	contact := ""
	if code > 100 && code < 300 && req.Method == sip.INVITE {
		contact = "<sip:" + e.addr + ">"
	}
	e.send(from.String(), responseText(req, code, reason, toTag, contact, body, extra...))
}

// answerCancel takes the CANCEL of req (received from `from`) and
// answers it 200 and req 487 with the To tag toTag; it returns the CANCEL
// and where it came from.
func (e *endpoint) answerCancel(req *sip.Request, from *net.UDPAddr, toTag string) (*sip.Request, *net.UDPAddr) {
	e.t.Helper()
	cancel, cfrom := e.request("CANCEL")
	e.reply(cancel, cfrom, 200, "OK", "", "")
	e.reply(req, from, 487, "Request Terminated", toTag, "")
	return cancel, cfrom
}

// responseText is a response to req with raw header lines: contact (if
// any) as its Contact, body as SDP.
func responseText(req *sip.Request, code int, reason, toTag, contact, body string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, h := range req.GetHeaders("Via") {
		fmt.Fprintf(&b, "Via: %s\r\n", h.Value())
	}
	to := req.To().Value()
	if toTag != "" && !strings.Contains(to, "tag=") {
		to += ";tag=" + toTag
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\n", req.From().Value(), to, req.CallID().Value(), req.CSeq().Value())
	if contact != "" {
		fmt.Fprintf(&b, "Contact: %s\r\n", contact)
	}
	for _, x := range extra {
		b.WriteString(x + "\r\n")
	}
	if body != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// testCall is a call placed by a raw UDP caller.
type testCall struct {
	e                *endpoint
	server, ruri     string
	user, pw         string
	callID, fromTag  string
	branch           string
	cseq             int
	sdp              string
	toTag            string
	contact          string // the switch's Contact from its 2xx
	extraInviteLines string
	auth             string // the Proxy-Authorization value of the authenticated INVITE
}

// invite sends an INVITE from user to cld through server, answers the 407
// challenge, and returns the call (its responses are read by the test).
func invite(t testing.TB, e *endpoint, server, user, pw, cld, sdp string) *testCall {
	t.Helper()
	return inviteExtra(t, e, server, user, pw, cld, sdp, "")
}

// inviteExtra is invite with extra raw header lines in both INVITEs.
func inviteExtra(t testing.TB, e *endpoint, server, user, pw, cld, sdp, extra string) *testCall {
	t.Helper()
	return startInvite(t, e, server, user, pw, cld, sdp, sip.GenerateTagN(12)+"@test", extra)
}

// startInvite sends an INVITE with the Call-ID callID and the extra
// header lines extra, answers the 407 challenge and sends it again.
func startInvite(t testing.TB, e *endpoint, server, user, pw, cld, sdp, callID, extra string) *testCall {
	t.Helper()
	host, _, _ := net.SplitHostPort(server)
	c := &testCall{e: e, server: server, ruri: "sip:" + cld + "@" + server, user: user, pw: pw,
		callID: callID, fromTag: sip.GenerateTagN(8), sdp: sdp, cseq: 1, extraInviteLines: extra}
	c.branch = "z9hG4bK" + sip.GenerateTagN(10)
	e.send(server, c.inviteText(host, ""))
	p := e.wait("407", 5*time.Second, isResponse("INVITE", true))
	if p.from.String() != server {
		t.Fatalf("407 came from %s, want %s", p.from, server)
	}
	res := p.msg.(*sip.Response)
	if res.StatusCode != 407 {
		t.Fatalf("first INVITE: got %d %s, want 407", res.StatusCode, res.Reason)
	}
	c.ackFailure(res)
	chal, err := digest.ParseChallenge(res.GetHeader("Proxy-Authenticate").Value())
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "INVITE", URI: c.ruri, Username: user, Password: pw, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	c.cseq++
	c.branch = "z9hG4bK" + sip.GenerateTagN(10)
	c.auth = cred.String()
	e.send(server, c.inviteText(host, "Proxy-Authorization: "+c.auth+"\r\n"))
	return c
}

func (c *testCall) inviteText(host, auth string) string {
	ct := ""
	if c.sdp != "" {
		ct = "Content-Type: application/sdp\r\n"
	}
	return fmt.Sprintf("INVITE %s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=%s;rport\r\n"+
		"From: \"Spoofed Name\" <sip:%s@%s>;tag=%s\r\n"+
		"To: <%s>\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: %d INVITE\r\n"+
		"Contact: <sip:%s@%s>\r\n"+
		"Max-Forwards: 70\r\n"+
		"Subject: test call\r\n"+
		"%s%s%s"+
		"Content-Length: %d\r\n\r\n%s",
		c.ruri, c.e.addr, c.branch, c.user, host, c.fromTag, c.ruri, c.callID, c.cseq, c.user, c.e.addr,
		auth, c.extraInviteLines, ct, len(c.sdp), c.sdp)
}

// final waits for the final response to the INVITE, passing provisional
// ones to onProvisional.
func (c *testCall) final(d time.Duration, onProvisional func(*sip.Response)) *sip.Response {
	for {
		p := c.e.wait("INVITE response", d, isResponse("INVITE", false))
		res := p.msg.(*sip.Response)
		if res.CSeq().SeqNo != uint32(c.cseq) {
			continue
		}
		if res.StatusCode < 200 {
			if onProvisional != nil {
				onProvisional(res)
			}
			continue
		}
		if res.StatusCode < 300 {
			c.toTag, _ = res.To().Params.Get("tag")
			if ct := res.Contact(); ct != nil {
				c.contact = ct.Address.String()
			}
		} else {
			c.ackFailure(res)
		}
		return res
	}
}

// ackFailure ACKs a non-2xx final response (same branch as the INVITE).
func (c *testCall) ackFailure(res *sip.Response) {
	c.e.send(c.server, fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\n"+
		"From: <sip:%s@x>;tag=%s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		c.ruri, c.e.addr, c.branch, c.user, c.fromTag, res.To().Value(), c.callID, res.CSeq().SeqNo))
}

// inDialog builds a request within the call's dialog.
func (c *testCall) inDialog(method string, cseq int, branch, body string) string {
	ct := ""
	if body != "" {
		ct = "Content-Type: application/sdp\r\n"
	}
	return fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\n"+
		"From: <sip:%s@x>;tag=%s\r\nTo: <%s>;tag=%s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContact: <sip:%s@%s>\r\nMax-Forwards: 70\r\n%sContent-Length: %d\r\n\r\n%s",
		method, c.contact, c.e.addr, branch, c.user, c.fromTag, c.ruri, c.toTag, c.callID, cseq, method, c.user, c.e.addr, ct, len(body), body)
}

func (c *testCall) ack() {
	c.e.send(c.server, c.inDialog("ACK", c.cseq, "z9hG4bK"+sip.GenerateTagN(10), ""))
}

// bye hangs up and waits for the 200.
func (c *testCall) bye(t testing.TB) {
	t.Helper()
	c.cseq++
	c.e.send(c.server, c.inDialog("BYE", c.cseq, "z9hG4bK"+sip.GenerateTagN(10), ""))
	p := c.e.wait("200 to BYE", 5*time.Second, isResponse("BYE", true))
	if r := p.msg.(*sip.Response); r.StatusCode != 200 {
		t.Fatalf("BYE: %d %s", r.StatusCode, r.Reason)
	}
}

// cancel CANCELs the pending INVITE.
func (c *testCall) cancel() {
	c.e.send(c.server, fmt.Sprintf("CANCEL %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\n"+
		"From: \"Alice\" <sip:%s@x>;tag=%s\r\nTo: <%s>\r\nCall-ID: %s\r\nCSeq: %d CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		c.ruri, c.e.addr, c.branch, c.user, c.fromTag, c.ruri, c.callID, c.cseq))
}

// cancelled CANCELs the pending INVITE and waits for its 487.
func (c *testCall) cancelled(t testing.TB) {
	t.Helper()
	c.cancel()
	wantStatus(t, c.final(5*time.Second, nil), 487, "")
}

// answer has callee take c's INVITE and answer it 200 with calleeSDP
// and the To tag toTag; it returns the INVITE once the caller has the 200.
func answer(t testing.TB, c *testCall, callee *endpoint, toTag string) (*sip.Request, *net.UDPAddr) {
	t.Helper()
	req, from := callee.request("INVITE")
	callee.reply(req, from, 200, "OK", toTag, calleeSDP)
	wantStatus(t, c.final(5*time.Second, nil), 200, "OK")
	return req, from
}

// answerBye answers a BYE received by an endpoint.
func answerBye(t testing.TB, e *endpoint) *sip.Request {
	t.Helper()
	req, from := e.request("BYE")
	e.reply(req, from, 200, "OK", "", "")
	return req
}

// waitNoCalls waits until the fsm and the server have no call left.
func waitNoCalls(t *testing.T, ts *testServer) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, "calls to end", func() bool {
		return len(ts.st.Calls()) == 0 && ts.ActiveCalls() == 0 && ts.calls.Dialogs() == 0
	})
}

// xdrFor returns the xDR of a call, waiting for it.
func xdrFor(t *testing.T, st *fsm.State, callID string) fsm.XDR {
	t.Helper()
	var x fsm.XDR
	testkit.WaitFor(t, 5*time.Second, "xDR of "+callID, func() bool {
		var ok bool
		x, ok = st.XDRForCall(callID)
		return ok
	})
	return x
}

func balance(st *fsm.State, id string) int64 {
	a, _ := st.Account(id)
	return a.Balance
}

// mediaLines returns the c= and m= and a= lines of an SDP body.
func mediaLines(sdp string) []string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
		if strings.HasPrefix(l, "c=") || strings.HasPrefix(l, "m=") || strings.HasPrefix(l, "a=") {
			out = append(out, l)
		}
	}
	return out
}
