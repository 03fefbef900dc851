package sipstack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/b2bua"
)

// A callee registered through an alias socket gets the INVITE, the ACK
// and the BYE from exactly that IP and port (the packet's source, not
// only the headers), with From/To, Via and Contact on the alias; SDP
// crosses unchanged both ways; the caller's BYE ends both legs.
func TestCallThroughAlias(t *testing.T) {
	t.Parallel()
	st := callState(t, 100_000_000)
	aliasIP := testIP()
	aliasPort := testkit.FreePort(t, aliasIP)
	testkit.MustApply(t, st, &fsm.PutAlias{Alias: fsm.Alias{IP: aliasIP, Ports: fsm.AliasPorts{UDP: []int{aliasPort}}}})
	ts := startServer(t, st, func(c *Config) { c.ServeAliases = true })
	aliasAddr := fmt.Sprintf("%s:%d", aliasIP, aliasPort)
	testkit.WaitFor(t, 5*time.Second, "alias socket", func() bool { return contains(ts.Sockets(), "udp:"+aliasAddr) })

	callee := newEndpoint(t, "127.0.0.1")
	bind(t, st, "2002", "sip:2002@"+callee.addr, callee.addr, "udp:"+aliasAddr)
	caller := newEndpoint(t, "127.0.0.1")
	c := invite(t, caller, ts.addr(t, "udp", ts.ip), "2001", "pw2001", "2002", testSDP)

	req, from := callee.request("INVITE")
	if from.String() != aliasAddr {
		t.Errorf("INVITE came from %s, want the alias %s", from, aliasAddr)
	}
	if h := req.From().Address.Host; h != aliasIP {
		t.Errorf("From host %q, want %s", h, aliasIP)
	}
	if h := req.To().Address.Host; h != aliasIP || req.To().Address.User != "2002" {
		t.Errorf("To %q, want 2002@%s", req.To().Value(), aliasIP)
	}
	// The callee sees the account's own name, never the caller's From
	// (which says "Spoofed Name"), and the identity the switch asserts.
	if req.From().Address.User != "2001" || req.From().DisplayName != "Alice" {
		t.Errorf("From %q", req.From().Value())
	}
	if pai := req.GetHeader("P-Asserted-Identity"); pai == nil || pai.Value() != `"Alice" <sip:2001@`+aliasIP+`>` {
		t.Errorf("P-Asserted-Identity %v", pai)
	}
	if v := req.Via(); fmt.Sprintf("%s:%d", v.Host, v.Port) != aliasAddr || len(req.GetHeaders("Via")) != 1 {
		t.Errorf("Via %q, want one on the alias", v.Value())
	}
	if ct := req.Contact(); ct == nil || fmt.Sprintf("%s:%d", ct.Address.Host, ct.Address.Port) != aliasAddr {
		t.Errorf("Contact %v, want the alias", req.Contact())
	}
	if req.CallID().Value() == c.callID || req.Recipient.String() != "sip:2002@"+callee.addr {
		t.Errorf("callee leg Call-ID %s, Request-URI %s", req.CallID().Value(), req.Recipient.String())
	}
	if string(req.Body()) != testSDP {
		t.Errorf("callee got SDP %q, want %q", req.Body(), testSDP)
	}
	if h := req.GetHeader("Subject"); h == nil || h.Value() != "test call" {
		t.Errorf("Subject not relayed: %v", h)
	}
	if req.GetHeader("Proxy-Authorization") != nil {
		t.Errorf("credentials leaked to the callee")
	}

	// sipgo handles each message in its own goroutine: a 200 sent right
	// behind the 180 may overtake it. Answer once the caller hears ringing.
	callee.reply(req, from, 180, "Ringing", "bobtag", "")
	ring := caller.wait("180", 5*time.Second, isResponse("INVITE", false)).msg.(*sip.Response)
	for ring.StatusCode != 180 {
		ring = caller.wait("180", 5*time.Second, isResponse("INVITE", false)).msg.(*sip.Response)
	}
	if tag, _ := ring.To().Params.Get("tag"); tag == "" || tag == "bobtag" {
		t.Errorf("180 To tag %q: want the switch's own", tag)
	}
	callee.reply(req, from, 200, "OK", "bobtag", calleeSDP)
	res := c.final(5*time.Second, nil)
	wantStatus(t, res, 200, "OK")
	if tag, _ := ring.To().Params.Get("tag"); tag != c.toTag {
		t.Errorf("180 and 200 carry different tags: %s, %s", tag, c.toTag)
	}
	if string(res.Body()) != calleeSDP {
		t.Errorf("caller got SDP %q", res.Body())
	}
	if want := "sip:" + ts.addr(t, "udp", ts.ip); !strings.HasPrefix(c.contact, want) {
		t.Errorf("switch's Contact to the caller %s, want on %s", c.contact, want)
	}
	c.ack()
	ack, ackFrom := callee.request("ACK")
	if ackFrom.String() != aliasAddr || ack.CallID().Value() != req.CallID().Value() {
		t.Errorf("ACK from %s for %s", ackFrom, ack.CallID().Value())
	}
	testkit.WaitFor(t, 5*time.Second, "answer recorded", func() bool {
		call, ok := st.Call(c.callID)
		return ok && call.ConnectAt != 0 && len(call.Legs) == 2
	})
	call, _ := st.Call(c.callID)
	if l := call.Legs[1]; l.Role != b2bua.LegCallee || l.Ingress != "udp:"+aliasAddr || l.Destination != callee.addr ||
		l.RemoteTag != "bobtag" || l.CallID != req.CallID().Value() {
		t.Errorf("callee leg %+v", l)
	}
	if l := call.Legs[0]; l.Role != b2bua.LegCaller || l.CallID != c.callID || l.RemoteTag != c.fromTag || l.LocalTag != c.toTag {
		t.Errorf("caller leg %+v", l)
	}

	c.bye(t)
	bye := answerBye(t, callee)
	if bye.CallID().Value() != req.CallID().Value() || bye.From().Address.Host != aliasIP {
		t.Errorf("BYE %s", bye)
	}
	x := xdrFor(t, st, c.callID)
	if x.Cause != 200 || x.DisconnectedBy != b2bua.ByCaller || x.ConnectAt == 0 || x.Account != "2001" || x.CLD != "2002" {
		t.Errorf("xDR %+v", x)
	}
	waitNoCalls(t, ts)
	if ts.counter("troika_sip_calls_answered_total") != 1 || ts.counter("troika_sip_calls_ended_total", "by", "caller") != 1 {
		t.Errorf("metrics: answered %v", ts.counter("troika_sip_calls_answered_total"))
	}
	// The operator follows the call at INFO.
	id := "call_id=" + c.callID
	for _, want := range [][]string{
		{"level=INFO", "msg=\"call started\"", id, "account=2001", "cld=2002", "callee=2002"},
		{"level=INFO", "msg=\"call answered\"", id},
		{"level=INFO", "msg=\"call ended\"", id, "cause=200", "by=caller", "amount=" + billing.FormatMoney(x.Amount)},
	} {
		if ts.logLines(want...) != 1 {
			t.Errorf("no log line with %q", want)
		}
	}
}

