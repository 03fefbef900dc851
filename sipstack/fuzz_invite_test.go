package sipstack

import (
	"crypto/md5"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/auth"
	"github.com/troika-sip/troika/sipstack/transport"
)

// FuzzInvite feeds arbitrary bytes through the Server's SIP parser into
// the B2BUA's handlers (INVITE, and BYE, UPDATE, INFO, ACK within
// dialogs), as a UDP datagram from 10.0.0.1 would arrive, with a real fsm
// behind. Nothing may panic, every response must serialize to a message
// sipgo parses back, and no call may stay open.
//
// Seeds (testdata/fuzz/FuzzInvite) may hold @NONCE@ and @MD5@, replaced by
// a valid nonce and the digest response of caller 1001 (password pw1001,
// method INVITE, uri sip:1002@127.0.0.1, nc 00000001, cnonce c0ffee), so
// the fuzzer mutates authenticated INVITEs: they pass StartCall and reach
// the callee's binding, whose socket is not open here (480), after the
// body, Contact and header checks.
func FuzzInvite(f *testing.F) {
	run, s := inviteFuzzHarness(f)
	f.Add([]byte("INVITE sip:1002@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nFrom: <sip:1001@h>;tag=a\r\nTo: <sip:1002@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@10.0.0.1>\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res := run(data)
		if s.calls.Dialogs() != 0 || s.ActiveCalls() != 0 || len(s.state.Calls()) != 0 {
			t.Fatalf("call left open by %q", data)
		}
		checkFuzzResponse(t, res, data)
	})
}

// inviteFuzzHarness returns a function passing one message to a Server's
// B2BUA handlers and returning the final response (nil when dropped or
// unanswered).
func inviteFuzzHarness(tb testing.TB) (func([]byte) *sip.Response, *Server) {
	st := newTestState(tb, false)
	testkit.MustApply(tb, st, &fsm.Topup{Account: "1001", Amount: 1_000_000_000, Key: "fuzz", Now: 1})
	bind(tb, st, "1002", "sip:1002@10.0.0.2:5060", "10.0.0.2:5060", "udp:127.0.0.1:5060")
	now := time.Now()
	ft := newFuzzTarget(tb, st, RegistrarConfig{Realm: "troika", AuthFailuresPerMinute: -1}, now,
		func(nonce, uri string) []string {
			return []string{"@NONCE@", nonce,
				"@MD5@", auth.Response(md5.New, "1001", "troika", "pw1001", "INVITE", uri, nonce, "00000001", "c0ffee", "auth")}
		})
	b := ft.s.calls
	return func(data []byte) *sip.Response {
		return ft.deliver(tb, data, func(sock *transport.Socket, req *sip.Request, tx sip.ServerTransaction) bool {
			switch req.Method {
			case sip.INVITE:
				b.HandleInvite(sock, req, tx)
			case sip.BYE, sip.UPDATE, sip.INFO:
				b.HandleInDialog(sock, req, tx)
			case sip.ACK:
				b.HandleAck(sock, req)
				return false
			default:
				return false
			}
			return true
		})
	}, ft.s
}

// The seed corpus reaches the code it is meant to.
func TestFuzzInviteSeeds(t *testing.T) {
	want := map[string]int{
		"invite_noauth": 407, "invite_md5": 480, "invite_late_offer": 480, "invite_bad_sdp": 488,
		"invite_binary_body": 488, "invite_huge_header": 407, "invite_bad_content_type": 415,
		"invite_unknown_number": 404, "invite_no_contact": 400, "reinvite_unknown": 481, "bye_unknown": 481,
		"invite_require": 420, "invite_max_forwards_0": 483, "invite_tel_uri": 416,
		"invite_wildcard_to": 0, // a To that would serialize as <sip:*>: dropped, never echoed
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzInvite")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Errorf("%d seeds, %d expectations", len(entries), len(want))
	}
	run, _ := inviteFuzzHarness(t)
	for name, code := range want {
		res := run(fuzzSeed(t, filepath.Join(dir, name)))
		switch {
		case code == 0 && res != nil:
			t.Errorf("%s: answered %d %s, want it dropped", name, res.StatusCode, res.Reason)
		case code != 0 && (res == nil || res.StatusCode != code):
			t.Errorf("%s: got %v, want %d", name, res, code)
		}
	}
}
