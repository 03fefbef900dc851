package sipstack

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
)

// Redirect-server delivery (seeds/redirect-server-delivery.txt) and
// follow-me, with SIPp redirect servers (testdata/redirect_302.xml) and
// PBXs (testdata/uas.xml), and raw UDP endpoints where a test must see
// every packet (or that none came).

const easyCall = "80032555939"

// Rates of these tests: the account's incoming tariff "in" (0.01 a
// second) and outgoing tariff "out" (to 1...: 0.05 connect fee, 0.02 a
// second).
var (
	rateIn  = fsm.Rate{PerMinute: 600_000, FirstInterval: 1, NextInterval: 1}
	rateOut = fsm.Rate{Prefix: "1", PerMinute: 1_200_000, ConnectFee: 50_000, FirstInterval: 1, NextInterval: 1}
)

// sippRedirector runs a SIPp redirect server on ip:port until the test
// ends: its n-th INVITE gets a 302 to contacts[n]. The func returns its
// message log.
func sippRedirector(t *testing.T, ip string, port int, contacts ...string) func() string {
	t.Helper()
	inf := filepath.Join(t.TempDir(), "contacts.csv")
	if err := os.WriteFile(inf, []byte("SEQUENTIAL\n"+strings.Join(contacts, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return sippServer(t, "testdata/redirect_302.xml", ip, port, "-inf", inf)
}

// redirectEnv is a switch with caller 2001 (100.00, tariff t1: 1.00 a
// second) and account 80032555939 delivering statically to a redirect
// server at rs, under service policy "easycall" (pol).
type redirectEnv struct {
	*testServer
	srv string // the switch's UDP socket
	rs  string // the redirect server's ip:port
}

func newRedirectEnv(t *testing.T, pol fsm.RedirectPolicy, acct func(*fsm.Account), mod func(*Config)) *redirectEnv {
	t.Helper()
	st := callState(t, 100_000_000)
	putTariff(t, st, "in", rateIn)
	putTariff(t, st, "out", rateOut)
	testkit.MustApply(t, st, &fsm.PutServicePolicy{Policy: fsm.ServicePolicy{ID: "easycall", Redirect: pol}})
	rsIP := testIP()
	rsPort := testkit.FreePort(t, rsIP)
	a := fsm.Account{ID: easyCall, Credentials: testkit.Creds(easyCall, "pw"+easyCall), Billing: fsm.Prepaid, Balance: 50_000_000, TariffIn: "in",
		TariffOut: "out", ServicePolicy: "easycall", Incoming: fsm.Incoming{Mode: fsm.DeliverStatic, Host: rsIP, Port: rsPort, Transport: "udp"}}
	if acct != nil {
		acct(&a)
	}
	addAccount(t, st, a)
	ts := startServer(t, st, func(c *Config) {
		c.Registrar.Algorithms = []string{"MD5"}
		c.Calls.MaxCallSeconds = 600 // the incoming reservation leaves money for a new authorization
		if mod != nil {
			mod(c)
		}
	})
	return &redirectEnv{testServer: ts, srv: ts.addr(t, "udp", ts.ip), rs: joinHP(rsIP, rsPort)}
}

func joinHP(ip string, port int) string { return ip + ":" + strconv.Itoa(port) }

// rawRedirector moves the account's static delivery to a raw UDP
// endpoint, which the test answers itself.
func (e *redirectEnv) rawRedirector(t *testing.T) *endpoint {
	t.Helper()
	rs := newEndpoint(t, testIP())
	ap := netip.MustParseAddrPort(rs.addr)
	testkit.MustApply(t, e.st, &fsm.UpdateAccount{ID: easyCall, Patch: fsm.AccountPatch{Incoming: &fsm.Incoming{Mode: fsm.DeliverStatic,
		Host: ap.Addr().String(), Port: int(ap.Port()), Transport: "udp"}}})
	e.rs = rs.addr
	return rs
}

// redirect has the raw redirect server rs answer the INVITE it gets with
// a 302 carrying the raw header lines contacts.
func redirect(rs *endpoint, contacts ...string) {
	rs.t.Helper()
	req, from := rs.request("INVITE")
	rs.reply(req, from, 302, "Moved Temporarily", "rs", "", contacts...)
}

func (e *redirectEnv) rsIPPort() (string, int) {
	ap := netip.MustParseAddrPort(e.rs)
	return ap.Addr().String(), int(ap.Port())
}

// setPolicy replaces the account's service policy "easycall".
func (e *redirectEnv) setPolicy(t *testing.T, pol fsm.RedirectPolicy) {
	t.Helper()
	testkit.MustApply(t, e.st, &fsm.PutServicePolicy{Policy: fsm.ServicePolicy{ID: "easycall", Redirect: pol}})
}

// sippRedirector runs the account's redirect server as a SIPp redirect
// server (see the function sippRedirector) and returns its message log.
func (e *redirectEnv) sippRedirector(t *testing.T, contacts ...string) func() string {
	t.Helper()
	rsIP, rsPort := e.rsIPPort()
	return sippRedirector(t, rsIP, rsPort, contacts...)
}

// call places a call from 2001 (on a fresh raw UDP caller) to the account.
func (e *redirectEnv) call(t *testing.T) *testCall {
	t.Helper()
	return invite(t, newEndpoint(t, testIP()), e.srv, "2001", "pw2001", easyCall, testSDP)
}

// wantRedirects checks an xDR's redirects.
func wantRedirects(t *testing.T, x fsm.XDR, want ...fsm.Redirect) {
	t.Helper()
	if !reflect.DeepEqual(x.Redirects, want) {
		t.Errorf("redirects %+v, want %+v", x.Redirects, want)
	}
}

// wantConnected checks that the xDR's call was answered.
func wantConnected(t *testing.T, x fsm.XDR) {
	t.Helper()
	if x.ConnectAt == 0 {
		t.Errorf("xDR %+v: the call was not answered", x)
	}
}

// wantInvited checks that the SIPp log of what holds an INVITE to ruri.
func wantInvited(t *testing.T, what string, log func() string, ruri string) {
	t.Helper()
	if !strings.Contains(log(), "INVITE "+ruri+" SIP/2.0") {
		t.Errorf("%s log:\n%s", what, tail(log(), 2000))
	}
}

// loopbackIsPublic lets loopback PBXs stand in for public addresses.
func loopbackIsPublic(c *Config) {
	c.Delivery.Internal = func(a netip.Addr) bool { return !a.IsLoopback() && billing.Internal(a) }
}

// pbx is a SIPp callee on a fresh loopback address.
func pbx(t *testing.T) (addr string, log func() string) {
	ip := testIP()
	port := testkit.FreePort(t, ip)
	return joinHP(ip, port), sippUAS(t, ip, port)
}

// chargeOf returns the xDR's charges of account.
func chargesOf(x fsm.XDR, account string) []fsm.XDRCharge {
	var out []fsm.XDRCharge
	for _, c := range x.Charges {
		if c.Account == account {
			out = append(out, c)
		}
	}
	return out
}

// waitXDRs waits for the n xDRs of account (a SIPp caller may be done
// as the switch files the last one) and fails on more.
func waitXDRs(t *testing.T, st *fsm.State, account string, n int) []fsm.XDR {
	t.Helper()
	var xs []fsm.XDR
	testkit.WaitFor(t, 5*time.Second, fmt.Sprintf("%d xDRs of %s", n, account), func() bool {
		xs = st.XDRs(fsm.XDRFilter{Account: account})
		return len(xs) >= n
	})
	if len(xs) != n {
		t.Fatalf("%d xDRs of %s, want %d", len(xs), account, n)
	}
	return xs
}

// settled checks that nothing of the call is left: no call in the fsm or
// on the server, no money held.
func settled(t *testing.T, ts *testServer, accounts ...string) {
	t.Helper()
	waitNoCalls(t, ts)
	for _, a := range accounts {
		if r := ts.st.Reserved(a); r != 0 {
			t.Errorf("%s still has %d reserved", a, r)
		}
	}
}

// The seed's example: 80032555939 delivers to its redirect server, which
// sends the first call to 12035554433@PBX1 and the second to
// 12065551201@PBX2, both trusted by the account's policy. Each call
// connects to its PBX and leaves one xDR charging 80032555939 by its
// incoming tariff (nothing outgoing), with the redirect recorded.
func TestSIPpRedirectServer(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	pbx1IP, pbx2IP := testIP(), testIP()
	pbx1Port, pbx2Port := testkit.FreePort(t, pbx1IP), testkit.FreePort(t, pbx2IP)
	e := newRedirectEnv(t, fsm.RedirectPolicy{TrustedNetworks: []string{pbx1IP, pbx2IP}, UntrustedAction: billing.RejectRedirect}, nil, nil)
	targets := []string{fmt.Sprintf("sip:12035554433@%s:%d", pbx1IP, pbx1Port), fmt.Sprintf("sip:12065551201@%s:%d", pbx2IP, pbx2Port)}
	rsLog := e.sippRedirector(t, targets...)
	pbx1, pbx2 := sippUAS(t, pbx1IP, pbx1Port), sippUAS(t, pbx2IP, pbx2Port)

	r := runSIPp(t, 40*time.Second, uacArgs(e.srv, "2001", easyCall, "-m", "2", "-l", "1", "-d", "1200")...)
	if r.ok != 2 || r.failed != 0 {
		t.Fatalf("%d ok, %d failed\n%s\nredirect server:\n%s", r.ok, r.failed, tail(r.messages, 3000), tail(rsLog(), 2000))
	}
	if want := "INVITE sip:" + easyCall + "@" + e.rs + " SIP/2.0"; strings.Count(rsLog(), want) != 2 {
		t.Errorf("redirect server did not get both calls (%q):\n%s", want, tail(rsLog(), 2000))
	}
	for i, log := range []func() string{pbx1, pbx2} {
		if want := "INVITE " + targets[i] + " SIP/2.0"; strings.Count(log(), want) != 1 || strings.Count(log(), "INVITE sip:") != 1 {
			t.Errorf("PBX%d did not get exactly its call (%q):\n%s", i+1, want, tail(log(), 2000))
		}
	}
	xs := waitXDRs(t, e.st, easyCall, 2)
	var charged int64
	for i, x := range xs {
		if x.Cause != 200 || x.ConnectAt == 0 {
			t.Errorf("call %d: xDR %+v", i+1, x)
		}
		wantRedirects(t, x, fsm.Redirect{Target: targets[i], Decision: billing.DecisionTrusted})
		cs := chargesOf(x, easyCall)
		if len(cs) != 1 || cs[0].Role != fsm.RoleIncoming || cs[0].Tariff != "in" || cs[0].Amount != toRate(rateIn).Charge(x.Duration) {
			t.Errorf("call %d (%d s): %s charged %+v, want its incoming tariff only", i+1, x.Duration, easyCall, cs)
		}
		charged += x.Amount - chargesOf(x, "2001")[0].Amount
	}
	if got := 50_000_000 - balance(e.st, easyCall); got != charged {
		t.Errorf("%s balance dropped by %d, xDRs say %d", easyCall, got, charged)
	}
	if n := e.counter("troika_redirect_decisions_total", "decision", billing.DecisionTrusted); n != 2 {
		t.Errorf("trusted decisions counted %v, want 2", n)
	}
	if !strings.Contains(e.logs.String(), "decision=trusted") || !strings.Contains(e.logs.String(), "target="+targets[1]) {
		t.Errorf("decisions not logged")
	}
	settled(t, e.testServer, "2001", easyCall)
}

// 302 to an address the policy does not trust.
func TestRedirectUntrusted(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	// refusedCall has the redirect server send a call to user at a raw
	// UDP PBX; the call must fail with 480, the PBX having received
	// nothing. It returns the call's xDR and the redirect's target.
	refusedCall := func(t *testing.T, e *redirectEnv, user string) (fsm.XDR, string) {
		t.Helper()
		pbxEnd := newEndpoint(t, testIP())
		target := "sip:" + user + "@" + pbxEnd.addr
		e.sippRedirector(t, target)
		before := balance(e.st, easyCall)
		c := e.call(t)
		wantStatus(t, c.final(10*time.Second, nil), 480, "")
		if p, ok := pbxEnd.maybe(300*time.Millisecond, isRequest("INVITE")); ok {
			t.Errorf("the untrusted PBX got an INVITE:\n%s", p.raw)
		}
		x := xdrFor(t, e.st, c.callID)
		if x.ConnectAt != 0 || x.Amount != 0 {
			t.Errorf("xDR of a refused call %+v", x)
		}
		settled(t, e.testServer, "2001", easyCall)
		if balance(e.st, easyCall) != before {
			t.Errorf("%s charged for a refused call", easyCall)
		}
		return x, target
	}

	t.Run("reject", func(t *testing.T) {
		t.Parallel()
		e := newRedirectEnv(t, fsm.RedirectPolicy{TrustedNetworks: []string{"192.0.2.1"}, UntrustedAction: billing.RejectRedirect}, nil, loopbackIsPublic)
		x, target := refusedCall(t, e, "12035554433")
		wantRedirects(t, x, fsm.Redirect{Target: target, Decision: billing.DecisionRejected})
		if e.counter("troika_redirect_decisions_total", "decision", billing.DecisionRejected) != 1 {
			t.Errorf("rejected decision not counted")
		}
	})
	t.Run("no policy", func(t *testing.T) {
		t.Parallel()
		e := newRedirectEnv(t, fsm.RedirectPolicy{UntrustedAction: billing.NewCallAuthorization},
			func(a *fsm.Account) { a.ServicePolicy = "" }, loopbackIsPublic)
		x, target := refusedCall(t, e, "12035554433")
		wantRedirects(t, x, fsm.Redirect{Target: target, Decision: billing.DecisionRejected})
	})
	t.Run("private address", func(t *testing.T) {
		t.Parallel()
		// Loopback PBX, default Internal: never followed unless trusted,
		// whatever the untrusted action.
		e := newRedirectEnv(t, fsm.RedirectPolicy{TrustedNetworks: []string{"192.0.2.1"}, UntrustedAction: billing.NewCallAuthorization}, nil, nil)
		x, target := refusedCall(t, e, "12035554433")
		wantRedirects(t, x, fsm.Redirect{Target: target, Decision: billing.DecisionPrivate})
	})
	t.Run("new authorization connects", func(t *testing.T) {
		t.Parallel()
		e := newRedirectEnv(t, fsm.RedirectPolicy{UntrustedAction: billing.NewCallAuthorization}, nil, loopbackIsPublic)
		addr, pbxLog := pbx(t)
		target := "sip:12035554433@" + addr
		e.sippRedirector(t, target)
		c := e.call(t)
		wantStatus(t, c.final(10*time.Second, nil), 200, "")
		c.ack()
		// The new authorization is on the call while it lasts.
		if call, ok := e.st.Call(c.callID); !ok || len(call.Charges) != 3 || call.Charges[2].Role != fsm.RoleOutgoing ||
			call.Charges[2].Account != easyCall || call.Charges[2].Reserved == 0 {
			t.Errorf("call in progress %+v", call)
		}
		e.clock.Advance(1100 * time.Millisecond) // the call lasts a second
		c.bye(t)
		x := xdrFor(t, e.st, c.callID)
		wantRedirects(t, x, fsm.Redirect{Target: target, Decision: billing.DecisionNewAuth})
		cs := chargesOf(x, easyCall)
		if len(cs) != 2 || cs[0].Role != fsm.RoleIncoming || cs[0].Amount != toRate(rateIn).Charge(x.Duration) ||
			cs[1].Role != fsm.RoleOutgoing || cs[1].Tariff != "out" || cs[1].Number != "12035554433" ||
			cs[1].Amount != toRate(rateOut).Charge(x.Duration) || cs[1].Amount == 0 {
			t.Errorf("%s charges %+v for %d s: want its incoming charge and the new outgoing one", easyCall, cs, x.Duration)
		}
		if got, want := 50_000_000-balance(e.st, easyCall), cs[0].Amount+cs[1].Amount; got != want {
			t.Errorf("%s paid %d, want %d", easyCall, got, want)
		}
		wantInvited(t, "PBX", pbxLog, target)
		settled(t, e.testServer, "2001", easyCall)
	})
	t.Run("new authorization without money", func(t *testing.T) {
		t.Parallel()
		// Incoming calls are free for it, but it has nothing to pay the
		// redirected leg with.
		e := newRedirectEnv(t, fsm.RedirectPolicy{UntrustedAction: billing.NewCallAuthorization},
			func(a *fsm.Account) { a.Balance, a.TariffIn = 0, "" }, loopbackIsPublic)
		x, target := refusedCall(t, e, "12035554433")
		wantRedirects(t, x, fsm.Redirect{Target: target, Decision: billing.DecisionNewAuthRefused})
		if e.counter("troika_redirect_decisions_total", "decision", billing.DecisionNewAuthRefused) != 1 ||
			!strings.Contains(e.logs.String(), "cannot pay") {
			t.Errorf("refusal not counted or logged")
		}
	})
	t.Run("new authorization without a rate", func(t *testing.T) {
		t.Parallel()
		e := newRedirectEnv(t, fsm.RedirectPolicy{UntrustedAction: billing.NewCallAuthorization}, nil, loopbackIsPublic)
		x, target := refusedCall(t, e, "4420123") // "out" rates only 1...
		wantRedirects(t, x, fsm.Redirect{Target: target, Decision: billing.DecisionNewAuthRefused})
	})
}

// Loops end within max_redirects, the caller gets a failure, and nothing
// stays open or reserved.
func TestRedirectLoops(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	// looped places a call that must fail with 480 after the redirects
	// want, leaving nothing open.
	looped := func(t *testing.T, e *redirectEnv, want ...fsm.Redirect) {
		t.Helper()
		c := e.call(t)
		wantStatus(t, c.final(10*time.Second, nil), 480, "")
		wantRedirects(t, xdrFor(t, e.st, c.callID), want...)
		settled(t, e.testServer, "2001", easyCall)
	}
	t.Run("back to the redirect server", func(t *testing.T) {
		t.Parallel()
		e := newRedirectEnv(t, fsm.RedirectPolicy{UntrustedAction: billing.RejectRedirect}, nil, nil)
		rsIP, _ := e.rsIPPort()
		e.setPolicy(t, fsm.RedirectPolicy{TrustedNetworks: []string{rsIP}, UntrustedAction: billing.RejectRedirect})
		target := "sip:12035554433@" + e.rs
		e.sippRedirector(t, target)
		looped(t, e, fsm.Redirect{Target: target, Decision: billing.DecisionLoop})
	})
	t.Run("to the switch itself", func(t *testing.T) {
		t.Parallel()
		e := newRedirectEnv(t, fsm.RedirectPolicy{UntrustedAction: billing.NewCallAuthorization}, nil, nil)
		e.setPolicy(t, fsm.RedirectPolicy{TrustedNetworks: []string{e.ip}, UntrustedAction: billing.NewCallAuthorization})
		target := "sip:" + easyCall + "@" + e.srv
		e.sippRedirector(t, target)
		looped(t, e, fsm.Redirect{Target: target, Decision: billing.DecisionOwnAddress})
	})
	t.Run("between two redirect servers", func(t *testing.T) {
		t.Parallel()
		rs2IP := testIP()
		rs2Port := testkit.FreePort(t, rs2IP)
		e := newRedirectEnv(t, fsm.RedirectPolicy{UntrustedAction: billing.RejectRedirect}, nil, nil)
		rsIP, _ := e.rsIPPort()
		e.setPolicy(t, fsm.RedirectPolicy{TrustedNetworks: []string{rsIP, rs2IP}, UntrustedAction: billing.RejectRedirect})
		to2, to1 := "sip:111@"+joinHP(rs2IP, rs2Port), "sip:222@"+e.rs
		e.sippRedirector(t, to2)
		sippRedirector(t, rs2IP, rs2Port, to1)
		looped(t, e, fsm.Redirect{Target: to2, Decision: billing.DecisionTrusted}, fsm.Redirect{Target: to1, Decision: billing.DecisionLoop})
	})
	t.Run("max redirects", func(t *testing.T) {
		t.Parallel()
		// A raw redirect server answers with four trusted contacts, in
		// q order b, a, c, d; each answers 486. With max_redirects 2 only
		// b and a are called.
		e := newRedirectEnv(t, fsm.RedirectPolicy{TrustedNetworks: []string{"127.0.0.0/8"}, UntrustedAction: billing.RejectRedirect,
			MaxRedirects: 2}, nil, nil)
		rs := e.rawRedirector(t)
		pbxs := map[string]*endpoint{}
		for _, n := range []string{"a", "b", "c", "d"} {
			pbxs[n] = newEndpoint(t, testIP())
		}
		uri := func(n string) string { return "sip:" + n + "@" + pbxs[n].addr }
		c := e.call(t)
		redirect(rs, "Contact: <"+uri("c")+">;q=0.5, <"+uri("a")+">;q=0.9", "Contact: <"+uri("b")+">", "Contact: <"+uri("d")+">;q=0.1")
		for _, n := range []string{"b", "a"} {
			req, from := pbxs[n].request("INVITE")
			if req.Recipient.User != n {
				t.Errorf("INVITE to %s for %s", pbxs[n].addr, req.Recipient.String())
			}
			pbxs[n].reply(req, from, 486, "Busy Here", "p"+n, "")
		}
		wantStatus(t, c.final(10*time.Second, nil), 486, "")
		for _, n := range []string{"c", "d"} {
			if _, ok := pbxs[n].maybe(200*time.Millisecond, isRequest("INVITE")); ok {
				t.Errorf("%s called beyond max_redirects", n)
			}
		}
		wantRedirects(t, xdrFor(t, e.st, c.callID), fsm.Redirect{Target: uri("b"), Decision: billing.DecisionTrusted},
			fsm.Redirect{Target: uri("a"), Decision: billing.DecisionTrusted},
			fsm.Redirect{Target: uri("c"), Decision: billing.DecisionLimit}, fsm.Redirect{Target: uri("d"), Decision: billing.DecisionLimit})
		settled(t, e.testServer, "2001", easyCall)
	})
}

// A domain name in trusted_networks: "localhost" trusts the addresses it
// resolves to (a contact at 127.0.0.1, loopback, so only explicitly
// trusted) and itself by name.
func TestSIPpRedirectTrustedDomain(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	e := newRedirectEnv(t, fsm.RedirectPolicy{TrustedNetworks: []string{"localhost"}, UntrustedAction: billing.RejectRedirect}, nil, nil)
	port := testkit.FreePort(t, "127.0.0.1")
	targets := []string{fmt.Sprintf("sip:12035554433@127.0.0.1:%d", port), fmt.Sprintf("sip:12065551201@localhost:%d", port)}
	e.sippRedirector(t, targets...)
	uas := sippUAS(t, "127.0.0.1", port)
	r := runSIPp(t, 40*time.Second, uacArgs(e.srv, "2001", easyCall, "-m", "2", "-l", "1", "-d", "200")...)
	if r.ok != 2 {
		t.Fatalf("%d ok, %d failed\n%s\nPBX:\n%s", r.ok, r.failed, tail(r.messages, 3000), tail(uas(), 2000))
	}
	xs := waitXDRs(t, e.st, easyCall, 2)
	for i, x := range xs {
		wantRedirects(t, x, fsm.Redirect{Target: targets[i], Decision: billing.DecisionTrusted})
		wantConnected(t, x)
	}
	settled(t, e.testServer, "2001", easyCall)
}

// Follow-me: the called account's phones are offline, fail or do not
// answer in time; its entries are tried in order. The call stays the
// called account's incoming call; the xDR says follow_me.
func TestSIPpFollowMe(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	setup := func(t *testing.T, mod func(*Config), followMe ...fsm.FollowMeTarget) *testServer {
		st := callState(t, 100_000_000)
		putTariff(t, st, "in", rateIn)
		testkit.MustApply(t, st, &fsm.UpdateAccount{ID: "2002", Patch: fsm.AccountPatch{TariffIn: ptrTo("in"), FollowMe: &followMe}})
		testkit.MustApply(t, st, &fsm.Topup{Account: "2002", Amount: 50_000_000, Key: "t", Now: 1})
		addAccount(t, st, fsm.Account{ID: "2003", Credentials: testkit.Creds("2003", "pw2003"), Billing: fsm.Prepaid, TariffIn: "in"})
		return startServer(t, st, func(c *Config) {
			c.Registrar.Algorithms = []string{"MD5"}
			if mod != nil {
				mod(c)
			}
		})
	}
	check := func(t *testing.T, ts *testServer, x fsm.XDR, target string) {
		t.Helper()
		wantRedirects(t, x, fsm.Redirect{Target: target, Decision: billing.DecisionFollowMe})
		wantConnected(t, x)
		if cs := chargesOf(x, "2002"); len(cs) != 1 || cs[0].Role != fsm.RoleIncoming || cs[0].Amount != toRate(rateIn).Charge(x.Duration) {
			t.Errorf("2002 charged %+v", cs)
		}
		if cs := chargesOf(x, "2003"); len(cs) != 0 {
			t.Errorf("the follow-me account was charged %+v", cs)
		}
		if ts.counter("troika_redirect_decisions_total", "decision", billing.DecisionFollowMe) != 1 {
			t.Errorf("follow_me decision not counted")
		}
		settled(t, ts, "2001", "2002")
	}

	t.Run("offline to a SIP URI", func(t *testing.T) {
		t.Parallel()
		addr, uas := pbx(t)
		target := "sip:1234@" + addr
		ts := setup(t, nil, fsm.FollowMeTarget{Target: target, TimeoutS: 10})
		srv := ts.addr(t, "udp", ts.ip)
		r := runSIPp(t, 30*time.Second, uacArgs(srv, "2001", "2002", "-m", "1", "-d", "500")...)
		if r.ok != 1 {
			t.Fatalf("%d ok, %d failed\n%s", r.ok, r.failed, tail(r.messages, 3000))
		}
		wantInvited(t, "follow-me target", uas, target)
		check(t, ts, waitXDRs(t, ts.st, "2001", 1)[0], target)
	})
	t.Run("offline to an account", func(t *testing.T) {
		t.Parallel()
		addr, uas := pbx(t)
		ts := setup(t, nil, fsm.FollowMeTarget{Target: "2003", TimeoutS: 10})
		srv := ts.addr(t, "udp", ts.ip)
		bind(t, ts.st, "2003", "sip:2003@"+addr, addr, "udp:"+srv)
		r := runSIPp(t, 30*time.Second, uacArgs(srv, "2001", "2002", "-m", "1", "-d", "500")...)
		if r.ok != 1 {
			t.Fatalf("%d ok, %d failed\n%s", r.ok, r.failed, tail(r.messages, 3000))
		}
		wantInvited(t, "follow-me account's phone", uas, "sip:2003@"+addr)
		check(t, ts, waitXDRs(t, ts.st, "2001", 1)[0], "2003")
	})
	t.Run("no answer in time", func(t *testing.T) {
		t.Parallel()
		addr, uas := pbx(t)
		target := "sip:1234@" + addr
		ts := setup(t, func(c *Config) { c.Delivery.OwnRing = 300 * time.Millisecond }, fsm.FollowMeTarget{Target: target, TimeoutS: 10})
		srv := ts.addr(t, "udp", ts.ip)
		phone := newEndpoint(t, testIP())
		bind(t, ts.st, "2002", "sip:2002@"+phone.addr, phone.addr, "udp:"+srv)
		c := invite(t, newEndpoint(t, testIP()), srv, "2001", "pw2001", "2002", testSDP)
		req, from := phone.request("INVITE")
		phone.reply(req, from, 180, "Ringing", "ph", "")
		phone.answerCancel(req, from, "ph") // its ring time is over
		wantStatus(t, c.final(10*time.Second, nil), 200, "")
		c.ack()
		c.bye(t)
		wantInvited(t, "follow-me target", uas, target)
		check(t, ts, xdrFor(t, ts.st, c.callID), target)
	})
	t.Run("every entry fails", func(t *testing.T) {
		t.Parallel()
		busy := newEndpoint(t, testIP())
		ts := setup(t, nil, fsm.FollowMeTarget{Target: "nobody", TimeoutS: 5}, fsm.FollowMeTarget{Target: "sip:9@" + busy.addr, TimeoutS: 5})
		srv := ts.addr(t, "udp", ts.ip)
		c := invite(t, newEndpoint(t, testIP()), srv, "2001", "pw2001", "2002", testSDP)
		req, from := busy.request("INVITE")
		busy.reply(req, from, 486, "Busy Here", "b", "")
		wantStatus(t, c.final(10*time.Second, nil), 486, "")
		x := xdrFor(t, ts.st, c.callID)
		wantRedirects(t, x, fsm.Redirect{Target: "sip:9@" + busy.addr, Decision: billing.DecisionFollowMe})
		if x.Amount != 0 {
			t.Errorf("xDR %+v: charged a failed call", x)
		}
		settled(t, ts, "2001", "2002")
	})
}

func ptrTo[T any](v T) *T { return &v }

// The caller's CANCEL while a redirect target rings ends the call; the
// target is CANCELled and nothing stays open.
func TestRedirectCancel(t *testing.T) {
	t.Parallel()
	e := newRedirectEnv(t, fsm.RedirectPolicy{TrustedNetworks: []string{"127.0.0.0/8"}, UntrustedAction: billing.RejectRedirect}, nil, nil)
	rs := e.rawRedirector(t)
	pbxEnd := newEndpoint(t, testIP())
	c := e.call(t)
	redirect(rs, "Contact: <sip:1@"+pbxEnd.addr+">")
	preq, pfrom := pbxEnd.request("INVITE")
	pbxEnd.reply(preq, pfrom, 180, "Ringing", "p", "")
	c.e.wait("180", 5*time.Second, isStatus(180))
	c.cancelled(t)
	pbxEnd.answerCancel(preq, pfrom, "p")
	x := xdrFor(t, e.st, c.callID)
	if x.Cause != 487 || len(x.Redirects) != 1 || x.Redirects[0].Decision != billing.DecisionTrusted {
		t.Errorf("xDR %+v", x)
	}
	settled(t, e.testServer, "2001", easyCall)
}

// A failed target makes way for the next contact: an unresolvable name
// is skipped, an untrusted PBX authorized as a new call answers 486 (its
// reservation is released), then a trusted PBX answers. The account pays
// only its incoming tariff: the leg that connected was trusted.
func TestRedirectNextContact(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	res := &testkit.Resolver{Names: map[string][]string{}}
	addr, uas := pbx(t)
	trustedIP := netip.MustParseAddrPort(addr).Addr().String()
	e := newRedirectEnv(t, fsm.RedirectPolicy{TrustedNetworks: []string{trustedIP}, UntrustedAction: billing.NewCallAuthorization}, nil,
		func(c *Config) {
			loopbackIsPublic(c)
			c.Delivery.Resolver = res
		})
	rs := e.rawRedirector(t)
	busy := newEndpoint(t, testIP())
	targets := []string{"sip:1@nowhere.invalid", "sip:12035554433@" + busy.addr, "sip:12065551201@" + addr}
	c := e.call(t)
	redirect(rs, "Contact: <"+targets[0]+">, <"+targets[1]+">;q=0.9, <"+targets[2]+">;q=0.8")
	breq, bfrom := busy.request("INVITE")
	if call, ok := e.st.Call(c.callID); !ok || len(call.Charges) != 3 {
		t.Errorf("new authorization not on the call while its leg rings: %+v", call)
	}
	busy.reply(breq, bfrom, 486, "Busy Here", "b", "")
	wantStatus(t, c.final(10*time.Second, nil), 200, "")
	c.ack()
	if call, ok := e.st.Call(c.callID); !ok || len(call.Charges) != 2 || e.st.Reserved(easyCall) != call.Charges[1].Reserved {
		t.Errorf("the busy leg's authorization still held: %+v", call)
	}
	c.bye(t)
	x := xdrFor(t, e.st, c.callID)
	wantRedirects(t, x, fsm.Redirect{Target: targets[0], Decision: billing.DecisionUnresolvable},
		fsm.Redirect{Target: targets[1], Decision: billing.DecisionNewAuth}, fsm.Redirect{Target: targets[2], Decision: billing.DecisionTrusted})
	if cs := chargesOf(x, easyCall); len(cs) != 1 || cs[0].Role != fsm.RoleIncoming {
		t.Errorf("%s charged %+v, want its incoming tariff only", easyCall, cs)
	}
	wantInvited(t, "PBX", uas, targets[2])
	settled(t, e.testServer, "2001", easyCall)
}

// A 3xx target that sends nothing at all is given up for the next
// contact well before Timer B.
func TestRedirectSilentTarget(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	addr, uas := pbx(t)
	e := newRedirectEnv(t, fsm.RedirectPolicy{TrustedNetworks: []string{"127.0.0.0/8"}, UntrustedAction: billing.RejectRedirect}, nil,
		func(c *Config) { c.Delivery.RedirectSilence = 300 * time.Millisecond })
	rs := e.rawRedirector(t)
	silent := newEndpoint(t, testIP())
	targets := []string{"sip:1@" + silent.addr, "sip:2@" + addr}
	c := e.call(t)
	redirect(rs, "Contact: <"+targets[0]+">, <"+targets[1]+">;q=0.5")
	silent.request("INVITE") // and never a word back
	wantStatus(t, c.final(10*time.Second, nil), 200, "")
	c.ack()
	c.bye(t)
	x := xdrFor(t, e.st, c.callID)
	wantRedirects(t, x, fsm.Redirect{Target: targets[0], Decision: billing.DecisionTrusted}, fsm.Redirect{Target: targets[1], Decision: billing.DecisionTrusted})
	wantConnected(t, x)
	wantInvited(t, "PBX", uas, targets[1])
	settled(t, e.testServer, "2001", easyCall)
}

// Issue 5's follow-me: a vendor's call to 0044123 (translated to 44123)
// with 44123 offline reaches its follow-me target; the from-vendor xDR
// says follow_me and charges 44123 by its incoming tariff.
func TestSIPpVendorFollowMe(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	vendorIP := testIP()
	st, ts, srv := vendorSwitch(t, vendorIP, "")
	addr, uas := pbx(t)
	target := "sip:44999@" + addr
	followMe := []fsm.FollowMeTarget{{Target: target, TimeoutS: 10}}
	testkit.MustApply(t, st, &fsm.UpdateAccount{ID: "44123", Patch: fsm.AccountPatch{FollowMe: &followMe}})
	r := runSIPp(t, 30*time.Second, vendorArgs(srv, vendorIP, "0044123", "00442071234567", "-d", "500")...)
	if r.ok != 1 {
		t.Fatalf("vendor call: %d ok, %d failed\n%s", r.ok, r.failed, tail(r.messages, 3000))
	}
	wantInvited(t, "follow-me target", uas, target)
	x := onlyXDR(t, st, "the vendor call's xDR", func(fsm.XDR) bool { return true })
	if x.Direction != fsm.DirFromVendor {
		t.Errorf("xDR %+v, want from-vendor", x)
	}
	wantRedirects(t, x, fsm.Redirect{Target: target, Decision: billing.DecisionFollowMe})
	wantConnected(t, x)
	if cs := chargesOf(x, "44123"); len(cs) != 1 || cs[0].Role != fsm.RoleIncoming || cs[0].Amount != toRate(vendorInRate).Charge(x.Duration) {
		t.Errorf("44123 charged %+v", cs)
	}
	settled(t, ts, "44123")
}
