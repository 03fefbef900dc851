package sipstack

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/b2bua"
)

// Quota reservations with real SIPp peers: 20 parallel calls of one
// prepaid account whose balance buys 30 minutes of calls in all, reserved
// a minute at a time. Call time passes on the test clock, 5 s at a step,
// each step waiting until the switch has done what the time asks for.
const (
	quotaCalls     = 20
	quotaPerMinute = 600_000 // 0.60 a minute, 1/1: 0.01 a second
	quotaBalance   = 30 * quotaPerMinute
	quotaChunk     = 60 // seconds
	// quotaLead is how long before its paid time runs out a call asks
	// for its next chunk: a quarter of the chunk (b2bua's extendLead).
	quotaLead = quotaChunk * time.Second / 4
	quotaStep = 5 * time.Second
)

var quotaRate = fsm.Rate{PerMinute: quotaPerMinute, FirstInterval: 1, NextInterval: 1}

// quotaRig is the shared state of a quota test: caller 6001 with a
// balance, callees 6002 and 6003 (free to call), and a SIPp callee both
// are delivered to.
type quotaRig struct {
	st      *fsm.State
	clock   *testkit.Clock
	uasAddr string
	uasLog  func() string
}

func newQuotaRig(t *testing.T, balance int64) *quotaRig {
	t.Helper()
	sipptest.Need(t)
	r := &quotaRig{st: newTestState(t, false), clock: &testkit.Clock{}}
	putTariff(t, r.st, "q", quotaRate)
	addAccount(t, r.st, fsm.Account{ID: "6001", Credentials: testkit.Creds("6001", "pw6001"), Billing: fsm.Prepaid,
		Balance: balance, TariffOut: "q"})
	for _, id := range []string{"6002", "6003"} {
		addAccount(t, r.st, fsm.Account{ID: id, Credentials: testkit.Creds(id, "pw"+id), Billing: fsm.Prepaid})
	}
	ip := testIP()
	port := testkit.FreePort(t, ip)
	r.uasAddr = fmt.Sprintf("%s:%d", ip, port)
	r.uasLog = sippUAS(t, ip, port)
	return r
}

// node runs a SIP server called id on ip:port over the rig's state and
// clock, reserving a minute at a time.
func (r *quotaRig) node(t *testing.T, id, ip string, port int, alive func(string) bool) (*Server, *prometheus.Registry, func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, stop := runNode(t, r.st, Config{
		Addresses: []string{ip}, UDPPorts: []int{port}, Registrar: RegistrarConfig{Realm: "troika", Algorithms: []string{"MD5"}},
		Calls:  CallConfig{ReserveChunkSeconds: quotaChunk},
		NodeID: id, Logger: slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}), nil)),
		Metrics: reg, NodeAlive: alive, Now: r.clock.Now, ClockJumps: r.clock.Jumps,
	})
	return s, reg, stop
}

// callers starts n SIPp calls from 6001 to callee through server; they
// succeed when the switch cuts them (uac_auth_cut.xml).
func (r *quotaRig) callers(t *testing.T, server, callee string, n int) func() sippResult {
	t.Helper()
	return startSIPp(t, 120*time.Second, server, "-sf", "testdata/uac_auth_cut.xml", "-s", callee, "-au", "6001", "-ap", "pw6001",
		"-i", testIP(), "-default_behaviors", "all,-bye", "-m", fmt.Sprint(n), "-l", fmt.Sprint(n), "-r", fmt.Sprint(n))
}

// answered counts the caller's answered calls in the state.
func (r *quotaRig) answered() int {
	n := 0
	for _, c := range r.st.Calls() {
		if c.Account == "6001" && c.ConnectAt != 0 {
			n++
		}
	}
	return n
}

// settled reports whether the switch has done what the time asks for:
// every call whose paid time ran out is ended, and every call that may
// still be extended has been before its last quotaLead.
func (r *quotaRig) settled() bool {
	now := r.clock.Now()
	for _, c := range r.st.Calls() {
		paidUntil := time.UnixMilli(c.ConnectAt).Add(time.Duration(c.MaxDuration) * time.Second)
		if !now.Before(paidUntil) {
			return false
		}
		if q, ok := r.st.CallQuota(c.ID); ok && q.Extendable(c.MaxDuration) && paidUntil.Sub(now) <= quotaLead {
			return false
		}
	}
	return true
}