// A prepaid caller whose balance buys 3 seconds is cut at 3 s (±1): BYE
// on both legs, xDR by "timer", charged exactly the balance it had.
func TestPrepaidCut(t *testing.T) {
	t.Parallel()
	st := newTestState(t, false)
	putTariff(t, st, "p", fsm.Rate{PerMinute: 60_000_000, ConnectFee: 500_000, FirstInterval: 1, NextInterval: 1})
	const bal = 3*1_000_000 + 500_000
	addAccount(t, st, fsm.Account{ID: "4001", Credentials: testkit.Creds("4001", "pw4001"), Billing: fsm.Prepaid, Balance: bal, TariffOut: "p"})
	addAccount(t, st, fsm.Account{ID: "4002", Credentials: testkit.Creds("4002", "pw4002"), Billing: fsm.Prepaid})
	ts, srv, callee := serveCallee(t, st, "4002", nil)
	caller := newEndpoint(t, "127.0.0.1")

	c := invite(t, caller, srv, "4001", "pw4001", "4002", testSDP)
	req, _ := answer(t, c, callee, "cut")
	c.ack()
	if call, ok := st.Call(c.callID); !ok || call.MaxDuration != 3 || st.Reserved("4001") != bal {
		t.Fatalf("call %+v reserved %d", call, st.Reserved("4001"))
	}
	// Both legs get a BYE from the switch.
	byeCallee := answerBye(t, callee)
	byeCaller, byeFrom := caller.request("BYE")
	caller.reply(byeCaller, byeFrom, 200, "OK", "", "")
	if byeCallee.CallID().Value() != req.CallID().Value() || byeCaller.CallID().Value() != c.callID {
		t.Errorf("BYEs for %s and %s", byeCallee.CallID().Value(), byeCaller.CallID().Value())
	}
	x := xdrFor(t, st, c.callID)
	if x.DisconnectedBy != b2bua.ByTimer || x.Duration < 2 || x.Duration > 4 {
		t.Errorf("xDR %+v: want cut by the timer at 3 s", x)
	}
	want := min(toRate(fsm.Rate{PerMinute: 60_000_000, ConnectFee: 500_000, FirstInterval: 1, NextInterval: 1}).Charge(min(x.Duration, 3)), bal)
	if x.Amount != want || balance(st, "4001") != bal-want {
		t.Errorf("charged %d, balance %d; want %d, %d", x.Amount, balance(st, "4001"), want, bal-want)
	}
	if x.Duration >= 3 && balance(st, "4001") != 0 {
		t.Errorf("a call cut at its bought duration must use the whole balance; %d left", balance(st, "4001"))
	}
	if balance(st, "4001") < 0 || st.Reserved("4001") != 0 {
		t.Errorf("balance %d, reserved %d", balance(st, "4001"), st.Reserved("4001"))
	}
	waitNoCalls(t, ts)
	if ts.counter("troika_sip_calls_ended_total", "by", "timer") != 1 {
		t.Errorf("timer metric")
	}
}

