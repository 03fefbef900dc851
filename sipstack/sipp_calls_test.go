package sipstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/b2bua"
)

// SIPp drives calls: testdata/uac_auth.xml as the caller (digest auth
// with -au/-ap), testdata/uas.xml as the callee.

// sippResult is what a SIPp run reports.
type sippResult struct {
	ok, failed int
	messages   string // the message log (-trace_msg)
	output     string
}

// runSIPp runs SIPp to completion (bounded by timeout) with a stat file
// and a message log, from dir.
func runSIPp(t *testing.T, timeout time.Duration, args ...string) sippResult {
	t.Helper()
	return startSIPp(t, timeout, args...)()
}

// startSIPp starts SIPp as runSIPp does, in the background; the func
// returned waits for it to end (bounded by timeout) and returns what it
// saw. Call it from the test's goroutine.
func startSIPp(t *testing.T, timeout time.Duration, args ...string) (wait func() sippResult) {
	t.Helper()
	dir := t.TempDir()
	stat, msgs := filepath.Join(dir, "stat.csv"), filepath.Join(dir, "messages.log")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	args = append(args, "-nostdin", "-timeout", strconv.Itoa(int(timeout.Seconds())-2)+"s", "-timeout_error",
		"-trace_stat", "-stf", stat, "-fd", "1", "-trace_msg", "-message_file", msgs,
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"))
	type ran struct {
		out []byte
		err error
	}
	done := make(chan ran, 1)
	go func() {
		out, err := exec.CommandContext(ctx, "sipp", args...).CombinedOutput()
		done <- ran{out, err}
	}()
	t.Cleanup(cancel)
	return func() sippResult {
		t.Helper()
		r := <-done
		cancel()
		return sippOutcome(t, dir, args, r.out, r.err)
	}
}

// sippOutcome reads the statistics and message log SIPp left in dir.
func sippOutcome(t *testing.T, dir string, args []string, out []byte, err error) sippResult {
	t.Helper()
	stat, msgs := filepath.Join(dir, "stat.csv"), filepath.Join(dir, "messages.log")
	m, _ := os.ReadFile(msgs)
	r := sippResult{messages: string(m), output: string(out)}
	if err != nil {
		var ee *exec.ExitError
		if !(errors.As(err, &ee) && ee.ExitCode() == 1) { // 1: some calls failed
			errs, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
			t.Fatalf("sipp %v: %v\n%s\nerrors:\n%s", args, err, tail(string(out), 2000), tail(string(errs), 3000))
		}
	}
	st, err := sipptest.ReadStats(stat)
	if err != nil {
		t.Fatal(err)
	}
	r.ok, r.failed = st.OK, st.Failed
	return r
}

// sippUAS runs a SIPp callee on ip:port until the test ends; its message
// log is returned by the func.
func sippUAS(t *testing.T, ip string, port int) func() string {
	t.Helper()
	return sippServer(t, "testdata/uas.xml", ip, port)
}

// sippServer runs a SIPp server scenario on ip:port until the test ends,
// with more sipp arguments; the func returns its message log so far.
func sippServer(t *testing.T, scenario, ip string, port int, extra ...string) func() string {
	t.Helper()
	msgs := filepath.Join(t.TempDir(), "messages.log")
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"-sf", scenario, "-i", ip, "-p", strconv.Itoa(port),
		"-nostdin", "-fd", "1", "-trace_msg", "-message_file", msgs}, extra...)
	cmd := exec.CommandContext(ctx, "sipp", args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	sipptest.WaitListening(t, "udp", ip, port)
	return func() string {
		b, _ := os.ReadFile(msgs)
		return string(b)
	}
}

