package sipstack

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// FuzzRFC4475 feeds arbitrary bytes through everything a UDP datagram
// meets on its way in: the screen (Server.screen, which may answer it
// itself), sipgo's parser, and the handler of its method, as routed by
// Server.route. Nothing may panic, every answer must parse back with its
// status and carry no control character, and nothing may be written to
// the state: no input authenticates.
//
// The seeds are the messages of RFC 4475 (testdata/rfc4475), and whatever
// the fuzzer has kept in testdata/fuzz/FuzzRFC4475.
func FuzzRFC4475(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "rfc4475", "*.sip"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no RFC 4475 corpus: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	run, store := rfc4475FuzzHarness(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, res := range run(data) {
			checkFuzzResponse(t, res, data)
		}
		if w := store.Writes.Load(); w != 0 {
			t.Fatalf("%d writes after %q", w, data)
		}
	})
}

// rfc4475FuzzHarness returns a function passing one datagram from
// 10.0.0.1:5060 through a Server's screen and handlers, and returning the
// answers: the screen's, then the handler's.
func rfc4475FuzzHarness(tb testing.TB) (func([]byte) []*sip.Response, *testkit.Store) {
	ft := newFuzzTarget(tb, newTestState(tb, false), RegistrarConfig{Realm: "troika", AuthFailuresPerMinute: -1}, time.Now(), nil)
	s, b := ft.s, ft.s.calls
	from := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5060}
	return func(data []byte) []*sip.Response {
		var out []*sip.Response
		sent := &capturedConn{}
		pass, reply, to := s.screen(ft.sock, sent, slices.Clone(data), from)
		for len(s.regs.queue) > 0 { // a REGISTER taken by the workers: answered here
			s.regs.answer(<-s.regs.queue)
		}
		for _, d := range sent.take() {
			m, err := sip.ParseMessage(d)
			if err != nil {
				tb.Fatalf("the REGISTER workers' answer does not parse: %v\n%q\nrequest %q", err, d, data)
			}
			out = append(out, m.(*sip.Response))
		}
		if reply != nil {
			if to == nil {
				tb.Fatalf("an answer without a destination to %q", data)
			}
			m, err := sip.ParseMessage(reply)
			if err != nil {
				tb.Fatalf("the screen's answer does not parse: %v\n%q\nrequest %q", err, reply, data)
			}
			res, ok := m.(*sip.Response)
			if !ok {
				tb.Fatalf("the screen sent a request: %q", reply)
			}
			out = append(out, res)
		}
		if pass == nil {
			return out
		}
		res := ft.deliver(tb, pass, func(sock *transport.Socket, req *sip.Request, tx sip.ServerTransaction) bool {
			switch req.Method {
			case sip.REGISTER:
				s.handleRegister(sock, req, tx)
			case sip.OPTIONS:
				s.handleOptions(sock, req, tx)
			case sip.INVITE:
				b.HandleInvite(sock, req, tx)
			case sip.BYE, sip.UPDATE, sip.INFO:
				b.HandleInDialog(sock, req, tx)
			case sip.CANCEL:
				b.HandleCancel(sock, req, tx)
			case sip.ACK:
				b.HandleAck(sock, req)
				return false
			default:
				// 405 and 501 (Server.route) copy the request's headers
				// like any answer.
				s.reply(tx, req, sipmsg.Reply{Code: sip.StatusNotImplemented, Reason: "Not Implemented"})
			}
			return true
		})
		if res != nil {
			out = append(out, res)
		}
		return out
	}, ft.s.store.(*testkit.Store)
}

// The corpus reaches the code it is meant to: the fuzz harness answers
// each message of RFC 4475 as TestRFC4475's server does over UDP.
func TestFuzzRFC4475Seeds(t *testing.T) {
	run, _ := rfc4475FuzzHarness(t)
	for _, c := range tortureCases {
		b, err := os.ReadFile(filepath.Join("testdata", "rfc4475", c.name+".sip"))
		if err != nil {
			t.Fatal(err)
		}
		got := run(b)
		want := c.udp.code
		switch {
		case want == 405 || want == 501:
			want = 501 // the harness answers every method it does not serve with 501
		}
		switch {
		case want == 0 && len(got) != 0:
			t.Errorf("%s: answered %d %s, want no answer", c.name, got[0].StatusCode, got[0].Reason)
		case want != 0 && (len(got) != 1 || got[0].StatusCode != want):
			t.Errorf("%s: got %v, want one %d", c.name, got, want)
		}
	}
}