// The callee refreshes the session with a re-INVITE, sends INFO, and
// hangs up: each is relayed to the caller in the caller's dialog.
func TestInDialogRelay(t *testing.T) {
	t.Parallel()
	st, ts, callee, c := callFrom2001(t, nil)
	caller, srv := c.e, c.server
	inv, from := answer(t, c, callee, "bob")
	// Until the caller ACKs, the switch retransmits its 200 (RFC 3261
	// §13.3.1.4), and the callee, whose 2xx was ACKed, hears nothing.
	if r := caller.wait("200 retransmission", 5*time.Second, isResponse("INVITE", true)).msg.(*sip.Response); r.StatusCode != 200 {
		t.Fatalf("retransmission %d", r.StatusCode)
	}
	callee.request("ACK")
	c.ack()

	// The caller re-INVITEs with a new offer; the callee sees it in its
	// own dialog and answers; the caller's ACK reaches the callee.
	newSDP := strings.Replace(testSDP, "40000", "40002", 1)
	c.cseq++
	c.e.send(srv, c.inDialog("INVITE", c.cseq, "z9hG4bKre1", newSDP))
	re, reFrom := callee.request("INVITE")
	if re.CallID().Value() != inv.CallID().Value() || string(re.Body()) != newSDP || re.CSeq().SeqNo != 2 {
		t.Fatalf("re-INVITE on the callee leg: %s", re)
	}
	if tag, _ := re.To().Params.Get("tag"); tag != "bob" {
		t.Errorf("re-INVITE To tag %q", tag)
	}
	callee.reply(re, reFrom, 200, "OK", "", strings.Replace(calleeSDP, "50000", "50002", 1))
	p := caller.wait("200 to re-INVITE", 5*time.Second, isResponse("INVITE", true))
	if r := p.msg.(*sip.Response); r.StatusCode != 200 || !strings.Contains(string(r.Body()), "50002") {
		t.Fatalf("re-INVITE answer %s", r)
	}
	caller.send(srv, c.inDialog("ACK", c.cseq, "z9hG4bKre1ack", ""))
	if ack, _ := callee.request("ACK"); ack.CSeq().SeqNo != 2 {
		t.Errorf("ACK of the re-INVITE: %s", ack)
	}

	// INFO from the callee to the caller.
	info := fmt.Sprintf("INFO sip:x@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKinfo;rport\r\nFrom: %s\r\nTo: %s\r\n"+
		"Call-ID: %s\r\nCSeq: 10 INFO\r\nMax-Forwards: 70\r\nContent-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=5\r\nDuration=160\r\n",
		srv, callee.addr, inv.To().Value()+";tag=bob", inv.From().Value(), inv.CallID().Value())
	callee.send(from.String(), info)
	got, gotFrom := caller.request("INFO")
	if got.CallID().Value() != c.callID || !strings.Contains(string(got.Body()), "Signal=5") || header(got, "Content-Type") != "application/dtmf-relay" {
		t.Errorf("INFO to the caller: %s", got)
	}
	caller.reply(got, gotFrom, 200, "OK", "", "")
	if r := callee.wait("200 to INFO", 5*time.Second, isResponse("INFO", true)).msg.(*sip.Response); r.StatusCode != 200 {
		t.Errorf("INFO answer %d", r.StatusCode)
	}

	// An unknown dialog gets 481.
	bad := strings.Replace(c.inDialog("BYE", 99, "z9hG4bKbad", ""), c.callID, "nosuchcall", 1)
	caller.send(srv, bad)
	if r := caller.wait("481", 5*time.Second, isResponse("BYE", true)).msg.(*sip.Response); r.StatusCode != 481 {
		t.Errorf("BYE of an unknown dialog: %d", r.StatusCode)
	}

	// The callee hangs up.
	bye := fmt.Sprintf("BYE sip:x@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKbye;rport\r\nFrom: %s\r\nTo: %s\r\n"+
		"Call-ID: %s\r\nCSeq: 11 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		srv, callee.addr, inv.To().Value()+";tag=bob", inv.From().Value(), inv.CallID().Value())
	callee.send(from.String(), bye)
	if r := callee.wait("200 to BYE", 5*time.Second, isResponse("BYE", true)).msg.(*sip.Response); r.StatusCode != 200 {
		t.Errorf("BYE answer %d", r.StatusCode)
	}
	answerBye(t, caller)
	if x := xdrFor(t, st, c.callID); x.DisconnectedBy != b2bua.ByCallee || x.Cause != 200 {
		t.Errorf("xDR %+v", x)
	}
	waitNoCalls(t, ts)
}

// Calls that end without an answer: each gets the right final status, an
// xDR with that cause when the call was started, and no charge.
func TestCallFailures(t *testing.T) {
	t.Parallel()
	const bal = 100_000_000
	setup := func(t *testing.T, mod func(*Config)) (*testServer, string, *endpoint, *endpoint) {
		st := callState(t, bal)
		putTariff(t, st, "uk", fsm.Rate{Prefix: "44", PerMinute: 1, FirstInterval: 1, NextInterval: 1})
		addAccount(t, st, fsm.Account{ID: "2003", Credentials: testkit.Creds("2003", "pw2003"), Billing: fsm.Prepaid, Balance: bal, TariffOut: "uk"})
		ts, srv, callee := serveCallee(t, st, "2002", mod)
		return ts, srv, callee, newEndpoint(t, "127.0.0.1")
	}
	noCharge := func(t *testing.T, ts *testServer, callID string, cause int, by string) {
		t.Helper()
		x := xdrFor(t, ts.st, callID)
		if x.Cause != cause || x.DisconnectedBy != by || x.Amount != 0 || x.ConnectAt != 0 {
			t.Errorf("xDR %+v: want cause %d by %s, no charge", x, cause, by)
		}
		if balance(ts.st, "2001") != bal || ts.st.Reserved("2001") != 0 {
			t.Errorf("balance %d reserved %d", balance(ts.st, "2001"), ts.st.Reserved("2001"))
		}
		waitNoCalls(t, ts)
		if ts.counter("troika_sip_calls_failed_total", "code", fmt.Sprint(cause)) != 1 {
			t.Errorf("calls_failed_total{code=%d} not counted", cause)
		}
	}

	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		ts, srv, callee, caller := setup(t, nil)
		c := invite(t, caller, srv, "2001", "pw2001", "2002", testSDP)
		req, from := callee.request("INVITE")
		callee.reply(req, from, 180, "Ringing", "b1", "")
		caller.wait("180", 5*time.Second, isStatus(180))
		c.cancel()
		if r := caller.wait("200 to CANCEL", 5*time.Second, isResponse("CANCEL", true)).msg.(*sip.Response); r.StatusCode != 200 {
			t.Errorf("CANCEL answered %d", r.StatusCode)
		}
		wantStatus(t, c.final(5*time.Second, nil), 487, "")
		cancel, cfrom := callee.answerCancel(req, from, "b1")
		if cfrom.String() != srv || cancel.CallID().Value() != req.CallID().Value() || cancel.Via().Params.GetOr("branch", "") != req.Via().Params.GetOr("branch", "x") {
			t.Errorf("CANCEL to the callee: %s", cancel)
		}
		callee.request("ACK")
		noCharge(t, ts, c.callID, 487, b2bua.ByCaller)
	})
	// The callee refuses: the caller gets its answer, the callee an ACK.
	for _, refusal := range []struct {
		name   string
		code   int
		reason string
	}{{"busy", 486, "Busy Here"}, {"decline", 603, "Decline"}} {
		t.Run(refusal.name, func(t *testing.T) {
			t.Parallel()
			ts, srv, callee, caller := setup(t, nil)
			c := invite(t, caller, srv, "2001", "pw2001", "2002", testSDP)
			req, from := callee.request("INVITE")
			callee.reply(req, from, refusal.code, refusal.reason, "b1", "")
			wantStatus(t, c.final(5*time.Second, nil), refusal.code, refusal.reason)
			if ack, _ := callee.request("ACK"); ack.CallID().Value() != req.CallID().Value() {
				t.Errorf("ACK of the %d: %s", refusal.code, ack)
			}
			noCharge(t, ts, c.callID, refusal.code, b2bua.ByCallee)
		})
	}
	t.Run("ring timeout", func(t *testing.T) {
		t.Parallel()
		ts, srv, callee, caller := setup(t, func(c *Config) { c.Calls.RingTimeout = 500 * time.Millisecond })
		c := invite(t, caller, srv, "2001", "pw2001", "2002", testSDP)
		req, from := callee.request("INVITE")
		callee.reply(req, from, 180, "Ringing", "b1", "")
		callee.answerCancel(req, from, "b1")
		wantStatus(t, c.final(5*time.Second, nil), 408, "")
		noCharge(t, ts, c.callID, 408, b2bua.ByTimer)
	})
	// 2009 has no binding this node can reach: 480.
	for _, unreachable := range []struct {
		name    string
		ingress string // of 2009's binding; "": none
		logged  string // what the server logs about it
	}{
		{"no bindings", "", ""},
		{"binding on another node's socket", "udp:192.0.2.1:5060", "not open on this node"},
	} {
		t.Run(unreachable.name, func(t *testing.T) {
			t.Parallel()
			ts, srv, _, caller := setup(t, nil)
			addAccount(t, ts.st, fsm.Account{ID: "2009", Credentials: testkit.Creds("2009", "pw2009"), Billing: fsm.Prepaid})
			if unreachable.ingress != "" {
				bind(t, ts.st, "2009", "sip:2009@127.0.0.1:5999", "127.0.0.1:5999", unreachable.ingress)
			}
			c := invite(t, caller, srv, "2001", "pw2001", "2009", testSDP)
			wantStatus(t, c.final(5*time.Second, nil), 480, "")
			noCharge(t, ts, c.callID, 480, b2bua.BySystem)
			if !strings.Contains(ts.logs.String(), unreachable.logged) {
				t.Errorf("skipped binding not logged (%q)", unreachable.logged)
			}
		})
	}

	// callFrom adds the prepaid caller id (password "pw"+id, tariff t1)
	// with balance and has it call 2002 from a new endpoint.
	callFrom := func(t *testing.T, ts *testServer, srv, id string, balance int64) *testCall {
		t.Helper()
		addAccount(t, ts.st, fsm.Account{ID: id, Credentials: testkit.Creds(id, "pw"+id), Billing: fsm.Prepaid, Balance: balance, TariffOut: "t1"})
		return invite(t, newEndpoint(t, "127.0.0.1"), srv, id, "pw"+id, "2002", testSDP)
	}

	// Refusals before any reservation: no xDR, nothing held.
	refused := func(t *testing.T, ts *testServer, c *testCall, code int, reason string) {
		t.Helper()
		wantStatus(t, c.final(5*time.Second, nil), code, reason)
		if _, ok := ts.st.XDRForCall(c.callID); ok {
			t.Errorf("xDR filed for a refused call")
		}
		waitNoCalls(t, ts)
		if ts.st.Reserved("2001") != 0 || ts.st.Reserved("2003") != 0 {
			t.Errorf("money held after a refusal")
		}
	}
	t.Run("unknown number", func(t *testing.T) {
		t.Parallel()
		ts, srv, _, caller := setup(t, nil)
		refused(t, ts, invite(t, caller, srv, "2001", "pw2001", "5555", testSDP), 404, "Not Found")
	})
	t.Run("no rate", func(t *testing.T) {
		t.Parallel()
		ts, srv, _, caller := setup(t, nil)
		refused(t, ts, invite(t, caller, srv, "2003", "pw2003", "2002", testSDP), 403, "Destination Not Allowed")
	})
	t.Run("insufficient funds", func(t *testing.T) {
		t.Parallel()
		ts, srv, _, _ := setup(t, nil)
		refused(t, ts, callFrom(t, ts, srv, "2004", 999_999), 402, "Payment Required")
		if ts.counter("troika_sip_calls_failed_total", "code", "402") != 1 {
			t.Errorf("402 not counted")
		}
	})
	t.Run("max calls", func(t *testing.T) {
		t.Parallel()
		ts, srv, callee, caller := setup(t, nil)
		one := 1
		testkit.MustApply(t, ts.st, &fsm.UpdateAccount{ID: "2002", Patch: fsm.AccountPatch{MaxCalls: &one}})
		testkit.MustApply(t, ts.st, &fsm.UpdateAccount{ID: "2001", Patch: fsm.AccountPatch{MaxCalls: &one}})
		first := invite(t, caller, srv, "2001", "pw2001", "2002", testSDP)
		req, from := callee.request("INVITE")
		callee.reply(req, from, 180, "Ringing", "b1", "")
		// The callee is busy with one call: 486.
		wantStatus(t, callFrom(t, ts, srv, "2006", bal).final(5*time.Second, nil), 486, "Busy Here")
		// The caller is at its own limit: 403.
		c := invite(t, newEndpoint(t, "127.0.0.1"), srv, "2001", "pw2001", "2002", testSDP)
		wantStatus(t, c.final(5*time.Second, nil), 403, "Too Many Calls")
		first.cancelled(t)
		waitNoCalls(t, ts)
	})
	t.Run("write failure", func(t *testing.T) {
		t.Parallel()
		ts, srv, _, caller := setup(t, nil)
		ts.store.Fail.Store(true)
		c := invite(t, caller, srv, "2001", "pw2001", "2002", testSDP)
		wantRetryLater(t, c.final(5*time.Second, nil))
		ts.store.Fail.Store(false)
		waitNoCalls(t, ts)
	})
	t.Run("node full", func(t *testing.T) {
		t.Parallel()
		ts, srv, callee, caller := setup(t, func(c *Config) { c.Calls.MaxCalls = 1 })
		first := invite(t, caller, srv, "2001", "pw2001", "2002", testSDP)
		callee.request("INVITE")
		wantRetryLater(t, callFrom(t, ts, srv, "2007", bal).final(5*time.Second, nil))
		first.cancelled(t)
		waitNoCalls(t, ts)
	})
	t.Run("header injection", func(t *testing.T) {
		t.Parallel()
		_, srv, callee, caller := setup(t, nil)
		// A bare LF inside a header value: sipgo splits lines at CRLF
		// only, so this is one Subject header holding "\nX-Injected: 1",
		// which copied verbatim would become a header of its own.
		inviteExtra(t, caller, srv, "2001", "pw2001", "2002", testSDP, "Subject: hi\nX-Injected: 1\r\nPriority: urgent\x00\r\n")
		p := callee.wait("INVITE", 10*time.Second, isRequest("INVITE"))
		if strings.Contains(p.raw, "X-Injected") || strings.Contains(p.raw, "\x00") || strings.Contains(p.raw, "\nPriority") {
			t.Errorf("unsafe header crossed to the callee:\n%q", p.raw)
		}
		if !strings.Contains(p.raw, "Subject: test call\r\n") {
			t.Errorf("safe Subject not relayed:\n%q", p.raw)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		t.Parallel()
		ts, srv, _, caller := setup(t, nil)
		c := invite(t, caller, srv, "2001", "pw2001", "2002", "v=0\r\nthis is not sdp\r\n")
		wantStatus(t, c.final(5*time.Second, nil), 488, "Malformed SDP")
		c = invite(t, caller, srv, "2001", "pw2001", "2002", strings.Repeat("a=x\r\n", 5000))
		wantStatus(t, c.final(5*time.Second, nil), 413, "")
		waitNoCalls(t, ts)
	})
}

