package b2bua

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// When every fork fails the caller gets the best answer (RFC 3261 §16.7):
// a 6xx wins, then busy, other 4xx, unavailable, timeout, cancelled, 5xx.
func TestBestFailure(t *testing.T) {
	cases := []struct {
		codes []int
		want  int
	}{
		{[]int{480, 486}, 486},
		{[]int{486, 603, 404}, 603},
		{[]int{408, 480}, 480},
		{[]int{500, 408}, 408},
		{[]int{487, 500}, 487},
		{[]int{404, 480, 408}, 404},
		{[]int{500}, 500},
	}
	for _, c := range cases {
		var best *failure
		for _, code := range c.codes {
			best = better(best, failure{code: code})
		}
		if best.code != c.want {
			t.Errorf("%v: chose %d, want %d", c.codes, best.code, c.want)
		}
	}
}

// Callee answers the caller must not get as they are: redirections (the
// caller would go around billing), challenges, 503.
func TestCalleeFailureMapping(t *testing.T) {
	for code, want := range map[int]int{302: 480, 401: 480, 407: 480, 503: 500, 486: 486, 603: 603, 404: 404} {
		res := sip.NewResponse(code, "whatever")
		if got := calleeFailure(res); got.code != want {
			t.Errorf("callee %d: caller gets %d, want %d", code, got.code, want)
		}
	}
	res := sip.NewResponse(486, "Busy\x00Here")
	if got := calleeFailure(res); got.reason != "Busy Here" {
		t.Errorf("unsafe reason phrase passed on: %q", got.reason)
	}
}

func TestRefusalMapping(t *testing.T) {
	cases := []struct {
		code   fsm.ErrCode
		field  string
		status int
		reason string
	}{
		{fsm.CodeInsufficientFunds, "charges[0].account", 402, "Payment Required"},
		{fsm.CodeNoRate, "charges[0].number", 403, "Destination Not Allowed"},
		{fsm.CodeBlocked, "charges[1].account", 403, "Forbidden"},
		{fsm.CodeTooManyCalls, "charges[0].account", 403, "Too Many Calls"},
		{fsm.CodeTooManyCalls, "charges[1].account", 486, "Busy Here"},
		{fsm.CodeNotFound, "charges[1].account", 404, "Not Found"},
		{fsm.CodeInvalid, "id", 500, "Server Internal Error"},
	}
	for _, c := range cases {
		r := refusal(&fsm.Error{Code: c.code, Field: c.field})
		if r.Code != c.status || r.Reason != c.reason {
			t.Errorf("%s %s: %d %s, want %d %s", c.code, c.field, r.Code, r.Reason, c.status, c.reason)
		}
	}
}

func TestCheckSDP(t *testing.T) {
	good := []string{testkit.CallerSDP, testkit.CalleeSDP, "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\nm=audio 1 RTP/AVP 0\n"}
	for _, s := range good {
		if err := checkSDP([]byte(s)); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	bad := []string{"", "hello", "v=1\r\nm=audio 1 RTP/AVP 0\r\n", "v=0\r\ns=-\r\n", "v=0\r\nm=audio\x00 1\r\n",
		"v=0\r\nthis is no sdp\r\nm=audio 1 RTP/AVP 0\r\n", "v=0\r\nM=audio 1 RTP/AVP 0\r\n"}
	for _, s := range bad {
		if err := checkSDP([]byte(s)); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if err := checkSDP([]byte("v=0\r\nm=audio 1 RTP/AVP 0\r\n" + strings.Repeat("a=x\r\n", 4000))); err != errBodyTooLarge {
		t.Errorf("oversized SDP: %v", err)
	}
}

// Only listed headers cross legs, and only with safe, bounded values.
func TestRelayHeaders(t *testing.T) {
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", Host: "h"})
	for _, h := range []sip.Header{
		sip.NewHeader("Subject", "fine"),
		sip.NewHeader("Subject", "bad\nX-Injected: 1"),
		sip.NewHeader("Priority", "urgent\x00"),
		sip.NewHeader("Reason", strings.Repeat("r", 300)),
		sip.NewHeader("Alert-Info", "<http://evil/ring>"),
		sip.NewHeader("P-Asserted-Identity", "<sip:boss@h>"),
		sip.NewHeader("Accept", "application/sdp"),
	} {
		req.AppendHeader(h)
	}
	var got []string
	for _, h := range relayHeaders(req) {
		got = append(got, h.Name()+": "+h.Value())
	}
	if strings.Join(got, "|") != "Subject: fine|Accept: application/sdp" {
		t.Errorf("relayed %q", got)
	}
}

func TestContactRequestURI(t *testing.T) {
	cases := []struct{ contact, want string }{
		{"sip:1001@192.0.2.7:5062;transport=udp", "sip:1001@192.0.2.7:5062;transport=udp"},
		{"sip:user@192.0.2.7?Route=%3Csip:sip.example.com%3E", "sip:user@192.0.2.7"},
		{"sip:user:secret@192.0.2.7", "sip:user@192.0.2.7"},
		{"sip:", ""},
		{"not a uri", ""},
	}
	for _, c := range cases {
		u, err := contactRequestURI(c.contact)
		got := ""
		if err == nil {
			got = u.String()
		}
		if got != c.want {
			t.Errorf("%q: %q (%v), want %q", c.contact, got, err, c.want)
		}
	}
}

// A call asks for its next chunk a quarter of a chunk before its paid
// time runs out, at least a second and at most 30 s before.
func TestExtendLead(t *testing.T) {
	for chunk, want := range map[int]time.Duration{2: time.Second, 10: 2500 * time.Millisecond, 60: 15 * time.Second,
		300: 30 * time.Second, 3600: 30 * time.Second} {
		if got := extendLead(chunk); got != want {
			t.Errorf("chunk %d s: asks %s before, want %s", chunk, got, want)
		}
	}
}
