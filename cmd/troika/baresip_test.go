package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/internal/baresiptest"
	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
)

var (
	password1002RE = regexp.MustCompile(`account 1002:\s+password (\S+)`)
	tlsCertRE      = regexp.MustCompile(`TLS cert:\s+(\S+) \(signed by the throwaway CA (\S+);`)
)

// phoneCase is one transport of TestBaresipPhones: a caller registered
// through the main address and a callee registered through the alias.
type phoneCase struct {
	transport        string // udp, tcp, tls
	caller, callee   string // accounts
	callerPW         string
	calleePW         string
	main, alias      string // the servers (host:port) the phones register with
	sippTarget       string // where SIPp sends its call (UDP)
	sippIP           string // SIPp's own address (its default port 5060 stays off 127.0.0.1)
	callerIngress    string // the socket names the bindings must carry
	calleeIngress    string
	caFile           string
	callHold, sippMS int // seconds the phones' call lasts; SIPp's -d
}

// Real softphones against `troika dev` as a user starts it (on addresses
// of its own): Debian's baresip registers through the main address and
// through the alias (the alias's extra UDP port; its TCP and TLS ports),
// over UDP, TCP and TLS; a baresip phone calls another, and SIPp calls
// one; the callee registered on the alias gets its INVITEs and BYEs from
// the alias's socket, over the connection it registered on (TCP, TLS);
// every call files one xDR whose charges follow the demo tariff, and the
// balances move by exactly those charges. The TLS sockets show the
// certificate the banner names.
func TestBaresipPhones(t *testing.T) {
	baresiptest.Need(t)
	sipptest.Need(t)
	const mainIP, aliasIP = "127.0.0.81", "127.0.0.82"
	p := startProc(t, "dev", "--data", t.TempDir(), "--sip-address", mainIP, "--alias", aliasIP, "--admin", mainIP+":8080")
	m := p.waitOutput(t, bannerRE, 30*time.Second)
	c := newClient(m[1], m[2])
	pw1001 := p.waitOutput(t, passwordRE, time.Second)[1]
	pw1002 := p.waitOutput(t, password1002RE, time.Second)[1]
	certs := p.waitOutput(t, tlsCertRE, time.Second)
	checkServedCert(t, certs[1], certs[2], mainIP+":5061", aliasIP+":5061")

	// The demo accounts for UDP, as in the README; accounts of the same
	// tariff for TCP and TLS, so the three run side by side.
	ctx := context.Background()
	for _, id := range []string{"1101", "1102", "1201", "1202"} {
		if _, err := c.CreateAccount(ctx, admin.Account{ID: id, Password: sipptest.APIPassword(id), Billing: "prepaid",
			Balance: "10", TariffOut: "demo", TariffIn: "demo"}); err != nil {
			t.Fatalf("create account %s: %v", id, err)
		}
	}
	cases := []phoneCase{
		{transport: "udp", caller: "1001", callee: "1002", callerPW: pw1001, calleePW: pw1002,
			main: mainIP + ":5060", alias: aliasIP + ":5070", sippIP: "127.0.0.83"},
		{transport: "tcp", caller: "1101", callee: "1102", main: mainIP + ":5060", alias: aliasIP + ":5060", sippIP: "127.0.0.84"},
		{transport: "tls", caller: "1201", callee: "1202", main: mainIP + ":5061", alias: aliasIP + ":5061", sippIP: "127.0.0.85",
			caFile: certs[2]},
	}
	t.Run("transport", func(t *testing.T) {
		for _, tc := range cases {
			if tc.callerPW == "" {
				tc.callerPW, tc.calleePW = sipptest.APIPassword(tc.caller), sipptest.APIPassword(tc.callee)
			}
			tc.callerIngress, tc.calleeIngress = tc.transport+":"+tc.main, tc.transport+":"+tc.alias
			tc.sippTarget = mainIP + ":5060"
			// 6 s: past the 5 free seconds, so the per-second price shows.
			tc.callHold, tc.sippMS = 6, 2000
			t.Run(tc.transport, func(t *testing.T) {
				t.Parallel()
				phoneCalls(t, c, tc)
			})
		}
	})
	p.stop(t)
}