// runClock moves the clock on a step at a time, each once the switch has
// settled, until no call is left; at is called with the call time passed
// after each step.
func (r *quotaRig) runClock(t *testing.T, at func(elapsed time.Duration)) time.Duration {
	t.Helper()
	var elapsed time.Duration
	for len(r.st.Calls()) > 0 {
		if elapsed > 10*time.Minute {
			t.Fatalf("%d calls still up after %s of call time", len(r.st.Calls()), elapsed)
		}
		r.clock.Advance(quotaStep)
		elapsed += quotaStep
		testkit.WaitFor(t, 10*time.Second, fmt.Sprintf("the switch to settle at %s of call time", elapsed), r.settled)
		if at != nil {
			at(elapsed)
		}
	}
	return elapsed
}

// checkMoney checks what the calls cost: the balance used up exactly,
// never below zero, nothing reserved, one xDR per call cut by the timer
// for want of credit, each charged what it lasted up to what it paid for,
// and the xDRs adding up to what the balance lost. It returns the xDRs.
func (r *quotaRig) checkMoney(t *testing.T) []fsm.XDR {
	t.Helper()
	xs := r.st.XDRs(fsm.XDRFilter{Account: "6001"})
	if len(xs) != quotaCalls {
		t.Fatalf("%d xDRs, want %d", len(xs), quotaCalls)
	}
	var sum int64
	seconds := map[int]int{} // seconds charged -> calls
	for _, x := range xs {
		sum += x.Amount
		seconds[x.Charges[0].Seconds]++
		if x.ConnectAt == 0 || x.DisconnectedBy != b2bua.ByTimer || x.CauseText != "Out of Credit" || x.Cause != 200 {
			t.Errorf("xDR %+v: want an answered call cut by the timer, Out of Credit", x)
		}
		if want := toRate(quotaRate).Charge(x.Charges[0].Seconds); x.Amount != want || x.Charges[0].Seconds > x.Duration {
			t.Errorf("xDR %d: %d s charged of %d s for %d, want %d", x.Seq, x.Charges[0].Seconds, x.Duration, x.Amount, want)
		}
	}
	if b := balance(r.st, "6001"); b != 0 || sum != quotaBalance || r.st.Reserved("6001") != 0 {
		t.Errorf("balance %d (want 0), xDRs sum %d (want %d), reserved %d", b, sum, quotaBalance, r.st.Reserved("6001"))
	}
	t.Logf("%d xDRs summing %s; calls by seconds charged: %v; balance %s -> %s, reserved %d",
		len(xs), billing.FormatMoney(sum), seconds, billing.FormatMoney(quotaBalance), billing.FormatMoney(balance(r.st, "6001")), r.st.Reserved("6001"))
	return xs
}

// byesReceived counts the BYEs in a SIPp message log.
func byesReceived(log string) int { return strings.Count(log, "BYE sip:") }

// 20 parallel calls of one prepaid balance that buys 30 minutes, a
// minute reserved at a time: all connect (each holds only its first
// minute), the calls extend while money is left, and when it runs out
// every call is cut, both legs getting a BYE. The balance ends at exactly
// 0, the xDRs sum to what it lost, and nothing stays reserved.
func TestSIPpQuotaCallsShareOneBalance(t *testing.T) {
	t.Parallel()
	r := newQuotaRig(t, quotaBalance)
	ip := testIP()
	port := testkit.FreePort(t, ip)
	server := fmt.Sprintf("%s:%d", ip, port)
	s, reg, _ := r.node(t, "a", ip, port, nil)
	bind(t, r.st, "6002", "sip:6002@"+r.uasAddr, r.uasAddr, "udp:"+server)

	wait := r.callers(t, server, "6002", quotaCalls)
	testkit.WaitFor(t, 20*time.Second, "every call answered", func() bool { return r.answered() == quotaCalls })
	if held := r.st.Reserved("6001"); held != quotaCalls*quotaPerMinute {
		t.Fatalf("the calls hold %s, want a minute each (%s)", billing.FormatMoney(held), billing.FormatMoney(quotaCalls*quotaPerMinute))
	}
	elapsed := r.runClock(t, nil)
	res := wait()
	if res.ok != quotaCalls || res.failed != 0 {
		t.Fatalf("callers: %d ok, %d failed; want all %d cut by the switch\n%s", res.ok, res.failed, quotaCalls, tail(res.messages, 3000))
	}
	if n := byesReceived(r.uasLog()); n != quotaCalls {
		t.Errorf("the callee got %d BYEs, want %d", n, quotaCalls)
	}
	r.checkMoney(t)
	extended, final := testkit.Metric(reg, "troika_sip_call_extensions_total", "result", "extended"),
		testkit.Metric(reg, "troika_sip_call_extensions_total", "result", "final")
	// 20 minutes at setup, 10 more minutes in whole chunks; then each call
	// is told once that the money is gone.
	if extended != 10 || final != quotaCalls {
		t.Errorf("extensions: %v extended, %v final; want 10 and %d", extended, final, quotaCalls)
	}
	testkit.WaitFor(t, 5*time.Second, "the node to forget its calls", func() bool { return s.ActiveCalls() == 0 && s.calls.Dialogs() == 0 })
	t.Logf("%d calls connected and were cut after %s of call time; %v chunks extended, %v final", res.ok, elapsed, extended, final)
}

