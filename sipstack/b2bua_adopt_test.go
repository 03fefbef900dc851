package sipstack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/b2bua"
)

// nodeOn runs a Server named node on ip:port (UDP), sharing st (the
// cluster's replicated state); stop ends it as a node stop would, leaving
// answered calls in the state.
func nodeOn(t *testing.T, st *fsm.State, clock *testkit.Clock, node, ip string, port int) (s *Server, stop func()) {
	t.Helper()
	return nodeWith(t, st, clock, node, ip, port, nil)
}

// nodeWith is nodeOn with alive as Config.NodeAlive.
func nodeWith(t *testing.T, st *fsm.State, clock *testkit.Clock, node, ip string, port int, alive func(string) bool) (s *Server, stop func()) {
	t.Helper()
	return runNode(t, st, Config{
		Addresses: []string{ip}, UDPPorts: []int{port}, Registrar: RegistrarConfig{Realm: "troika"},
		NodeID: node, Logger: slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}), nil)),
		Metrics: prometheus.NewRegistry(), NodeAlive: alive, Now: clock.Now, ClockJumps: clock.Jumps,
	})
}

// runNode runs a Server configured by cfg over st (the cluster's
// replicated state) until stop, or the end of the test.
func runNode(t *testing.T, st *fsm.State, cfg Config) (s *Server, stop func()) {
	t.Helper()
	node := cfg.NodeID
	s, err := New(cfg, st, testkit.NewStore(st))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("node %s: %v", node, err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node %s: %v", node, err)
		}
	}
	t.Cleanup(stop)
	return s, stop
}

// answeredCall places a call from 2001 to 2002 through server and
// returns it once both legs are up and the fsm has the answer.
func answeredCall(t *testing.T, st *fsm.State, server string, caller, callee *endpoint) (*testCall, string) {
	t.Helper()
	c := invite(t, caller, server, "2001", "pw2001", "2002", testSDP)
	req, _ := answer(t, c, callee, "bob")
	c.ack()
	callee.request("ACK")
	testkit.WaitFor(t, 5*time.Second, "the answer in the state", func() bool { fc, ok := st.Call(c.callID); return ok && fc.ConnectAt != 0 })
	return c, req.CallID().Value()
}

// orphan is an answered call whose node "a" has stopped: it stays in
// the shared state for another node on the same address to adopt.
type orphan struct {
	st             *fsm.State
	clock          *testkit.Clock // every node's
	ip             string
	port           int
	server         string
	caller, callee *endpoint
	call           *testCall
	calleeCallID   string
}

// orphanedCall answers a call from 2001 (balance in micro-units) to 2002
// through node "a", then stops a.
func orphanedCall(t *testing.T, balance int64) orphan {
	t.Helper()
	o := orphan{st: callState(t, balance), clock: &testkit.Clock{}, ip: testIP()}
	o.port = testkit.FreePort(t, o.ip)
	o.server = fmt.Sprintf("%s:%d", o.ip, o.port)
	_, stopA := nodeOn(t, o.st, o.clock, "a", o.ip, o.port)
	o.callee = newEndpoint(t, "127.0.0.1")
	bind(t, o.st, "2002", "sip:2002@"+o.callee.addr, o.callee.addr, "udp:"+o.server)
	o.caller = newEndpoint(t, "127.0.0.1")
	o.call, o.calleeCallID = answeredCall(t, o.st, o.server, o.caller, o.callee)
	stopA() // node a is gone; its call stays in the state
	if _, ok := o.st.Call(o.call.callID); !ok {
		t.Fatal("the stopping node ended its answered call")
	}
	return o
}

// A node stops with a call up; another node takes over its address (the
// virtual IP moved). The caller's BYE reaches the new node, which finds
// the call in the cluster state, answers the BYE, BYEs the callee from the
// same address, and ends the call with one correct xDR.
func TestAdoptOnInDialogRequest(t *testing.T) {
	t.Parallel()
	o := orphanedCall(t, 100_000_000)
	st, server, callee, c, calleeCallID := o.st, o.server, o.callee, o.call, o.calleeCallID
	before := balance(st, "2001")
	b, _ := nodeOn(t, st, o.clock, "b", o.ip, o.port)
	o.clock.Advance(1200 * time.Millisecond) // the call lasts a second

	c.bye(t)
	bye, from := callee.request("BYE")
	if from.String() != server || bye.CallID().Value() != calleeCallID {
		t.Errorf("callee BYE from %s for %s, want from %s for %s", from, bye.CallID().Value(), server, calleeCallID)
	}
	callee.reply(bye, from, 200, "OK", "", "")
	x := xdrFor(t, st, c.callID)
	if x.DisconnectedBy != b2bua.ByCaller || x.Duration < 1 || x.Node != "b" { // the adopter ends it
		t.Errorf("xDR %+v", x)
	}
	if x.Amount <= 0 || balance(st, "2001") != before-x.Amount || st.Reserved("2001") != 0 || st.Counts().XDRs != 1 {
		t.Errorf("charged %d; balance %d -> %d, reserved %d, %d xDRs", x.Amount, before, balance(st, "2001"), st.Reserved("2001"), st.Counts().XDRs)
	}
	testkit.WaitFor(t, 5*time.Second, "the adopted call to be forgotten", func() bool { return b.calls.Dialogs() == 0 && b.ActiveCalls() == 0 })
}