// sippRegister registers user from ip:port through server with
// testdata/reg_auth.xml.
func sippRegister(t *testing.T, server, ip string, port int, user string) {
	t.Helper()
	dir := t.TempDir()
	inf := filepath.Join(dir, "users.csv")
	os.WriteFile(inf, []byte(fmt.Sprintf("SEQUENTIAL\n%s;[authentication username=%s password=pw%s]\n", user, user, user)), 0o600)
	r := runSIPp(t, 20*time.Second, server, "-sf", "testdata/reg_auth.xml", "-inf", inf, "-i", ip, "-p", strconv.Itoa(port), "-m", "1")
	if r.ok != 1 {
		t.Fatalf("SIPp REGISTER of %s failed:\n%s", user, tail(r.messages, 3000))
	}
}

// sdpMedia returns the media lines of the first SDP body in a SIPp
// message log section that starts with start (e.g. "INVITE sip:").
func sdpMedia(log, start string) []string {
	i := strings.Index(log, start)
	if i < 0 {
		return nil
	}
	rest := strings.ReplaceAll(log[i:], "\r\n", "\n")
	if j := strings.Index(rest, "\n\n"); j >= 0 {
		body := rest[j+2:]
		if k := strings.Index(body, "----"); k >= 0 {
			body = body[:k]
		}
		return mediaLines(body)
	}
	return nil
}

// A SIPp caller with digest auth calls a SIPp callee registered through
// the registrar; the call connects, media lines pass unchanged both ways,
// the BYE ends it, and the xDR and balances are right to the micro-unit
// for several tariffs.
func TestSIPpCallBilling(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	cases := []struct {
		name   string
		rate   fsm.Rate
		rateIn *fsm.Rate // the callee's incoming tariff
	}{
		{"60/60", fsm.Rate{PerMinute: 1_200_000, FirstInterval: 60, NextInterval: 60}, nil},
		{"1/1", fsm.Rate{PerMinute: 1_234_567, FirstInterval: 1, NextInterval: 1}, nil},
		{"connect fee", fsm.Rate{PerMinute: 600_000, ConnectFee: 150_000, FirstInterval: 30, NextInterval: 6}, nil},
		{"free seconds", fsm.Rate{PerMinute: 3_000_000, FirstInterval: 1, NextInterval: 1, FreeSeconds: 1},
			&fsm.Rate{PerMinute: 60_000, ConnectFee: 7, FirstInterval: 1, NextInterval: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const startBalance = 50_000_000
			st := newTestState(t, false)
			putTariff(t, st, "out", tc.rate)
			tariffIn := ""
			if tc.rateIn != nil {
				putTariff(t, st, "in", *tc.rateIn)
				tariffIn = "in"
			}
			addAccount(t, st, fsm.Account{ID: "3001", Credentials: testkit.Creds("3001", "pw3001"), Billing: fsm.Prepaid, Balance: startBalance, TariffOut: "out"})
			addAccount(t, st, fsm.Account{ID: "3002", Credentials: testkit.Creds("3002", "pw3002"), Billing: fsm.Prepaid, Balance: startBalance, TariffIn: tariffIn})
			ts := startServer(t, st, func(c *Config) { c.Registrar.Algorithms = []string{"MD5", "SHA-256"} })
			srv := ts.addr(t, "udp", ts.ip)

			uasIP := testIP()
			uasPort := testkit.FreePort(t, uasIP)
			sippRegister(t, srv, uasIP, uasPort, "3002")
			if bs := st.Bindings("3002", time.Now().UnixMilli()); len(bs) != 1 || bs[0].Source != fmt.Sprintf("%s:%d", uasIP, uasPort) {
				t.Fatalf("callee bindings %+v", bs)
			}
			uasLog := sippUAS(t, uasIP, uasPort)

			// 2.3 s: well inside a second boundary, so rounding to the
			// nearest second is stable; the test still takes the duration
			// from the xDR.
			r := runSIPp(t, 30*time.Second, srv, "-sf", "testdata/uac_auth.xml", "-s", "3002", "-au", "3001", "-ap", "pw3001",
				"-i", testIP(), "-m", "1", "-d", "2300")
			if r.ok != 1 || r.failed != 0 {
				t.Fatalf("call: %d ok, %d failed\n%s", r.ok, r.failed, tail(r.messages, 4000))
			}
			// The 200 to the caller's BYE goes out before EndCall is
			// written: wait for the xDR.
			var xs []fsm.XDR
			testkit.WaitFor(t, 5*time.Second, "the call's xDR", func() bool { xs = st.XDRs(fsm.XDRFilter{Account: "3001"}); return len(xs) > 0 })
			if len(xs) != 1 {
				t.Fatalf("%d xDRs", len(xs))
			}
			x := xs[0]
			// SIPp holds the call 2.3 s after its ACK: at least 2 s once
			// rounded, more only on a stalled machine.
			if x.Cause != 200 || x.DisconnectedBy != b2bua.ByCaller || x.ConnectAt == 0 || x.Duration < 2 || x.Duration > 30 {
				t.Errorf("xDR %+v", x)
			}
			want := toRate(tc.rate).Charge(x.Duration)
			if x.Charges[0].Amount != want || x.Charges[0].Seconds != toRate(tc.rate).ChargedSeconds(x.Duration) {
				t.Errorf("caller charged %d for %d s (%d s billed), want %d", x.Charges[0].Amount, x.Duration, x.Charges[0].Seconds, want)
			}
			if got := startBalance - balance(st, "3001"); got != want {
				t.Errorf("caller balance dropped by %d, want %d", got, want)
			}
			wantIn := int64(0)
			if tc.rateIn != nil {
				wantIn = toRate(*tc.rateIn).Charge(x.Duration)
			}
			if got := startBalance - balance(st, "3002"); got != wantIn || x.Amount != want+wantIn {
				t.Errorf("callee charged %d, xDR amount %d; want %d and %d", got, x.Amount, wantIn, want+wantIn)
			}
			waitNoCalls(t, ts)

			// Media lines cross unchanged: the caller's offer reaches the
			// callee, the callee's answer reaches the caller.
			offer, got := sdpMedia(r.messages, "INVITE sip:"), sdpMedia(uasLog(), "INVITE sip:")
			if len(offer) == 0 || strings.Join(offer, "|") != strings.Join(got, "|") {
				t.Errorf("offer media lines changed:\nsent %q\ngot  %q", offer, got)
			}
			answer, gotAnswer := sdpMedia(uasLog(), "SIP/2.0 200 OK"), sdpMedia(r.messages, "SIP/2.0 200 OK")
			if len(answer) == 0 || strings.Join(answer, "|") != strings.Join(gotAnswer, "|") {
				t.Errorf("answer media lines changed:\nsent %q\ngot  %q", answer, gotAnswer)
			}
		})
	}
}

