package sipstack

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/auth"
	"github.com/troika-sip/troika/sipstack/b2bua"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// Calls from vendors via SIP (b2bua_vendor.go, auth.go): the order in
// which an INVITE is authorized, the translation of its numbers, the
// refusals and their records, and real SIPp vendors calling a SIPp phone.

// Rates of the vendor tests: 44123's incoming tariff and the vendor's
// cost tariff, deliberately different.
var (
	vendorInRate   = fsm.Rate{Prefix: "44", PerMinute: 1_800_000, ConnectFee: 100_000, FirstInterval: 30, NextInterval: 6}
	vendorCostRate = fsm.Rate{Prefix: "44", PerMinute: 700_000, FirstInterval: 1, NextInterval: 1}
)

const (
	vendorUser     = "carrier1"
	vendorPassword = "vendor-s3cret"
	vendorBalance  = 50_000_000
	ukRules        = `s/^00/+/; s/^\+44/44/`
)

// vendorCallState has account 44123 (password pw44123, incoming tariff
// "in44"), vendor v1 (user carrier1) with connection c1 accepting calls
// from vendorIP (and by v1's user name) with the UK rules, and, when
// evilIP is set, vendor v2's connection c-evil from evilIP with a
// catastrophic-backtracking CLD rule.
func vendorCallState(t *testing.T, vendorIP, evilIP string) *fsm.State {
	t.Helper()
	st := newTestState(t, false)
	putTariff(t, st, "in44", vendorInRate)
	putTariff(t, st, "vcost", vendorCostRate)
	addAccount(t, st, fsm.Account{ID: "44123", Credentials: testkit.Creds("44123", "pw44123"), Billing: fsm.Prepaid, Balance: vendorBalance, TariffIn: "in44"})
	testkit.MustApply(t, st, &fsm.PutVendor{Vendor: fsm.Vendor{ID: "v1", Name: "Carrier One", Username: vendorUser, Credentials: testkit.Creds(vendorUser, vendorPassword)}})
	testkit.MustApply(t, st, &fsm.PutConnection{Connection: fsm.Connection{ID: "c1", Vendor: "v1", Kind: fsm.ConnectionFromVendorSIP,
		RemoteIPs: []string{vendorIP}, Tariff: "vcost", TranslationCLD: ukRules, TranslationCLI: `s/^00/+/`}})
	if evilIP != "" {
		testkit.MustApply(t, st, &fsm.PutVendor{Vendor: fsm.Vendor{ID: "v2", Name: "Carrier Two"}})
		testkit.MustApply(t, st, &fsm.PutConnection{Connection: fsm.Connection{ID: "c-evil", Vendor: "v2", Kind: fsm.ConnectionFromVendorSIP,
			RemoteIPs: []string{evilIP}, Tariff: "vcost", TranslationCLD: `s/(a+)+$/x/`}})
	}
	return st
}

// vendorSwitch serves vendorCallState (answering SIPp's MD5 only); srv
// is its UDP socket.
func vendorSwitch(t *testing.T, vendorIP, evilIP string) (st *fsm.State, ts *testServer, srv string) {
	t.Helper()
	st = vendorCallState(t, vendorIP, evilIP)
	ts = startServer(t, st, md5Only)
	return st, ts, ts.addr(t, "udp", ts.ip)
}

// md5Only offers the MD5 digest alone, the one SIPp answers.
func md5Only(c *Config) { c.Registrar.Algorithms = []string{"MD5"} }

// vendorArgs are the arguments of a SIPp vendor gateway (no digest) on
// ip calling cld from cli.
func vendorArgs(server, ip, cld, cli string, extra ...string) []string {
	return append([]string{server, "-sf", "testdata/uac_vendor.xml", "-s", cld, "-key", "cli", cli, "-i", ip, "-m", "1"}, extra...)
}

