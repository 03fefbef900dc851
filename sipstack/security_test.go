package sipstack

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// A Proxy-Authorization captured from a call buys nothing: replayed from
// another address, with another Call-ID, towards another number, or the
// same request again with the same nc, it is refused, and nobody is
// billed or called.
func TestCapturedInviteCredentialsBuyNothing(t *testing.T) {
	t.Parallel()
	st := callState(t, 100_000_000)
	addAccount(t, st, fsm.Account{ID: "2003", Credentials: testkit.Creds("2003", "pw2003"), Billing: fsm.Prepaid})
	ts, srv, callee := serveCallee(t, st, "2002", nil)
	victim := newEndpoint(t, testIP())

	// The victim's call, which the attacker sniffs.
	c := invite(t, victim, srv, "2001", "pw2001", "2002", testSDP)
	answer(t, c, callee, "bob")
	c.ack()
	callee.request("ACK")
	c.bye(t)
	answerBye(t, callee)
	waitNoCalls(t, ts)
	paid, xdrs := balance(st, "2001"), st.Counts().XDRs

	host, _, _ := net.SplitHostPort(srv)
	attacker := newEndpoint(t, testIP())
	replay := func(name string, e *endpoint, mod func(r *testCall)) *sip.Response {
		t.Helper()
		r := *c
		r.e, r.cseq, r.branch = e, c.cseq+1, "z9hG4bK"+sip.GenerateTagN(10)
		mod(&r)
		e.send(srv, r.inviteText(host, "Proxy-Authorization: "+c.auth+"\r\n"))
		p := e.wait(name+": answer", 5*time.Second, isResponse("INVITE", true))
		res := p.msg.(*sip.Response)
		r.ackFailure(res)
		if _, ok := callee.maybe(200*time.Millisecond, isRequest("INVITE")); ok {
			t.Fatalf("%s: the callee was called", name)
		}
		return res
	}
	challenged := func(res *sip.Response, stale bool) bool {
		h := res.GetHeader("Proxy-Authenticate")
		return res.StatusCode == 407 && h != nil && strings.Contains(h.Value(), "stale=true") == stale
	}
	if res := replay("from another address", attacker, func(r *testCall) {}); !challenged(res, false) {
		t.Errorf("from another address: %d %s, want a fresh challenge", res.StatusCode, res.Reason)
	}
	if res := replay("another Call-ID", victim, func(r *testCall) { r.callID = sip.GenerateTagN(12) + "@test" }); !challenged(res, false) {
		t.Errorf("another Call-ID: %d %s, want a fresh challenge", res.StatusCode, res.Reason)
	}
	if res := replay("another number", victim, func(r *testCall) { r.ruri = "sip:2003@" + srv }); res.StatusCode != 400 {
		t.Errorf("another Request-URI: %d %s, want 400", res.StatusCode, res.Reason)
	}
	if res := replay("the same nc", victim, func(r *testCall) {}); !challenged(res, true) {
		t.Errorf("the same nc again: %d %s, want a challenge with stale=true", res.StatusCode, res.Reason)
	}
	if got := balance(st, "2001"); got != paid || st.Counts().XDRs != xdrs || len(st.Calls()) != 0 {
		t.Fatalf("after the replays: balance %d (was %d), %d xDRs (was %d), calls %+v", got, paid, st.Counts().XDRs, xdrs, st.Calls())
	}
	for _, reason := range []string{"foreign_nonce", "uri_mismatch", "replay"} {
		if n := ts.counter("troika_sip_auth_refusals_total", "reason", reason); n < 1 {
			t.Errorf("auth refusals %s: %v", reason, n)
		}
	}
}

// registerFrom sends a REGISTER of user from e (Via and Contact on e's
// address) and returns the answer.
func registerFrom(t *testing.T, e *endpoint, srv, user, callID string, cseq int, extra string) *sip.Response {
	t.Helper()
	msg := strings.Replace(rawRegister(srv, user, callID, cseq, "UDP", "Contact: <sip:"+user+"@"+e.addr+">\r\n"+extra), "@LOCAL@", e.addr, 1)
	e.send(srv, msg)
	return e.wait("REGISTER answer", 5*time.Second, isResponse("REGISTER", true)).msg.(*sip.Response)
}

// An Authorization captured from a REGISTER, replayed from another
// address with the attacker's Contact, registers nothing.
func TestCapturedRegisterCredentialsBuyNothing(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	srv := ts.addr(t, "udp", ts.ip)
	victim := newEndpoint(t, testIP())
	attacker := newEndpoint(t, testIP())
	callID := sip.GenerateTagN(12) + "@phone"
	chal := registerFrom(t, victim, srv, "1001", callID, 1, "")
	wantStatus(t, chal, 401, "")
	authz := rawAuth(t, chal, "MD5", "sip:"+srv, "1001", "pw1001")
	wantStatus(t, registerFrom(t, victim, srv, "1001", callID, 2, authz), 200, "OK")

	if res := registerFrom(t, attacker, srv, "1001", callID, 3, authz); res.StatusCode != 401 {
		t.Errorf("replay from another address: %d %s, want 401", res.StatusCode, res.Reason)
	}
	if res := registerFrom(t, victim, srv, "1001", callID, 4, authz); res.StatusCode != 401 || !strings.Contains(header(res, "WWW-Authenticate"), "stale=true") {
		t.Errorf("the same nc again: %d %s, want 401 stale=true", res.StatusCode, res.Reason)
	}
	bs := ts.st.Bindings("1001", time.Now().UnixMilli())
	if len(bs) != 1 || !strings.Contains(bs[0].Contact, victim.addr) || bs[0].CSeq != 2 {
		t.Fatalf("bindings %+v, want the victim's, as it registered", bs)
	}
}