// The same with two nodes running ten calls each, and one of them
// stopping half way through the first chunk, leaving its answered calls
// in the cluster state: a node taking over its address adopts them and
// goes on extending them chunk by chunk. The totals are still exact.
func TestSIPpQuotaCallsAdoptedMidway(t *testing.T) {
	t.Parallel()
	r := newQuotaRig(t, quotaBalance)
	ipA, ipB := testIP(), testIP()
	portA, portB := testkit.FreePort(t, ipA), testkit.FreePort(t, ipB)
	serverA, serverB := fmt.Sprintf("%s:%d", ipA, portA), fmt.Sprintf("%s:%d", ipB, portB)
	_, _, stopA := r.node(t, "a", ipA, portA, nil)
	b, regB, _ := r.node(t, "b", ipB, portB, nil)
	bind(t, r.st, "6002", "sip:6002@"+r.uasAddr, r.uasAddr, "udp:"+serverA)
	bind(t, r.st, "6003", "sip:6003@"+r.uasAddr, r.uasAddr, "udp:"+serverB)

	waitA := r.callers(t, serverA, "6002", quotaCalls/2)
	waitB := r.callers(t, serverB, "6003", quotaCalls/2)
	testkit.WaitFor(t, 20*time.Second, "every call answered", func() bool { return r.answered() == quotaCalls })

	var c *Server
	var regC *prometheus.Registry
	elapsed := r.runClock(t, func(elapsed time.Duration) {
		if elapsed != 30*time.Second {
			return
		}
		stopA()
		var onA int
		for _, fc := range r.st.Calls() {
			if fc.Node == "a" {
				onA++
			}
		}
		if onA != quotaCalls/2 {
			t.Fatalf("%d calls of the stopped node left in the state, want %d", onA, quotaCalls/2)
		}
		c, regC, _ = r.node(t, "c", ipA, portA, func(n string) bool { return n == "b" })
		if n := c.AdoptOrphans(); n != quotaCalls/2 {
			t.Fatalf("node c adopted %d calls, want %d", n, quotaCalls/2)
		}
		t.Logf("node a stopped at %s of call time; node c adopted its %d calls", elapsed, onA)
	})
	if c == nil {
		t.Fatal("the calls ended before node a was stopped")
	}
	for name, wait := range map[string]func() sippResult{"a": waitA, "b": waitB} {
		if res := wait(); res.ok != quotaCalls/2 || res.failed != 0 {
			t.Errorf("callers through %s: %d ok, %d failed; want all %d cut by the switch\n%s", name, res.ok, res.failed,
				quotaCalls/2, tail(res.messages, 3000))
		}
	}
	if n := byesReceived(r.uasLog()); n != quotaCalls {
		t.Errorf("the callee got %d BYEs, want %d", n, quotaCalls)
	}
	xs := r.checkMoney(t)
	byNode := map[string]int{}
	for _, x := range xs {
		byNode[x.Node]++
	}
	if byNode["b"] != quotaCalls/2 || byNode["c"] != quotaCalls/2 {
		t.Errorf("xDRs by node %v: want half ended by b, half by the adopter c", byNode)
	}
	asked := func(reg *prometheus.Registry) float64 {
		return testkit.Metric(reg, "troika_sip_call_extensions_total", "result", "extended") +
			testkit.Metric(reg, "troika_sip_call_extensions_total", "result", "final")
	}
	extended := testkit.Metric(regB, "troika_sip_call_extensions_total", "result", "extended") +
		testkit.Metric(regC, "troika_sip_call_extensions_total", "result", "extended")
	// Each adopted call asks the adopter for its second minute at least.
	if asked(regC) < quotaCalls/2 || extended != 10 {
		t.Errorf("the adopter asked %v times for a next chunk (want %d at least); %v chunks extended in all, want 10",
			asked(regC), quotaCalls/2, extended)
	}
	testkit.WaitFor(t, 5*time.Second, "the nodes to forget their calls", func() bool {
		return b.ActiveCalls() == 0 && c.ActiveCalls() == 0 && b.calls.Dialogs() == 0 && c.calls.Dialogs() == 0
	})
	t.Logf("cut after %s of call time; xDRs by node %v; adopter asked %v times, b %v times; %v chunks extended",
		elapsed, byNode, asked(regC), asked(regB), extended)
}