func phoneCalls(t *testing.T, c *admin.Client, tc phoneCase) {
	ctx := context.Background()
	var err error
	before := map[string]int64{tc.caller: apiBalance(t, c, tc.caller), tc.callee: apiBalance(t, c, tc.callee)}

	a := baresiptest.Start(t, baresiptest.Options{Name: tc.transport + "-" + tc.caller, CAFile: tc.caFile})
	b := baresiptest.Start(t, baresiptest.Options{Name: tc.transport + "-" + tc.callee, CAFile: tc.caFile})
	a.Register(baresiptest.Account{User: tc.caller, Password: tc.callerPW, Server: tc.main, Transport: tc.transport})
	b.Register(baresiptest.Account{User: tc.callee, Password: tc.calleePW, Server: tc.alias, Transport: tc.transport})
	callerSrc := binding(t, c, tc.caller, tc.transport, tc.callerIngress)
	calleeSrc := binding(t, c, tc.callee, tc.transport, tc.calleeIngress)

	// Call 1: phone to phone (the callee answers at once, answermode=auto,
	// so it reports no CALL_INCOMING); the caller hangs up after callHold s.
	a.Dial(tc.callee)
	b.Expect("CALL_ESTABLISHED", "CALL_CLOSED")
	est := a.Expect("CALL_ESTABLISHED", "CALL_CLOSED")
	// The switch records the answer as it passes the 200 on: the call
	// list shows it answered a moment after the caller hears it.
	var calls []admin.Call
	if !testkit.Eventually(5*time.Second, func() bool {
		calls, err = c.Calls(ctx, tc.caller)
		return err == nil && len(calls) == 1 && calls[0].CLD == tc.callee && calls[0].ConnectAt != nil
	}) {
		t.Fatalf("calls of %s while the phones talk: %+v, %v", tc.caller, calls, err)
	}
	// The call's length is what is billed: hold it until the switch, by
	// its own clock, counts callHold seconds since the answer.
	if !testkit.Eventually(time.Duration(tc.callHold+10)*time.Second, func() bool {
		calls, err = c.Calls(ctx, tc.caller)
		return err == nil && len(calls) == 1 && calls[0].Duration >= tc.callHold
	}) {
		t.Fatalf("the switch never counted %d s of the call: %+v, %v", tc.callHold, calls, err)
	}
	a.Hangup()
	end := a.Expect("CALL_CLOSED")
	b.Expect("CALL_CLOSED")
	held1 := end.At.Sub(est.At)

	// Call 2: SIPp calls the callee as the caller's account, over UDP
	// through the main address, and hangs up after sippMS.
	st := sipptest.Run(t, sipptest.Options{Target: tc.sippTarget,
		Scenario: "../../sipstack/testdata/uac_auth.xml", LocalIP: tc.sippIP, Calls: 1, Timeout: 30 * time.Second,
		Extra: []string{"-s", tc.callee, "-au", tc.caller, "-ap", tc.callerPW, "-d", fmt.Sprint(tc.sippMS)}})
	if st.OK != 1 || st.Failed != 0 {
		t.Fatalf("SIPp's call to %s: %d ok, %d failed\n%s\n%s", tc.callee, st.OK, st.Failed, st.Output, st.Errors)
	}
	b.Expect("CALL_ESTABLISHED", "CALL_CLOSED")
	b.Expect("CALL_CLOSED")

	// Two xDRs, charged by the demo tariff (0.01 to connect, then
	// 0.02/min per second after 5 free seconds, on each side).
	// The switch files a call's xDR as it passes the BYE on: it is there a
	// moment after the callee hears it.
	var xdrs []admin.XDR
	if !testkit.Eventually(5*time.Second, func() bool {
		xdrs, err = c.XDRs(ctx, admin.XDRQuery{Account: tc.caller})
		return err == nil && len(xdrs) >= 2
	}) || len(xdrs) != 2 {
		t.Fatalf("xDRs of %s: %d (%v), want 2: %+v", tc.caller, len(xdrs), err, xdrs)
	}
	slices.SortFunc(xdrs, func(x, y admin.XDR) int { return cmp.Compare(x.ID, y.ID) })
	paid := map[string]int64{}
	for i, x := range xdrs {
		if x.Account != tc.caller || x.Direction != "outgoing" || x.CLI != tc.caller || x.CLD != tc.callee ||
			x.Cause != 200 || x.DisconnectedBy != "caller" || x.ConnectAt == nil {
			t.Errorf("xDR %d: %+v", i+1, x)
		}
		want := []time.Duration{held1, time.Duration(tc.sippMS) * time.Millisecond}[i]
		if d := time.Duration(x.Duration) * time.Second; d < want-time.Second || d > want+time.Second {
			t.Errorf("xDR %d: duration %d s; the call lasted %s", i+1, x.Duration, want.Round(time.Millisecond))
		}
		wantAmount := demoCharge(x.Duration)
		var total int64
		roles := map[string]string{}
		for _, ch := range x.Charges {
			amount := testkit.Money(t, ch.Amount)
			if amount != wantAmount || ch.Seconds != max(0, x.Duration-5) {
				t.Errorf("xDR %d: %s pays %s for %d s, want %s for %d s of a %d s call", i+1, ch.Account, ch.Amount, ch.Seconds,
					billing.FormatMoney(wantAmount), max(0, x.Duration-5), x.Duration)
			}
			roles[ch.Account] = ch.Role
			paid[ch.Account] += amount
			total += amount
		}
		if len(x.Charges) != 2 || roles[tc.caller] == "" || roles[tc.callee] == "" || roles[tc.caller] == roles[tc.callee] {
			t.Errorf("xDR %d: charges %+v, want one for %s and one for %s", i+1, x.Charges, tc.caller, tc.callee)
		}
		if testkit.Money(t, x.Amount) != total {
			t.Errorf("xDR %d: amount %s, its charges sum to %s", i+1, x.Amount, billing.FormatMoney(total))
		}
		t.Logf("xDR %d: %s -> %s, %d s (held %s), %s each side, total %s", i+1, x.CLI, x.CLD, x.Duration,
			want.Round(time.Millisecond), billing.FormatMoney(wantAmount), x.Amount)
	}
	if xdrs[0].Duration <= 5 {
		t.Errorf("the phones' call lasted %d s: the per-second price was not exercised", xdrs[0].Duration)
	}
	for _, id := range []string{tc.caller, tc.callee} {
		acct, err := c.Account(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got := testkit.Money(t, acct.Balance); got != before[id]-paid[id] || testkit.Money(t, acct.Reserved) != 0 {
			t.Errorf("%s: balance %s reserved %s; want %s - %s = %s, nothing reserved", id, acct.Balance, acct.Reserved,
				billing.FormatMoney(before[id]), billing.FormatMoney(paid[id]), billing.FormatMoney(before[id]-paid[id]))
		}
		t.Logf("%s: balance %s -> %s", id, billing.FormatMoney(before[id]), acct.Balance)
	}

	// The SIP trace (complete once the phones quit): each phone's
	// binding is the address it registered from; the callee got both
	// INVITEs and both BYEs from the alias's socket, on that address: for
	// TCP and TLS, the connection it opened to register.
	a.Stop()
	b.Stop()
	proto := strings.ToUpper(tc.transport)
	checkRegisteredFrom(t, a, proto, callerSrc, tc.main)
	checkRegisteredFrom(t, b, proto, calleeSrc, tc.alias)
	got := map[string]int{}
	for _, msg := range b.Trace() {
		method := msg.Method()
		if method != "INVITE" && method != "BYE" && method != "ACK" {
			continue
		}
		if msg.Transport != proto || msg.Src != tc.alias || msg.Dst != calleeSrc {
			t.Errorf("callee %s got %s; want it over %s from %s to %s", tc.callee, msg, proto, tc.alias, calleeSrc)
		}
		got[method]++
	}
	if got["INVITE"] != 2 || got["BYE"] != 2 || got["ACK"] != 2 {
		t.Errorf("callee %s got %v, want 2 INVITEs, 2 ACKs and 2 BYEs from the switch", tc.callee, got)
	}
}

// binding checks that account has one binding, over transport through
// ingress, and returns its source address.
func binding(t *testing.T, c *admin.Client, account, transport, ingress string) string {
	t.Helper()
	regs, err := c.Registrations(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 1 || regs[0].Transport != transport || regs[0].Ingress != ingress || !strings.Contains(regs[0].UserAgent, "baresip") {
		t.Fatalf("bindings of %s: %+v; want one over %s through %s, from baresip", account, regs, transport, ingress)
	}
	return regs[0].Source
}

// checkRegisteredFrom checks that the phone's REGISTERs left from src (the
// binding's source) to server over proto.
func checkRegisteredFrom(t *testing.T, p *baresiptest.Phone, proto, src, server string) {
	t.Helper()
	n := 0
	for _, msg := range p.Trace() {
		if msg.Method() != "REGISTER" {
			continue
		}
		n++
		if msg.Transport != proto || msg.Src != src || msg.Dst != server {
			t.Errorf("REGISTER %s; want it over %s from %s (the binding's source) to %s", msg, proto, src, server)
		}
	}
	if n == 0 {
		t.Errorf("no REGISTER in the phone's trace:\n%s", p.Log())
	}
}

// checkServedCert checks the certificate file the banner names: signed
// by the CA it names, for the main address and the alias, and what the
// TLS sockets show.
func checkServedCert(t *testing.T, certFile, caFile string, servers ...string) {
	t.Helper()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatalf("the CA the banner names: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatalf("the certificate the banner names: %v", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatalf("%s holds no PEM certificate", certFile)
	}
	for _, srv := range servers {
		host, _, _ := strings.Cut(srv, ":")
		conn, err := tls.Dial("tcp", srv, &tls.Config{RootCAs: pool, ServerName: host})
		if err != nil {
			t.Fatalf("TLS to %s, trusting only %s: %v", srv, caFile, err)
		}
		served := conn.ConnectionState().PeerCertificates[0].Raw
		conn.Close()
		if !slices.Equal(served, block.Bytes) {
			t.Errorf("%s shows another certificate than %s", srv, certFile)
		}
	}
}

// demoCharge is what the demo tariff charges each side of a d-second
// call to a number starting with 1: 0.01 to connect, 0.02/min per second
// after 5 free seconds, rounded up to the micro-unit.
func demoCharge(d int) int64 {
	secs := int64(max(0, d-5))
	return 10_000 + (20_000*secs+59)/60
}

func apiBalance(t *testing.T, c *admin.Client, id string) int64 {
	t.Helper()
	a, err := c.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return testkit.Money(t, a.Balance)
}