// Unknown callers and wrong passwords get the same answers, as at the
// registrar: the same 407, then the same 403.
func TestInviteAuthNoEnumeration(t *testing.T) {
	t.Parallel()
	ts := startServer(t, callState(t, 100_000_000), nil)
	srv := ts.addr(t, "udp", ts.ip)
	var finals []*sip.Response
	// 1001 exists, 1003 does not, 1009 is blocked (names differing only in
	// the last digit, which compareResponses ignores).
	for _, who := range [][2]string{{"1001", "wrong"}, {"1003", "whatever"}, {"1009", "pw1009"}} {
		c := invite(t, newEndpoint(t, "127.0.0.1"), srv, who[0], who[1], "2002", testSDP)
		finals = append(finals, c.final(5*time.Second, nil))
	}
	wantStatus(t, finals[0], 403, "Forbidden")
	for _, f := range finals[1:] {
		compareResponses(t, finals[0], f)
	}
	if len(ts.st.Calls()) != 0 || len(ts.st.XDRs(fsm.XDRFilter{})) != 0 {
		t.Errorf("a call was started")
	}
}

// Two phones share an account: both ring (each its own leg), the first
// 2xx wins, the other is CANCELled; a 2xx that comes anyway is ACKed and
// BYEd.
func TestForking(t *testing.T) {
	t.Parallel()
	for _, late := range []bool{false, true} {
		t.Run(fmt.Sprintf("late 2xx %v", late), func(t *testing.T) {
			t.Parallel()
			st := callState(t, 100_000_000)
			ts := startServer(t, st, nil)
			srv := ts.addr(t, "udp", ts.ip)
			a, b := newEndpoint(t, "127.0.0.1"), newEndpoint(t, "127.0.0.1")
			bind(t, st, "2002", "sip:2002@"+a.addr, a.addr, "udp:"+srv)
			bind(t, st, "2002", "sip:2002@"+b.addr, b.addr, "udp:"+srv)
			c := invite(t, newEndpoint(t, "127.0.0.1"), srv, "2001", "pw2001", "2002", testSDP)
			ra, fa := a.request("INVITE")
			rb, fb := b.request("INVITE")
			if ra.CallID().Value() == rb.CallID().Value() || ra.CallID().Value() == c.callID {
				t.Errorf("legs share a Call-ID")
			}
			a.reply(ra, fa, 180, "Ringing", "ta", "")
			b.reply(rb, fb, 180, "Ringing", "tb", "")
			c.e.wait("180", 5*time.Second, isStatus(180))
			a.reply(ra, fa, 200, "OK", "ta", calleeSDP)
			wantStatus(t, c.final(5*time.Second, nil), 200, "OK")
			c.ack()
			a.request("ACK")

			cancel, cfrom := b.request("CANCEL")
			b.reply(cancel, cfrom, 200, "OK", "", "")
			if late {
				b.reply(rb, fb, 200, "OK", "tb", calleeSDP)
				if ack, _ := b.request("ACK"); ack.CallID().Value() != rb.CallID().Value() {
					t.Errorf("late 2xx ACK %s", ack)
				}
				bye := answerBye(t, b)
				if tag, _ := bye.To().Params.Get("tag"); tag != "tb" {
					t.Errorf("BYE of the late 2xx: %s", bye)
				}
			} else {
				b.reply(rb, fb, 487, "Request Terminated", "tb", "")
				b.request("ACK")
			}
			c.bye(t)
			if bye := answerBye(t, a); bye.CallID().Value() != ra.CallID().Value() {
				t.Errorf("BYE to the winner: %s", bye)
			}
			if x := xdrFor(t, st, c.callID); x.Cause != 200 || x.ConnectAt == 0 {
				t.Errorf("xDR %+v", x)
			}
			waitNoCalls(t, ts)
			if late && ts.counter("troika_sip_callee_legs_total", "result", "late_answer") != 1 {
				t.Errorf("late answer not counted")
			}
		})
	}
}