func toRate(r fsm.Rate) billing.Rate {
	return billing.Rate{Prefix: r.Prefix, PerMinute: r.PerMinute, ConnectFee: r.ConnectFee,
		FirstInterval: r.FirstInterval, NextInterval: r.NextInterval, FreeSeconds: r.FreeSeconds}
}

// uacArgs are the arguments of a SIPp caller placing calls from user to
// cld through server, from a fresh local address. SIPp's own BYE on a
// failed call is turned off (the switch ends refused calls itself).
func uacArgs(server, user, cld string, extra ...string) []string {
	return append([]string{server, "-sf", "testdata/uac_auth.xml", "-s", cld, "-au", user, "-ap", "pw" + user,
		"-i", testIP(), "-default_behaviors", "all,-bye"}, extra...)
}

// 200 simultaneous calls of one prepaid account: those its balance can
// hold connect, the others get 402; the balance never goes below zero,
// nothing stays reserved, and the xDRs add up to the balance's drop.
func TestSIPpConcurrentPrepaid(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	const bal = 500_000_000 // 500 s at 1 unit a second: 50 calls of 10 s
	st := newTestState(t, false)
	putTariff(t, st, "s", fsm.Rate{PerMinute: 60_000_000, FirstInterval: 1, NextInterval: 1})
	addAccount(t, st, fsm.Account{ID: "5001", Credentials: testkit.Creds("5001", "pw5001"), Billing: fsm.Prepaid, Balance: bal, TariffOut: "s"})
	addAccount(t, st, fsm.Account{ID: "5002", Credentials: testkit.Creds("5002", "pw5002"), Billing: fsm.Prepaid})
	ts := startServer(t, st, func(c *Config) {
		c.Registrar.Algorithms = []string{"MD5"}
		c.Calls.MaxCallSeconds = 10
	})
	srv := ts.addr(t, "udp", ts.ip)
	uasIP := testIP()
	uasPort := testkit.FreePort(t, uasIP)
	uasAddr := fmt.Sprintf("%s:%d", uasIP, uasPort)
	bind(t, st, "5002", "sip:5002@"+uasAddr, uasAddr, "udp:"+srv)
	sippUAS(t, uasIP, uasPort)

	r := runSIPp(t, 60*time.Second, uacArgs(srv, "5001", "5002", "-r", "200", "-rp", "1000", "-l", "200", "-m", "200", "-d", "2000")...)
	if r.ok+r.failed != 200 || r.ok == 0 || r.failed == 0 {
		t.Fatalf("%d ok, %d failed: want 200 calls, some of each\n%s", r.ok, r.failed, tail(r.output, 2000))
	}
	waitNoCalls(t, ts)
	if st.Reserved("5001") != 0 {
		t.Errorf("%d still reserved", st.Reserved("5001"))
	}
	var answered int
	var sum int64
	for _, x := range st.XDRs(fsm.XDRFilter{Account: "5001"}) {
		if x.ConnectAt != 0 {
			answered++
		}
		sum += x.Amount
	}
	end := balance(st, "5001")
	if end < 0 || bal-end != sum {
		t.Errorf("balance %d: dropped %d, xDRs sum %d", end, bal-end, sum)
	}
	if answered != r.ok {
		t.Errorf("%d answered xDRs, SIPp saw %d calls connect", answered, r.ok)
	}
	if n := ts.counter("troika_sip_calls_failed_total", "code", "402"); int(n) != r.failed {
		t.Errorf("%v calls refused with 402, SIPp saw %d fail", n, r.failed)
	}
	t.Logf("%d calls connected, %d refused (402); balance %d -> %d", r.ok, r.failed, bal, end)
}