// AdoptOrphans re-arms the maximum duration of a prepaid call whose node
// stopped: the new node cuts it when its money runs out, BYEing both legs.
func TestAdoptOrphansCutsPrepaidCalls(t *testing.T) {
	t.Parallel()
	o := orphanedCall(t, 3_000_000) // 3 s at 1.00/s
	st, caller, callee, c := o.st, o.caller, o.callee, o.call

	b, _ := nodeOn(t, st, o.clock, "b", o.ip, o.port)
	if n := b.AdoptOrphans(); n != 1 {
		t.Fatalf("adopted %d calls, want 1", n)
	}
	if n := b.AdoptOrphans(); n != 0 {
		t.Fatalf("adopted the same call again (%d)", n)
	}
	answerBye(t, callee)
	byeCaller, byeFrom := caller.request("BYE")
	caller.reply(byeCaller, byeFrom, 200, "OK", "", "")
	x := xdrFor(t, st, c.callID)
	if x.DisconnectedBy != b2bua.ByTimer || x.Duration < 2 || x.Duration > 4 {
		t.Errorf("xDR %+v: want cut by the timer at 3 s", x)
	}
	if balance(st, "2001") < 0 || st.Reserved("2001") != 0 || x.Amount != 3_000_000-balance(st, "2001") {
		t.Errorf("balance %d, reserved %d, charged %d", balance(st, "2001"), st.Reserved("2001"), x.Amount)
	}
}

// The node of a call is up (gossip says so) but its process no longer
// answers here: another node must not run the call beside it. An INFO
// gets 503 (the phone may retry) and the call stays with its node in the
// state. A BYE is taken all the same, since phones do not retry a BYE:
// the call is adopted and ends with one xDR, not at its maximum duration.
func TestNoAdoptionWhileTheCallsNodeIsUp(t *testing.T) {
	t.Parallel()
	o := orphanedCall(t, 100_000_000)
	st, callee, c := o.st, o.callee, o.call
	b, _ := nodeWith(t, st, o.clock, "b", o.ip, o.port, func(n string) bool { return n == "a" })
	if n := b.AdoptOrphans(); n != 0 {
		t.Fatalf("adopted %d calls of a node that is up", n)
	}
	c.cseq++
	c.e.send(c.server, c.inDialog("INFO", c.cseq, "z9hG4bK"+sip.GenerateTagN(10), ""))
	p := c.e.wait("503 to INFO", 5*time.Second, isResponse("INFO", true))
	if r := p.msg.(*sip.Response); r.StatusCode != 503 {
		t.Fatalf("INFO while the call's node is up: %d %s, want 503", r.StatusCode, r.Reason)
	}
	if fc, _ := st.Call(c.callID); fc.Node != "a" || b.ActiveCalls() != 0 {
		t.Fatalf("call on %q with %d calls on b: want it left to a", fc.Node, b.ActiveCalls())
	}

	c.bye(t)
	answerBye(t, callee)
	x := xdrFor(t, st, c.callID)
	if x.Node != "b" || x.DisconnectedBy != b2bua.ByCaller || st.Counts().XDRs != 1 {
		t.Errorf("xDR %+v, %d xDRs: want one, ended by the caller on b", x, st.Counts().XDRs)
	}
}

// A node runs an answered call that another node ends (its BYE reached
// an adopter) or carries on (AdoptCall): ForgetMoved drops it here
// without a word to the legs or the state, and frees its slot; a call
// still this node's stays.
func TestForgetMoved(t *testing.T) {
	t.Parallel()
	st := callState(t, 0)
	postpaid, limit := fsm.Postpaid, int64(100_000_000_000) // three 4 h calls at once: a prepaid call holds the whole balance
	testkit.MustApply(t, st, &fsm.UpdateAccount{ID: "2001", Patch: fsm.AccountPatch{Billing: &postpaid, CreditLimit: &limit}})
	ip := testIP()
	port := testkit.FreePort(t, ip)
	server := fmt.Sprintf("%s:%d", ip, port)
	a, _ := nodeOn(t, st, &testkit.Clock{}, "a", ip, port)
	callee := newEndpoint(t, "127.0.0.1")
	bind(t, st, "2002", "sip:2002@"+callee.addr, callee.addr, "udp:"+server)
	caller := newEndpoint(t, "127.0.0.1")
	ended, _ := answeredCall(t, st, server, caller, callee)
	moved, _ := answeredCall(t, st, server, caller, callee)
	kept, _ := answeredCall(t, st, server, caller, callee)
	if n := a.ForgetMoved(); n != 0 || a.ActiveCalls() != 3 {
		t.Fatalf("dropped %d of its own calls; %d active", n, a.ActiveCalls())
	}

	// Another node's writes: one call ended, one adopted.
	testkit.MustApply(t, st, &fsm.EndCall{ID: ended.callID, DisconnectAt: time.Now().UnixMilli(), Cause: 200, DisconnectedBy: b2bua.ByCaller})
	testkit.MustApply(t, st, &fsm.AdoptCall{ID: moved.callID, From: "a", To: "b"})
	if n := a.ForgetMoved(); n != 2 {
		t.Fatalf("dropped %d calls, want 2", n)
	}
	if a.ActiveCalls() != 1 {
		t.Fatalf("%d calls active, want the one still a's", a.ActiveCalls())
	}
	if !a.calls.Runs(kept.callID) {
		t.Fatal("the call still a's was dropped")
	}
	for _, e := range []*endpoint{caller, callee} {
		if p, ok := e.maybe(300*time.Millisecond, isRequest("BYE")); ok {
			t.Fatalf("%s got a BYE from %s for a call dropped there", e.addr, p.from)
		}
	}
	if fc, ok := st.Call(moved.callID); !ok || fc.Node != "b" {
		t.Fatalf("the moved call in the state: %+v %v", fc, ok)
	}
}