// A phone registered over TCP gets its INVITE on the connection it
// registered with (sipgo finds it by the phone's address; the listener's
// address would pick any accepted connection), and answers on it.
func TestCallToTCPPhone(t *testing.T) {
	t.Parallel()
	st := callState(t, 100_000_000)
	ts := startServer(t, st, nil)
	tcpSrv := ts.addr(t, "tcp", ts.ip)
	conn := dial(t, "tcp", tcpSrv)
	// Another connection to the same socket, accepted later: sipgo files
	// it under the listener's address too.
	other := dial(t, "tcp", tcpSrv)
	extra := "Contact: <sip:2002@" + conn.LocalAddr().String() + ";transport=tcp>\r\n"
	chal := streamExchange(t, conn, rawRegister(tcpSrv, "2002", "tcpreg", 1, "TCP", extra))
	wantStatus(t, streamExchange(t, conn, rawRegister(tcpSrv, "2002", "tcpreg", 2, "TCP",
		extra+rawAuth(t, chal, "SHA-256", "sip:"+tcpSrv, "2002", "pw2002"))), 200, "OK")
	streamExchange(t, other, options(tcpSrv, "tcp-other"))

	caller := newEndpoint(t, "127.0.0.1")
	c := invite(t, caller, ts.addr(t, "udp", ts.ip), "2001", "pw2001", "2002", testSDP)
	r := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	m := readStreamMessage(t, r)
	inv, ok := m.(*sip.Request)
	if !ok || inv.Method != sip.INVITE {
		t.Fatalf("got %v on the phone's connection", m)
	}
	if v := inv.Via(); v.Transport != "TCP" || fmt.Sprintf("%s:%d", v.Host, v.Port) != tcpSrv {
		t.Errorf("Via %s", v.Value())
	}
	if ct := inv.Contact(); ct == nil || !strings.Contains(ct.Value(), "transport=tcp") {
		t.Errorf("Contact %v", inv.Contact())
	}
	resp := fmt.Sprintf("SIP/2.0 200 OK\r\nVia: %s\r\nFrom: %s\r\nTo: %s;tag=tcpphone\r\nCall-ID: %s\r\nCSeq: %s\r\n"+
		"Contact: <sip:2002@%s;transport=tcp>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		inv.Via().Value(), inv.From().Value(), inv.To().Value(), inv.CallID().Value(), inv.CSeq().Value(), conn.LocalAddr(), len(calleeSDP), calleeSDP)
	if _, err := conn.Write([]byte(resp)); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, c.final(5*time.Second, nil), 200, "OK")
	c.ack()
	if m := readStreamMessage(t, r); m.(*sip.Request).Method != sip.ACK {
		t.Fatalf("want ACK, got %v", m)
	}
	c.bye(t)
	bye := readStreamMessage(t, r).(*sip.Request)
	if bye.Method != sip.BYE {
		t.Fatalf("want BYE, got %v", bye)
	}
	ok200 := fmt.Sprintf("SIP/2.0 200 OK\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n",
		bye.Via().Value(), bye.From().Value(), bye.To().Value(), bye.CallID().Value(), bye.CSeq().Value())
	conn.Write([]byte(ok200))
	if x := xdrFor(t, st, c.callID); x.Cause != 200 || x.ConnectAt == 0 {
		t.Errorf("xDR %+v", x)
	}
	waitNoCalls(t, ts)
}