// A call whose node stopped while no other node took it over until its
// paid minute had run out: the adopter extends it before anything else
// (the next chunk pays for the gap too) rather than cut a call the money
// still pays for, and cuts it when the 3 minutes the balance buys are
// over.
func TestSIPpQuotaCallAdoptedLate(t *testing.T) {
	t.Parallel()
	r := newQuotaRig(t, 3*quotaPerMinute)
	ip := testIP()
	port := testkit.FreePort(t, ip)
	server := fmt.Sprintf("%s:%d", ip, port)
	_, _, stopA := r.node(t, "a", ip, port, nil)
	bind(t, r.st, "6002", "sip:6002@"+r.uasAddr, r.uasAddr, "udp:"+server)
	wait := r.callers(t, server, "6002", 1)
	testkit.WaitFor(t, 20*time.Second, "the call answered", func() bool { return r.answered() == 1 })
	stopA()
	r.clock.Advance(90 * time.Second) // no node runs the call: its paid minute runs out
	c, reg, _ := r.node(t, "c", ip, port, nil)
	if n := c.AdoptOrphans(); n != 1 {
		t.Fatalf("adopted %d calls, want 1", n)
	}
	testkit.WaitFor(t, 10*time.Second, "the adopter to settle", r.settled)
	if fc := r.st.Calls(); len(fc) != 1 || fc[0].MaxDuration != 120 || fc[0].Node != "c" {
		t.Fatalf("calls after the late adoption: %+v; want the call paid through 120 s, on c", fc)
	}
	elapsed := 90*time.Second + r.runClock(t, nil)
	if res := wait(); res.ok != 1 {
		t.Fatalf("caller: %d ok, %d failed\n%s", res.ok, res.failed, tail(res.messages, 3000))
	}
	xs := r.st.XDRs(fsm.XDRFilter{Account: "6001"})
	if len(xs) != 1 || xs[0].Node != "c" || xs[0].Charges[0].Seconds != 180 || xs[0].Amount != 3*quotaPerMinute ||
		balance(r.st, "6001") != 0 || r.st.Reserved("6001") != 0 {
		t.Fatalf("xDRs %+v; balance %d, reserved %d", xs, balance(r.st, "6001"), r.st.Reserved("6001"))
	}
	t.Logf("cut after %s of call time by the adopter; charged %s for %d s; %v chunks extended by the adopter", elapsed,
		billing.FormatMoney(xs[0].Amount), xs[0].Charges[0].Seconds, testkit.Metric(reg, "troika_sip_call_extensions_total", "result", "extended"))
}

// While a voter may run a build without quota reservations
// (QuotaThroughLog false: a rolling upgrade), a call reserves its whole
// length at setup as that build does, in a command it applies; once
// every voter has them, calls reserve a chunk at a time.
func TestQuotaWaitsForEveryVoter(t *testing.T) {
	t.Parallel()
	const bal = 100_000_000 // 100 s at 1.00 a second
	st := callState(t, bal)
	var everyVoter atomic.Bool
	ts, srv, callee := serveCallee(t, st, "2002", func(c *Config) {
		c.Calls.ReserveChunkSeconds = 60
		c.QuotaThroughLog = everyVoter.Load
	})
	caller := newEndpoint(t, "127.0.0.1")
	call := func() *testCall {
		c := invite(t, caller, srv, "2001", "pw2001", "2002", testSDP)
		answer(t, c, callee, "bob")
		c.ack()
		return c
	}

	c := call()
	if _, chunked := st.CallQuota(c.callID); chunked || st.Reserved("2001") != bal {
		t.Fatalf("during the upgrade: reserved %d (want the whole balance), chunked %v", st.Reserved("2001"), chunked)
	}
	c.bye(t)
	answerBye(t, callee)
	waitNoCalls(t, ts)

	everyVoter.Store(true)
	c = call()
	if q, chunked := st.CallQuota(c.callID); !chunked || q.Chunk != 60 || st.Reserved("2001") != 60_000_000 {
		t.Fatalf("after the upgrade: reserved %d (want a minute), quota %+v %v", st.Reserved("2001"), q, chunked)
	}
	c.bye(t)
	answerBye(t, callee)
	waitNoCalls(t, ts)
}
