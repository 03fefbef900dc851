package sipstack

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// A draining node answers a new INVITE 503 with Retry-After, before
// authentication, and starts no call; back in service it challenges again.
func TestDrainRefusesNewCalls(t *testing.T) {
	t.Parallel()
	st := callState(t, 100_000_000)
	ts := startServer(t, st, nil)
	server := ts.addr(t, "udp", ts.ip)
	caller := newEndpoint(t, "127.0.0.1")

	ts.Drain(true)
	if !ts.Draining() {
		t.Fatal("Draining() is false after Drain(true)")
	}
	c := &testCall{e: caller, server: server, ruri: "sip:2002@" + server, user: "2001", callID: sip.GenerateTagN(12) + "@test",
		fromTag: sip.GenerateTagN(8), sdp: testSDP, cseq: 1, branch: "z9hG4bK" + sip.GenerateTagN(10)}
	caller.send(server, c.inviteText(ts.ip, ""))
	res := c.final(5*time.Second, nil)
	if res.StatusCode != 503 || header(res, "Retry-After") == "" {
		t.Fatalf("INVITE to a draining node: %d %s (Retry-After %q), want 503 with Retry-After", res.StatusCode, res.Reason, header(res, "Retry-After"))
	}
	if n := len(st.Calls()); n != 0 || ts.ActiveCalls() != 0 {
		t.Fatalf("%d calls in the state, %d active after a refused INVITE", n, ts.ActiveCalls())
	}

	ts.Drain(false)
	c.cseq++
	c.branch = "z9hG4bK" + sip.GenerateTagN(10)
	caller.send(server, c.inviteText(ts.ip, ""))
	if res := c.final(5*time.Second, nil); res.StatusCode != 407 {
		t.Fatalf("INVITE after Drain(false): %d %s, want the 407 challenge", res.StatusCode, res.Reason)
	}
}