// Stopping the server: a ringing call is ended (xDR, nothing reserved);
// an answered call is left in the cluster state for another node to
// adopt; Run returns promptly either way.
func TestShutdownWithCalls(t *testing.T) {
	t.Parallel()
	st := callState(t, 100_000_000)
	addAccount(t, st, fsm.Account{ID: "2005", Credentials: testkit.Creds("2005", "pw2005"), Billing: fsm.Prepaid, Balance: 100_000_000, TariffOut: "t1"})
	ip := testIP()
	s, err := New(Config{Addresses: []string{ip}, UDPPorts: []int{0}, Registrar: RegistrarConfig{Realm: "troika"},
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}, st, testkit.NewStore(st))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-s.Ready()
	srv := strings.TrimPrefix(s.Sockets()[0], "udp:")
	callee := newEndpoint(t, "127.0.0.1")
	bind(t, st, "2002", "sip:2002@"+callee.addr, callee.addr, "udp:"+srv)

	answered := invite(t, newEndpoint(t, "127.0.0.1"), srv, "2001", "pw2001", "2002", testSDP)
	answer(t, answered, callee, "a")
	answered.ack()
	testkit.WaitFor(t, 5*time.Second, "answer recorded", func() bool { c, ok := st.Call(answered.callID); return ok && c.ConnectAt != 0 })

	ringing := invite(t, newEndpoint(t, "127.0.0.1"), srv, "2005", "pw2005", "2002", testSDP)
	req, from := callee.request("INVITE")
	callee.reply(req, from, 180, "Ringing", "r", "")
	testkit.WaitFor(t, 5*time.Second, "ringing call started", func() bool { _, ok := st.Call(ringing.callID); return ok })

	began := time.Now()
	cancel()
	testkit.WaitNoError(t, done, 10*time.Second, "Run")
	t.Logf("stopped in %s", time.Since(began))
	if x, ok := st.XDRForCall(ringing.callID); !ok || x.ConnectAt != 0 || st.Reserved("2005") != 0 {
		t.Errorf("ringing call at shutdown: xDR %+v (%v), reserved %d", x, ok, st.Reserved("2005"))
	}
	if c, ok := st.Call(answered.callID); !ok || len(c.Legs) != 2 {
		t.Errorf("answered call not left for adoption: %+v", c)
	}
}

