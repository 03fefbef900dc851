//go:build linux

package chaos

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
)

// callPause is how long the SIPp caller holds the call after its ACK
// (uac_auth.xml's pause, -d).
const callPause = 10 * time.Second

// scenario returns the path of one of sipstack's SIPp scenarios.
func scenario(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "sipstack", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A call in progress whose processing node is SIGKILLed: a SIPp caller
// (digest auth, through the virtual IP) calls a SIPp callee registered
// through the virtual IP; once the call is answered, the node running it
// (the virtual IP's holder: it serves that socket) is killed. The virtual
// IP moves; the caller's BYE after its pause reaches the new holder, which
// adopts the call from the replicated state: the caller's BYE gets its 200,
// the callee gets a BYE, and the call is billed once: one xDR, disconnected
// by the caller, lasting the pause, and the balances drop by the xDR's
// amount with nothing left reserved.
func TestCallSurvivesNodeKill(t *testing.T) {
	callSurvives(t, "kill", func(c *Cluster, victim *Node) {
		if err := victim.Kill(); err != nil {
			t.Fatal(err)
		}
	})
}

// The same call, but its node is drained (a planned stop) instead: the
// drain hands the virtual IP over, does not wait for the answered call
// (it stays in the replicated state), and the node exits 0; the new
// holder adopts the call once the drained node has left, and the caller's
// BYE ends and bills it exactly once.
func TestCallSurvivesDrain(t *testing.T) {
	callSurvives(t, "drain", func(c *Cluster, victim *Node) {
		res, err := victim.Drain(context.Background(), admin.DrainRequest{Timeout: "30s"})
		if err != nil {
			t.Fatalf("drain of %s with a call up: %v\n  %s", victim.Name, err, strings.Join(res.Lines, "\n  "))
		}
		if !slices.ContainsFunc(res.Lines, func(l string) bool { return strings.Contains(l, "1 answered call(s) of this node stay") }) {
			t.Errorf("the drain did not report the answered call left for adoption:\n  %s", strings.Join(res.Lines, "\n  "))
		}
		t.Logf("drain of %s with the call up took %.2f s (process exited at %.2f s):\n  %s\n  drained: %s", victim.Name,
			res.Took.Seconds(), res.Exited.Seconds(), strings.Join(res.Lines, "\n  "), res.Summary)
	})
}

// callSurvives places the call, applies fault to the node running it once
// it is answered, and checks the caller's BYE, the callee's, the xDR, the
// balances and the reservations.
func callSurvives(t *testing.T, what string, fault func(c *Cluster, victim *Node)) {
	sipptest.Need(t)
	c := newCluster(t, vipOptions())
	vip := vipAddr(c.Nodes[0].Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	api := c.Nodes[0].Admin()
	const caller, callee = "c1001", "c1002"
	for _, tr := range []admin.Tariff{
		{ID: "out", Currency: "USD", Rates: []admin.Rate{{Prefix: "", PerMinute: "0.60", FirstInterval: 1, NextInterval: 1}}},
		{ID: "in", Currency: "USD", Rates: []admin.Rate{{Prefix: "", PerMinute: "0.06", ConnectFee: "0.01", FirstInterval: 1, NextInterval: 1}}},
	} {
		if _, err := api.PutTariff(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []admin.Account{
		{ID: caller, Password: sipptest.APIPassword(caller), Billing: "prepaid", Balance: "100.00", TariffOut: "out"},
		{ID: callee, Password: sipptest.APIPassword(callee), Billing: "prepaid", Balance: "10.00", TariffIn: "in"},
	} {
		if _, err := api.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.Nodes {
		if err := c.WaitCaughtUp(n, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	holder, _ := soleHolder(t, c, vip, 20*time.Second)
	t.Logf("%s holds the virtual IP %s", holder.Name, vip)
	target := sipAddr(vip, SIPPort)

	// The callee registers through the virtual IP from the port its SIPp
	// UAS then answers on.
	uasPort := c.localPort()
	st, err := sipptest.Exec(ctx, t.TempDir(), sipptest.Options{Target: target, Scenario: "reg_auth.xml",
		Inject: sipptest.APIUsers(callee), LocalIP: c.Client.Addr.String(), LocalPort: uasPort, Netns: c.Client.NS, Timeout: 20 * time.Second})
	if err != nil || st.OK != 1 {
		t.Fatalf("callee REGISTER through %s: %v, %d ok\n%s", target, err, st.OK, st.Errors)
	}
	uas, err := c.Client.StartSIPp("callee", "-sf", scenario(t, "uas.xml"), "-i", c.Client.Addr.String(), "-p", strconv.Itoa(uasPort),
		"-m", "1", "-timeout", "70s")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client.WaitListening(c.Client.Addr, uasPort, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	before := map[string]int64{}
	for _, id := range []string{caller, callee} {
		a, err := api.Account(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		before[id] = testkit.Money(t, a.Balance)
	}

	uac, err := c.Client.StartSIPp("caller", target, "-sf", scenario(t, "uac_auth.xml"), "-s", callee, "-au", caller, "-ap", sipptest.APIPassword(caller),
		"-i", c.Client.Addr.String(), "-p", strconv.Itoa(c.localPort()), "-m", "1", "-d", strconv.Itoa(int(callPause/time.Millisecond)),
		"-timeout", "60s", "-timeout_error", "-default_behaviors", "all,-bye")
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the answer, as the cluster state shows it.
	var call admin.Call
	for deadline := time.Now().Add(15 * time.Second); ; {
		calls, err := api.Calls(ctx, caller)
		if err == nil && len(calls) == 1 && calls[0].ConnectAt != nil {
			call = calls[0]
			break
		}
		if time.Now().After(deadline) {
			res := uac.Wait(time.Second)
			t.Fatalf("no answered call within 15 s (calls %+v, %v)\ncaller: %s\n%s", calls, err, res.Output, tailString(res.Messages, 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	answered := time.Now()
	c.Mark("call answered")
	victim := c.Node(call.Node)
	if victim == nil {
		t.Fatalf("the call runs on %q, not a node of this cluster", call.Node)
	}
	var ingress []string
	for _, l := range call.Legs {
		ingress = append(ingress, l.Role+"="+l.Ingress)
	}
	t.Logf("call %s answered, running on %s (legs %s); the virtual IP's holder is %s", call.ID, victim.Name, strings.Join(ingress, " "), holder.Name)
	if err := uas.WaitReceived("ACK sip:", 5*time.Second); err != nil { // the caller's ACK is in
		t.Fatal(err)
	}
	faultAt := time.Now()
	fault(c, victim)
	survivors := c.Others(victim)
	if victim == holder {
		next, at := soleHolder(t, c, vip, 15*time.Second, victim)
		t.Logf("%s of %s began %.1f s after the answer; %s holds %s %.3f s after it began", what, victim.Name, faultAt.Sub(answered).Seconds(),
			next.Name, vip, at.Sub(faultAt).Seconds())
	}

	res := uac.Wait(callPause + 30*time.Second)
	byeAt := time.Now()
	if res.Err != nil || res.OK != 1 || res.Failed != 0 {
		t.Fatalf("caller: %d ok, %d failed (%v), want its call (and the 200 to its BYE) ok\n%s\nerrors: %s\nmessages: %s",
			res.OK, res.Failed, res.Err, res.Output, res.Errors, tailString(res.Messages, 4000))
	}
	ures := uas.Wait(10 * time.Second)
	if ures.Err != nil || ures.OK != 1 || !strings.Contains(ures.Messages, "BYE sip:") {
		t.Fatalf("callee: %d ok, %d failed (%v), want the BYE received and answered\n%s\nmessages: %s",
			ures.OK, ures.Failed, ures.Err, ures.Output, tailString(ures.Messages, 4000))
	}
	t.Logf("caller's call ok (%d retransmissions); callee got the BYE; caller ended %.1f s after the %s", res.Retrans, byeAt.Sub(faultAt).Seconds(), what)

	// One xDR, the same on every survivor.
	var x admin.XDR
	for _, n := range survivors {
		var xs []admin.XDR
		for deadline := time.Now().Add(10 * time.Second); ; {
			xs, err = n.Admin().XDRs(ctx, admin.XDRQuery{Account: caller})
			if err == nil && len(xs) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no xDR for the call 10 s after the BYE (%v)", n.Name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(xs) != 1 {
			t.Fatalf("%s: %d xDRs, want exactly 1: %+v", n.Name, len(xs), xs)
		}
		if x.CallID != "" && (xs[0].ID != x.ID || xs[0].Amount != x.Amount) {
			t.Errorf("xDRs differ between nodes: %+v vs %+v", x, xs[0])
		}
		x = xs[0]
	}
	lo, hi := int(callPause/time.Second)-3, int(callPause/time.Second)+3
	if x.DisconnectedBy != "caller" || x.Cause != 200 || x.ConnectAt == nil || x.Duration < lo || x.Duration > hi {
		t.Errorf("xDR: disconnected by %q, cause %d, duration %d s: want by caller, 200, %d-%d s (%+v)", x.DisconnectedBy, x.Cause, x.Duration, lo, hi, x)
	}
	var sum int64
	drop := map[string]int64{}
	for _, ch := range x.Charges {
		sum += testkit.Money(t, ch.Amount)
		drop[ch.Account] += testkit.Money(t, ch.Amount)
	}
	if sum != testkit.Money(t, x.Amount) || sum <= 0 {
		t.Errorf("xDR amount %s, charges sum to %s", x.Amount, billing.FormatMoney(sum))
	}
	// Balances, calls and reservations on every survivor.
	for _, n := range survivors {
		var total int64
		for _, id := range []string{caller, callee} {
			a, err := n.Admin().Account(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			d := before[id] - testkit.Money(t, a.Balance)
			total += d
			if d != drop[id] {
				t.Errorf("%s: %s's balance dropped by %s, its xDR charge is %s", n.Name, id, billing.FormatMoney(d), billing.FormatMoney(drop[id]))
			}
			if r := testkit.Money(t, a.Reserved); r != 0 {
				t.Errorf("%s: %s still has %s reserved", n.Name, id, a.Reserved)
			}
		}
		if total != testkit.Money(t, x.Amount) {
			t.Errorf("%s: balances dropped by %s in all, the xDR says %s", n.Name, billing.FormatMoney(total), x.Amount)
		}
		for deadline := time.Now().Add(5 * time.Second); ; {
			calls, err := n.Admin().Calls(ctx, "")
			if err == nil && len(calls) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: calls still in progress after the BYE: %+v (%v)", n.Name, calls, err)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("xDR %d: %s -> %s, %d s (pause %s), disconnected by %s, ended on %s, amount %s (charges %s); balances dropped by exactly that, nothing reserved",
		x.ID, x.Account, x.CLD, x.Duration, callPause, x.DisconnectedBy, x.Node, x.Amount, chargesText(x.Charges))
	if d := c.DoubleHolders(); len(d) != 0 {
		t.Errorf("double holders: %v", d)
	}
}

func chargesText(cs []admin.XDRCharge) string {
	var out []string
	for _, ch := range cs {
		out = append(out, fmt.Sprintf("%s %s %s for %d s", ch.Account, ch.Role, ch.Amount, ch.Seconds))
	}
	return strings.Join(out, ", ")
}