// An account with static delivery gets its calls at its host:port: here
// a SIPp callee that never registered.
func TestSIPpStaticDelivery(t *testing.T) {
	sipptest.Need(t)
	t.Parallel()
	st := callState(t, 100_000_000)
	uasIP := testIP()
	uasPort := testkit.FreePort(t, uasIP)
	testkit.MustApply(t, st, &fsm.UpdateAccount{ID: "2002", Patch: fsm.AccountPatch{
		Incoming: &fsm.Incoming{Mode: fsm.DeliverStatic, Host: uasIP, Port: uasPort, Transport: "udp"}}})
	ts := startServer(t, st, md5Only)
	srv := ts.addr(t, "udp", ts.ip)
	uasLog := sippUAS(t, uasIP, uasPort)
	r := runSIPp(t, 30*time.Second, uacArgs(srv, "2001", "2002", "-m", "1", "-d", "500")...)
	if r.ok != 1 {
		t.Fatalf("%d ok, %d failed\n%s", r.ok, r.failed, tail(r.messages, 3000))
	}
	if want := fmt.Sprintf("INVITE sip:2002@%s:%d SIP/2.0", uasIP, uasPort); !strings.Contains(uasLog(), want) {
		t.Errorf("callee log lacks %q:\n%s", want, tail(uasLog(), 2000))
	}
	testkit.WaitFor(t, 5*time.Second, "the call's xDR", func() bool { return len(st.XDRs(fsm.XDRFilter{Account: "2001"})) > 0 })
	if xs := st.XDRs(fsm.XDRFilter{Account: "2001"}); len(xs) != 1 || xs[0].Cause != 200 || xs[0].ConnectAt == 0 {
		t.Errorf("xDRs %+v", xs)
	}
	waitNoCalls(t, ts)
}