// A caller that never ACKs the 200 gets it retransmitted, then both legs
// are hung up (AckTimeout) and the call is filed as ended by the system.
func TestNoAckHangsUp(t *testing.T) {
	t.Parallel()
	st, ts, callee, c := callFrom2001(t, func(c *Config) { c.Calls.AckTimeout = 1500 * time.Millisecond })
	caller := c.e
	answer(t, c, callee, "n")
	callee.request("ACK")
	retrans := 0
	for {
		p := caller.wait("200 retransmission or BYE", 10*time.Second, func(m sip.Message) bool {
			r, ok := m.(*sip.Response)
			return ok && r.StatusCode == 200 || isRequest("BYE")(m)
		})
		if bye, ok := p.msg.(*sip.Request); ok {
			caller.reply(bye, p.from, 200, "OK", "", "")
			break
		}
		retrans++
	}
	answerBye(t, callee)
	if retrans == 0 {
		t.Errorf("the 200 was not retransmitted")
	}
	if x := xdrFor(t, st, c.callID); x.DisconnectedBy != b2bua.BySystem || x.Cause != 408 {
		t.Errorf("xDR %+v", x)
	}
	waitNoCalls(t, ts)
}

// The engineer on call hangs up an answered call: both legs get a BYE,
// the xDR says the operator ended it. A ringing call, or one this node
// does not run, is refused and left alone.
func TestOperatorHangsUpACall(t *testing.T) {
	t.Parallel()
	st, ts, callee, c := callFrom2001(t, nil)
	caller := c.e
	req, from := callee.request("INVITE")
	if err := ts.HangupCall(c.callID); !errors.Is(err, ErrCallNotAnswered) {
		t.Fatalf("hanging up a ringing call: %v", err)
	}
	if err := ts.HangupCall("no-such-call"); !errors.Is(err, ErrCallNotHere) {
		t.Fatalf("hanging up an unknown call: %v", err)
	}
	callee.reply(req, from, 200, "OK", "bobtag", calleeSDP)
	wantStatus(t, c.final(5*time.Second, nil), 200, "OK")
	c.ack()
	callee.request("ACK")
	testkit.WaitFor(t, 5*time.Second, "answer recorded", func() bool { call, ok := st.Call(c.callID); return ok && call.ConnectAt != 0 })

	done := make(chan error, 1)
	go func() { done <- ts.HangupCall(c.callID) }()
	answerBye(t, callee)
	byeCaller, byeFrom := caller.request("BYE")
	caller.reply(byeCaller, byeFrom, 200, "OK", "", "")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	x := xdrFor(t, st, c.callID)
	if x.DisconnectedBy != b2bua.ByOperator || x.Cause != 200 || x.CauseText != "Hung up by the operator" {
		t.Errorf("xDR %+v", x)
	}
	waitNoCalls(t, ts)
	if ts.counter("troika_sip_calls_ended_total", "by", "operator") != 1 {
		t.Errorf("calls ended by the operator: %v", ts.counter("troika_sip_calls_ended_total", "by", "operator"))
	}
}