// sippSection returns the first message of a SIPp message log that starts
// with start ("" if none).
func sippSection(log, start string) string {
	i := strings.Index(log, start)
	if i < 0 {
		return ""
	}
	rest := log[i:]
	if j := strings.Index(rest, "-----"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// onlyXDR waits for the one xDR matching pick and returns it.
func onlyXDR(t *testing.T, st *fsm.State, what string, pick func(fsm.XDR) bool) fsm.XDR {
	t.Helper()
	var got []fsm.XDR
	testkit.WaitFor(t, 5*time.Second, what, func() bool {
		got = got[:0]
		for _, x := range st.XDRs(fsm.XDRFilter{}) {
			if pick(x) {
				got = append(got, x)
			}
		}
		return len(got) > 0
	})
	if len(got) != 1 {
		t.Fatalf("%s: %d xDRs %+v", what, len(got), got)
	}
	return got[0]
}

// A vendor's SIPp gateway on an address of connection c1 calls 0044123;
// the rules make it 44123, whose phone (a SIPp UAS that registered
// through the registrar) gets the call with the translated numbers in To
// and From. The xDR is a from-vendor record with the dialed and
// translated numbers, 44123 charged by its incoming tariff and the
// vendor's cost by the connection's tariff, both exactly the rate applied
// to the xDR's own duration.
func TestSIPpVendorCall(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	vendorIP := testIP()
	st, ts, srv := vendorSwitch(t, vendorIP, "")
	uasIP := testIP()
	uasPort := testkit.FreePort(t, uasIP)
	sippRegister(t, srv, uasIP, uasPort, "44123")
	uasLog := sippUAS(t, uasIP, uasPort)

	r := runSIPp(t, 30*time.Second, vendorArgs(srv, vendorIP, "0044123", "00442071234567", "-d", "2300")...)
	if r.ok != 1 || r.failed != 0 {
		t.Fatalf("vendor call: %d ok, %d failed\n%s", r.ok, r.failed, tail(r.messages, 4000))
	}
	x := onlyXDR(t, st, "the vendor call's xDR", func(fsm.XDR) bool { return true })
	if x.Direction != fsm.DirFromVendor || x.Account != "44123" || x.CLD != "0044123" || x.CLDTranslated != "44123" ||
		x.CLI != "+442071234567" || x.Vendor != "v1" || x.Connection != "c1" || x.Cause != 200 || x.ConnectAt == 0 {
		t.Errorf("xDR %+v", x)
	}
	// SIPp holds the call 2.3 s after its ACK; the amounts come from the
	// xDR's own duration.
	if x.Duration < 2 || x.Duration > 30 {
		t.Errorf("duration %d", x.Duration)
	}
	in, cost := toRate(vendorInRate), toRate(vendorCostRate)
	wantCharge, wantCost := in.Charge(x.Duration), cost.Charge(x.Duration)
	if wantCharge == wantCost || wantCharge == 0 || wantCost == 0 {
		t.Fatalf("test rates do not tell charge (%d) from cost (%d)", wantCharge, wantCost)
	}
	if len(x.Charges) != 1 {
		t.Fatalf("charges %+v", x.Charges)
	}
	ch := x.Charges[0]
	if ch.Account != "44123" || ch.Role != fsm.RoleIncoming || ch.Number != "44123" || ch.Tariff != "in44" ||
		ch.Amount != wantCharge || ch.Seconds != in.ChargedSeconds(x.Duration) || x.Amount != wantCharge {
		t.Errorf("charge %+v (xDR amount %d), want %d for %d s", ch, x.Amount, wantCharge, x.Duration)
	}
	if x.VendorCost != wantCost {
		t.Errorf("vendor cost %d, want %d for %d s", x.VendorCost, wantCost, x.Duration)
	}
	if got := vendorBalance - balance(st, "44123"); got != wantCharge {
		t.Errorf("44123's balance dropped by %d, want %d", got, wantCharge)
	}
	waitNoCalls(t, ts)

	// The phone saw the translated numbers: the called one in To (its
	// Request-URI is its registered Contact), the calling one in From.
	inv := sippSection(uasLog(), "INVITE sip:")
	if inv == "" {
		t.Fatalf("the callee got no INVITE:\n%s", tail(uasLog(), 2000))
	}
	if !strings.Contains(inv, "INVITE sip:44123@"+uasIP) || !strings.Contains(inv, "To: <sip:44123@") ||
		!strings.Contains(inv, "<sip:+442071234567@") || strings.Contains(inv, "0044") {
		t.Errorf("callee INVITE lacks the translated numbers (or shows the original ones):\n%s", inv)
	}
	if n := ts.counter("troika_vendor_calls_total", "result", b2bua.VendorAccepted); n != 1 {
		t.Errorf("vendor_calls_total{accepted} = %v", n)
	}
}

// Without a listed source address a call is a vendor's only through the
// vendor's digest credentials: without credentials it is challenged like
// a customer's and goes nowhere; a customer dialing the same number gets
// no translation (404); the vendor's credentials from another address
// make it a vendor call; a wrong vendor password is refused (403) and
// goes nowhere.
func TestSIPpVendorAuthorization(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	vendorIP := testIP()
	st, ts, srv := vendorSwitch(t, vendorIP, "")
	uasAddr, uasLog := pbx(t)
	bind(t, st, "44123", "sip:44123@"+uasAddr, uasAddr, "udp:"+srv)
	invites := func() int { return strings.Count(uasLog(), "INVITE sip:") }

	t.Run("unlisted address without credentials", func(t *testing.T) {
		r := runSIPp(t, 20*time.Second, vendorArgs(srv, testIP(), "0044123", "00442071234567")...)
		if r.ok != 0 || !strings.Contains(r.messages, "SIP/2.0 407 Proxy Authentication Required") {
			t.Fatalf("want a 407 and no call: %d ok\n%s", r.ok, tail(r.messages, 3000))
		}
		if invites() != 0 || len(st.XDRs(fsm.XDRFilter{})) != 0 {
			t.Errorf("the call went on: %d INVITEs at the callee, xDRs %+v", invites(), st.XDRs(fsm.XDRFilter{}))
		}
	})
	t.Run("customer dialing the vendor's format", func(t *testing.T) {
		r := runSIPp(t, 20*time.Second, uacArgs(srv, "1001", "0044123", "-m", "1")...)
		if r.ok != 0 || !strings.Contains(r.messages, "SIP/2.0 404 Not Found") {
			t.Fatalf("want 404 (no translation for customers): %d ok\n%s", r.ok, tail(r.messages, 3000))
		}
		if invites() != 0 {
			t.Errorf("the callee got %d INVITEs", invites())
		}
	})
	t.Run("vendor credentials from another address", func(t *testing.T) {
		r := runSIPp(t, 30*time.Second, srv, "-sf", "testdata/uac_auth.xml", "-s", "0044123", "-au", vendorUser, "-ap", vendorPassword,
			"-i", testIP(), "-m", "1", "-d", "500")
		if r.ok != 1 {
			t.Fatalf("%d ok, %d failed\n%s", r.ok, r.failed, tail(r.messages, 4000))
		}
		x := onlyXDR(t, st, "the vendor call's xDR", func(x fsm.XDR) bool { return x.Direction == fsm.DirFromVendor })
		if x.Account != "44123" || x.Connection != "c1" || x.Vendor != "v1" || x.CLD != "0044123" || x.CLDTranslated != "44123" ||
			x.Cause != 200 || x.ConnectAt == 0 || len(x.Charges) != 1 || x.Charges[0].Amount != toRate(vendorInRate).Charge(x.Duration) ||
			x.VendorCost != toRate(vendorCostRate).Charge(x.Duration) {
			t.Errorf("xDR %+v", x)
		}
		if invites() != 1 {
			t.Errorf("the callee got %d INVITEs, want 1", invites())
		}
		waitNoCalls(t, ts)
	})
	t.Run("wrong vendor password", func(t *testing.T) {
		before := len(st.XDRs(fsm.XDRFilter{}))
		failures := ts.counter("troika_sip_auth_failures_total")
		r := runSIPp(t, 20*time.Second, srv, "-sf", "testdata/uac_auth.xml", "-s", "0044123", "-au", vendorUser, "-ap", "not-it",
			"-i", testIP(), "-m", "1", "-default_behaviors", "all,-bye")
		if r.ok != 0 || !strings.Contains(r.messages, "SIP/2.0 403 Forbidden") {
			t.Fatalf("want 403 and no call: %d ok\n%s", r.ok, tail(r.messages, 3000))
		}
		if invites() != 1 || len(st.XDRs(fsm.XDRFilter{})) != before {
			t.Errorf("the call went on: %d INVITEs at the callee", invites())
		}
		if ts.counter("troika_vendor_calls_total", "result", b2bua.VendorAuthFailed) != 1 || ts.counter("troika_sip_auth_failures_total") != failures+1 {
			t.Errorf("failed vendor authentication not counted")
		}
	})
}

// Refusals: a translated number that is no account gets 404 and an xDR
// of the attempt without charge; a hostile rule times out and the call
// gets 500 (also recorded), and the node goes on serving: the next call
// through the same connection connects.
func TestSIPpVendorRefusals(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	vendorIP, evilIP := testIP(), testIP()
	st, ts, srv := vendorSwitch(t, vendorIP, evilIP)
	uasAddr, uasLog := pbx(t)
	bind(t, st, "44123", "sip:44123@"+uasAddr, uasAddr, "udp:"+srv)
	invites := func() int { return strings.Count(uasLog(), "INVITE sip:") }
	noCharge := func(t *testing.T, x fsm.XDR) {
		t.Helper()
		if x.Direction != fsm.DirFromVendor || x.Account != "" || len(x.Charges) != 0 || x.Amount != 0 || x.VendorCost != 0 ||
			x.ConnectAt != 0 || x.DisconnectedBy != b2bua.BySystem {
			t.Errorf("refused attempt's xDR %+v", x)
		}
		if balance(st, "44123") != vendorBalance || st.Reserved("44123") != 0 {
			t.Errorf("44123 charged: balance %d, reserved %d", balance(st, "44123"), st.Reserved("44123"))
		}
	}

	t.Run("not an account", func(t *testing.T) {
		r := runSIPp(t, 20*time.Second, vendorArgs(srv, vendorIP, "0044999", "00442071234567")...)
		if r.ok != 0 || !strings.Contains(r.messages, "SIP/2.0 404 Not Found") {
			t.Fatalf("want 404: %d ok\n%s", r.ok, tail(r.messages, 3000))
		}
		x := onlyXDR(t, st, "xDR of the 404", func(x fsm.XDR) bool { return x.Cause == 404 })
		noCharge(t, x)
		if x.Vendor != "v1" || x.Connection != "c1" || x.CLD != "0044999" || x.CLDTranslated != "44999" ||
			x.CLI != "+442071234567" || !strings.Contains(x.CauseText, "not an account") {
			t.Errorf("xDR %+v", x)
		}
		if ts.counter("troika_vendor_calls_total", "result", b2bua.VendorNotAccount) != 1 || ts.counter("troika_sip_calls_failed_total", "code", "404") != 1 {
			t.Error("the refusal was not counted")
		}
		if !strings.Contains(ts.logs.String(), "the translated number is not an account") {
			t.Error("the refusal's reason was not logged")
		}
	})
	t.Run("hostile rule", func(t *testing.T) {
		r := runSIPp(t, 20*time.Second, vendorArgs(srv, evilIP, strings.Repeat("a", 40)+"!", "5551234")...)
		if r.ok != 0 || !strings.Contains(r.messages, "SIP/2.0 500 Translation Failed") {
			t.Fatalf("want 500: %d ok\n%s", r.ok, tail(r.messages, 3000))
		}
		x := onlyXDR(t, st, "xDR of the 500", func(x fsm.XDR) bool { return x.Cause == 500 })
		noCharge(t, x)
		if x.Vendor != "v2" || x.Connection != "c-evil" || x.CLDTranslated != "" || !strings.Contains(x.CauseText, billing.ErrRuleTimeout.Error()) {
			t.Errorf("xDR %+v", x)
		}
		if ts.counter("troika_vendor_calls_total", "result", b2bua.VendorRuleTimeout) != 1 {
			t.Error("the timeout was not counted")
		}
	})
	t.Run("next call", func(t *testing.T) {
		r := runSIPp(t, 30*time.Second, vendorArgs(srv, evilIP, "44123", "5551234", "-d", "200")...)
		if r.ok != 1 {
			t.Fatalf("%d ok, %d failed\n%s", r.ok, r.failed, tail(r.messages, 3000))
		}
		x := onlyXDR(t, st, "xDR of the call", func(x fsm.XDR) bool { return x.Cause == 200 })
		if x.Connection != "c-evil" || x.Account != "44123" || x.CLD != "44123" || x.CLDTranslated != "44123" || x.CLI != "5551234" {
			t.Errorf("xDR %+v", x)
		}
	})
	if invites() != 1 {
		t.Errorf("the callee got %d INVITEs, want 1 (the last call only)", invites())
	}
	waitNoCalls(t, ts)
}

// The order in which an INVITE is authorized: the vendor connection of
// the packet's source address (whatever credentials it carries), then a
// vendor user name's digest against the vendor's password (a wrong one is
// refused, never tried as an account), then the account's digest. A vendor
// user name cannot REGISTER.
func TestInviteAuthorizationOrder(t *testing.T) {
	t.Parallel()
	st := vendorCallState(t, "10.9.0.0/16", "")
	testkit.MustApply(t, st, &fsm.PutVendor{Vendor: fsm.Vendor{ID: "v3"}})
	testkit.MustApply(t, st, &fsm.PutConnection{Connection: fsm.Connection{ID: "c3", Vendor: "v3", Kind: fsm.ConnectionFromVendorSIP,
		Username: "trunk3", Credentials: testkit.Creds("trunk3", "v3pw"), Tariff: "vcost"}})
	testkit.MustApply(t, st, &fsm.PutConnection{Connection: fsm.Connection{ID: "c-host", Vendor: "v3", Kind: fsm.ConnectionFromVendorSIP,
		RemoteIPs: []string{"10.9.8.7"}, Tariff: "vcost"}})
	ts := startServer(t, st, md5Only)
	sock := &transport.Socket{Name: "udp:test"}
	now := time.Now()
	fresh, stale := now, now.Add(-2*ts.cfg.Registrar.NonceTTL) // when the nonce was issued

	type want struct {
		code       int    // 0: authorized
		reason     string // of the refusal
		conn       string // the vendor connection, or
		account    string // the account
		by         string
		staleParam bool
	}
	cases := []struct {
		name       string
		src        string    // "" leaves the packet source unset (Via only)
		user, pw   string    // credentials ("" none)
		nonce      time.Time // issue time of the nonce they answer
		method     sip.RequestMethod
		want       want
		vendorFail bool
	}{
		{"vendor address, no credentials", "10.9.1.1:5060", "", "", fresh, sip.INVITE, want{conn: "c1", by: auth.ByVendorIP}, false},
		{"vendor address, wrong customer credentials", "10.9.1.1:5060", "1001", "wrong", fresh, sip.INVITE, want{conn: "c1", by: auth.ByVendorIP}, false},
		{"vendor address, right customer credentials", "10.9.1.1:5060", "1001", "pw1001", fresh, sip.INVITE, want{conn: "c1", by: auth.ByVendorIP}, false},
		{"most specific address", "10.9.8.7:5060", "", "", fresh, sip.INVITE, want{conn: "c-host", by: auth.ByVendorIP}, false},
		{"Via claims a vendor address", "", "", "", fresh, sip.INVITE, want{code: 407, reason: "Proxy Authentication Required"}, false},
		{"unknown address, no credentials", "192.0.2.1:5060", "", "", fresh, sip.INVITE, want{code: 407, reason: "Proxy Authentication Required"}, false},
		{"vendor user name", "192.0.2.2:5060", vendorUser, vendorPassword, fresh, sip.INVITE, want{conn: "c1", by: auth.ByVendorUser}, false},
		{"connection's own user name", "192.0.2.3:5060", "trunk3", "v3pw", fresh, sip.INVITE, want{conn: "c3", by: auth.ByVendorUser}, false},
		{"wrong vendor password", "192.0.2.4:5060", vendorUser, "wrong", fresh, sip.INVITE, want{code: 403, reason: "Forbidden"}, true},
		{"stale nonce, vendor", "192.0.2.5:5060", vendorUser, vendorPassword, stale, sip.INVITE, want{code: 407, reason: "Proxy Authentication Required", staleParam: true}, false},
		{"customer", "192.0.2.6:5060", "1001", "pw1001", fresh, sip.INVITE, want{account: "1001", by: auth.ByAccount}, false},
		{"wrong customer password", "192.0.2.7:5060", "1001", "wrong", fresh, sip.INVITE, want{code: 403, reason: "Forbidden"}, false},
		{"unknown user", "192.0.2.8:5060", "nobody", "x", fresh, sip.INVITE, want{code: 403, reason: "Forbidden"}, false},
		{"blocked customer", "192.0.2.9:5060", "1009", "pw1009", fresh, sip.INVITE, want{code: 403, reason: "Forbidden"}, false},
		{"vendor user name cannot register", "192.0.2.10:5060", vendorUser, vendorPassword, fresh, sip.REGISTER, want{code: 403, reason: "Forbidden"}, false},
		{"vendor address cannot register", "10.9.1.2:5060", "", "", fresh, sip.REGISTER, want{code: 401, reason: "Unauthorized"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := authTestRequest(t, tc.method, tc.src, tc.user, tc.pw, tc.nonce)
			vendorFails := ts.counter("troika_vendor_calls_total", "result", b2bua.VendorAuthFailed)
			var p auth.Principal
			var r *sipmsg.Reply
			if tc.method == sip.REGISTER {
				p.Account, r = ts.auth.Authenticate(sock.Name, req, auth.WWW, tc.user, now)
				p.By = auth.ByAccount
			} else {
				p, r = ts.auth.AuthorizeInvite(sock.Name, req, now)
			}
			w := tc.want
			switch {
			case w.code != 0:
				if r == nil || r.Code != w.code || r.Reason != w.reason {
					t.Fatalf("got %+v %+v, want %d %s", p, r, w.code, w.reason)
				}
				hasStale := false
				for _, h := range r.Headers {
					hasStale = hasStale || strings.Contains(h.Value(), "stale=true")
				}
				if hasStale != w.staleParam {
					t.Errorf("stale=%v in %v", hasStale, r.Headers)
				}
			case r != nil:
				t.Fatalf("refused %d %s, want authorized", r.Code, r.Reason)
			case w.conn != "":
				if !p.IsVendor() || p.Conn.ID != w.conn || p.By != w.by || p.Vendor.ID != p.Conn.Vendor {
					t.Errorf("got %+v, want connection %s by %s", p, w.conn, w.by)
				}
			default:
				if p.IsVendor() || p.Account.ID != w.account || p.By != w.by {
					t.Errorf("got %+v, want account %s", p, w.account)
				}
			}
			if got := ts.counter("troika_vendor_calls_total", "result", b2bua.VendorAuthFailed) - vendorFails; (got == 1) != tc.vendorFail {
				t.Errorf("vendor auth failures counted %v", got)
			}
		})
	}
}

// authTestRequest builds a request from src (the transport's source
// address; Via always claims 10.9.1.1) with digest credentials of user
// answering a nonce issued at nonceAt to this request, unless user is "".
func authTestRequest(t *testing.T, method sip.RequestMethod, src, user, pw string, nonceAt time.Time) *sip.Request {
	t.Helper()
	ruri := "sip:0044123@192.0.2.200"
	hdr, authHdr := "Proxy-Authorization", "INVITE"
	if method == sip.REGISTER {
		ruri, hdr, authHdr = "sip:192.0.2.200", "Authorization", "REGISTER"
	}
	callID := fmt.Sprintf("auth-%d@test", time.Now().UnixNano())
	authz := ""
	if user != "" {
		bind := auth.Binding{CallID: callID, FromTag: "f1"}
		if method == sip.REGISTER {
			bind.FromTag = ""
		}
		if ap, err := netip.ParseAddrPort(src); err == nil {
			bind.Source = ap.Addr()
		}
		nonce := auth.MintNonce(testSecret, "troika", bind, nonceAt)
		cred, err := digest.Digest(&digest.Challenge{Realm: "troika", Nonce: nonce, Algorithm: "MD5", QOP: []string{"auth"}},
			digest.Options{Method: authHdr, URI: ruri, Username: user, Password: pw, Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		authz = hdr + ": " + cred.String() + "\r\n"
	}
	to := "<" + ruri + ">"
	if method == sip.REGISTER {
		to = "<sip:" + user + "@192.0.2.200>"
	}
	raw := fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.1.1:5060;branch=z9hG4bKauth%d\r\n"+
		"From: <sip:00442071234567@10.9.1.1>;tag=f1\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 %s\r\n"+
		"Contact: <sip:gw@10.9.1.1:5060>\r\nMax-Forwards: 70\r\n%sContent-Length: 0\r\n\r\n",
		method, ruri, time.Now().UnixNano(), to, callID, method, authz)
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	if src != "" {
		req.SetSource(src)
	}
	return req
}