// A burst of failed REGISTERs sent with a forged source (the real phone's
// address; the attacker never sees the answers there, so it answers
// nonces issued to its own address) does not lock the real phone out.
func TestForgedSourceDoesNotLockOutThePhone(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, func(c *Config) { c.Registrar.AuthFailuresPerMinute = 5 })
	srv := ts.addr(t, "udp", ts.ip)
	phoneIP := testIP()
	attacker := newEndpoint(t, testIP())
	forged := newEndpoint(t, phoneIP) // sends as the phone; the attacker cannot read what it gets
	for i := range 21 {
		callID := fmt.Sprintf("guess-%d@x", i)
		chal := registerFrom(t, attacker, srv, "1001", callID, 1, "")
		res := registerFrom(t, forged, srv, "1001", callID, 2, rawAuth(t, chal, "MD5", "sip:"+srv, "1001", fmt.Sprintf("guess%d", i)))
		if res.StatusCode != 401 {
			t.Fatalf("forged guess %d: %d %s, want a challenge (its nonce is not the phone's)", i, res.StatusCode, res.Reason)
		}
	}
	if n := ts.counter("troika_sip_auth_refusals_total", "reason", "foreign_nonce"); n < 21 {
		t.Errorf("forged guesses refused for their nonce: %v, want 21", n)
	}
	phone := newEndpoint(t, phoneIP)
	chal := registerFrom(t, phone, srv, "1001", "phone@x", 1, "")
	wantStatus(t, registerFrom(t, phone, srv, "1001", "phone@x", 2, rawAuth(t, chal, "MD5", "sip:"+srv, "1001", "pw1001")), 200, "OK")
}

// 1,000 password guesses against one account from 50 addresses: the
// guard lets a handful be checked (its burst, then 20 a minute) and
// answers the rest 503 unchecked, while the account's own phone, which
// registered before, keeps registering. With the guard off every guess is
// checked (the figure before it).
func TestDistributedGuessingIsSlowed(t *testing.T) {
	t.Parallel()
	for _, guard := range []bool{false, true} {
		ts := startServer(t, nil, func(c *Config) {
			if !guard {
				c.Registrar.AccountGuessesPerMinute = -1
			}
		})
		srv := ts.addr(t, "udp", ts.ip)
		phone := newEndpoint(t, testIP())
		chal := registerFrom(t, phone, srv, "1001", "phone@x", 1, "")
		wantStatus(t, registerFrom(t, phone, srv, "1001", "phone@x", 2, rawAuth(t, chal, "MD5", "sip:"+srv, "1001", "pw1001")), 200, "OK")

		began := time.Now()
		var sources []*endpoint
		for range 50 {
			sources = append(sources, newEndpoint(t, testIP()))
		}
		answers := map[int]int{}
		for i := range 1000 {
			e := sources[i%50]
			callID := fmt.Sprintf("guess-%d@x", i)
			chal := registerFrom(t, e, srv, "1001", callID, 1, "")
			res := registerFrom(t, e, srv, "1001", callID, 2, rawAuth(t, chal, "MD5", "sip:"+srv, "1001", fmt.Sprintf("guess%04d", i)))
			answers[res.StatusCode]++
			if i == 500 && guard { // the real phone, mid-attack
				chal := registerFrom(t, phone, srv, "1001", "phone@x", 3, "")
				wantStatus(t, registerFrom(t, phone, srv, "1001", "phone@x", 4, rawAuth(t, chal, "MD5", "sip:"+srv, "1001", "pw1001")), 200, "OK")
			}
		}
		elapsed := time.Since(began)
		checked := ts.counter("troika_sip_auth_refusals_total", "reason", "wrong_password")
		throttled := ts.counter("troika_sip_auth_refusals_total", "reason", "throttled")
		t.Logf("guard %v: 1000 guesses from 50 addresses in %s: %v checked, %v refused unchecked (503), answers %v",
			guard, elapsed.Round(time.Millisecond), checked, throttled, answers)
		if !guard {
			if checked != 1000 {
				t.Errorf("without the guard %v guesses were checked, want all 1000", checked)
			}
			continue
		}
		if limit := 10 + 20*elapsed.Minutes() + 1; checked > limit || answers[503] == 0 {
			t.Errorf("%v guesses checked in %s, want at most %.0f (burst 10, 20 a minute), the rest 503", checked, elapsed, limit)
		}
	}
}
