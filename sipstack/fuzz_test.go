package sipstack

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/auth"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// recordTx is a server transaction for req that keeps what is sent on it
// (sipgo's siptest recorder); nil when sipgo would make none (it drops
// such a request before any handler).
func recordTx(req *sip.Request) *siptest.ServerTxRecorder {
	if _, err := sip.ServerTxKeyMake(req); err != nil {
		return nil
	}
	return siptest.NewServerTxRecorder(req)
}

// finalResponse is the last response sent on tx, or nil.
func finalResponse(tx *siptest.ServerTxRecorder) *sip.Response {
	rs := tx.Result()
	if len(rs) == 0 {
		return nil
	}
	return rs[len(rs)-1]
}

// FuzzRegister feeds arbitrary bytes through the Server's SIP parser into
// the REGISTER and OPTIONS handlers (as a UDP datagram from 10.0.0.1 would
// arrive), with a real fsm behind. Nothing may panic, and every response
// must serialize to a message sipgo parses back with the same status.
//
// Seeds (testdata/fuzz/FuzzRegister) may hold @NONCE@, @MD5@ and
// @SHA256@, replaced by a valid nonce and the digest responses of user 1001
// (password pw1001, uri sip:127.0.0.1, nc 00000001, cnonce c0ffee), so the
// fuzzer mutates requests that pass authentication and reaches the
// Contact, Expires and Path handling.
func FuzzRegister(f *testing.F) {
	run := fuzzHarness(f)
	f.Add([]byte("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nFrom: <sip:1001@h>;tag=a\r\nTo: <sip:1001@h>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContact: *\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFuzzResponse(t, run(data), data)
	})
}

// checkFuzzResponse fails the test when the answer to a fuzzed request
// (nil: dropped) does not survive a parse round trip or carries a control
// character in a header.
func checkFuzzResponse(t *testing.T, res *sip.Response, data []byte) {
	t.Helper()
	if res == nil {
		return
	}
	out := res.String()
	back, err := sip.ParseMessage([]byte(out))
	if err != nil {
		t.Fatalf("response does not parse: %v\n%q\nrequest %q", err, out, data)
	}
	if r, ok := back.(*sip.Response); !ok || r.StatusCode != res.StatusCode || r.Reason != res.Reason {
		t.Fatalf("response changed in a round trip: %q", out)
	}
	for _, h := range res.Headers() {
		if !sipmsg.SafeHeaderValue(h.Value()) {
			t.Fatalf("control character in response header %s: %q", h.Name(), h.Value())
		}
	}
}

// fuzzHarness returns a function passing one message to a Server's
// handlers and returning the response (nil when dropped or not REGISTER
// or OPTIONS).
func fuzzHarness(tb testing.TB) func([]byte) *sip.Response {
	now := time.UnixMilli(1_700_000_000_000)
	ft := newFuzzTarget(tb, newTestState(tb, false), RegistrarConfig{Realm: "troika", MaxContacts: 5, AuthFailuresPerMinute: -1, Algorithms: []string{"SHA-256", "MD5"}}, now,
		func(nonce, uri string) []string {
			return []string{"@NONCE@", nonce,
				"@MD5@", auth.Response(md5.New, "1001", "troika", "pw1001", "REGISTER", "sip:127.0.0.1", nonce, "00000001", "c0ffee", "auth"),
				"@SHA256@", auth.Response(sha256.New, "1001", "troika", "pw1001", "REGISTER", "sip:127.0.0.1", nonce, "00000001", "c0ffee", "auth")}
		})
	return func(data []byte) *sip.Response {
		return ft.deliver(tb, data, func(sock *transport.Socket, req *sip.Request, tx sip.ServerTransaction) bool {
			switch req.Method {
			case sip.REGISTER:
				ft.s.handleRegister(sock, req, tx)
			case sip.OPTIONS:
				ft.s.handleOptions(sock, req, tx)
			default:
				return false
			}
			return true
		})
	}
}

// fuzzTarget is a Server that is never run, fed one message at a time as
// a UDP datagram from 10.0.0.1 would arrive on 127.0.0.1:5060.
type fuzzTarget struct {
	s    *Server
	sock *transport.Socket
	now  time.Time
	// placeholders returns the seeds' placeholders and their values (in
	// pairs) for a message whose nonce is nonce and Request-URI uri.
	placeholders func(nonce, uri string) []string
}

// fuzzSource is where the fuzzed datagrams come from.
var fuzzSource = netip.MustParseAddr("10.0.0.1")

// newFuzzTarget makes a Server over st whose clock stands at now.
func newFuzzTarget(tb testing.TB, st *fsm.State, rc RegistrarConfig, now time.Time, placeholders func(nonce, uri string) []string) *fuzzTarget {
	s, err := New(Config{
		Addresses: []string{"127.0.0.1"},
		UDPPorts:  []int{5060},
		Registrar: rc,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:   prometheus.NewRegistry(),
		Now:       func() time.Time { return now },
	}, st, testkit.NewStore(st))
	if err != nil {
		tb.Fatal(err)
	}
	return &fuzzTarget{s: s, sock: &transport.Socket{Name: "udp:127.0.0.1:5060", Transport: "udp", IP: "127.0.0.1", Port: 5060},
		now: now, placeholders: placeholders}
}

// deliver parses data and, when it is a request sipgo would hand to a
// handler, passes it to handle, which reports whether it took the method
// and must answer it. It returns the final response: nil when dropped or
// not taken.
func (f *fuzzTarget) deliver(tb testing.TB, data []byte, handle func(*transport.Socket, *sip.Request, sip.ServerTransaction) bool) *sip.Response {
	data = f.fill(data)
	msg, err := f.s.parser.ParseSIP(data)
	if err != nil {
		return nil
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.Via() == nil || req.CSeq() == nil {
		return nil // sipgo's transaction layer answers these itself
	}
	req.SetTransport("UDP")
	req.SetSource(netip.AddrPortFrom(fuzzSource, 5060).String())
	// What wrap does, minus its recover: a panic must fail the fuzzer.
	if !sipmsg.EchoSafe(req) {
		return nil
	}
	tx := recordTx(req)
	if tx == nil || !handle(f.sock, req, tx) {
		return nil
	}
	res := finalResponse(tx)
	if res == nil {
		tb.Fatalf("no response to %q", data)
	}
	return res
}

// fuzzSeed returns the message of a seed corpus file (one []byte value
// in Go's corpus encoding).
func fuzzSeed(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, lit, _ := strings.Cut(string(raw), "[]byte(")
	msg, err := strconv.Unquote(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(lit), ")")))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(msg)
}

// The seed corpus reaches the code it is meant to: its authenticated
// requests pass authentication.
func TestFuzzSeeds(t *testing.T) {
	want := map[string]int{
		"register_noauth": 401, "register_md5": 200, "register_sha256_instance": 200, "unregister_wildcard": 200,
		"unregister_one": 200, "query": 200, "too_brief": 423, "compact_folded_odd": 200, "bad_auth": 400,
		"bad_contact": 400, "options": 200, "missing_headers": 400,
	}
	for name, code := range want {
		res := fuzzHarness(t)(fuzzSeed(t, filepath.Join("testdata", "fuzz", "FuzzRegister", name)))
		if res == nil || res.StatusCode != code {
			t.Errorf("%s: got %v, want %d", name, res, code)
		}
	}
}

// fill replaces a seed's placeholders: @NONCE@ by a nonce bound to the
// message as the server binds it (the fuzz source, the message's Call-ID,
// and for an INVITE its From tag), and the digest responses made with it
// (for the message's Request-URI where the harness says so).
func (f *fuzzTarget) fill(data []byte) []byte {
	if f.placeholders == nil || !bytes.Contains(data, []byte("@")) {
		return data
	}
	b := auth.Binding{Source: fuzzSource}
	uri := ""
	if msg, err := f.s.parser.ParseSIP(data); err == nil {
		if req, ok := msg.(*sip.Request); ok {
			uri = req.Recipient.String()
			if cid := req.CallID(); cid != nil {
				b.CallID = cid.Value()
			}
			if from := req.From(); from != nil && req.Method != sip.REGISTER {
				b.FromTag, _ = from.Params.Get("tag")
			}
		}
	}
	nonce := auth.MintNonce(testSecret, "troika", b, f.now)
	return []byte(strings.NewReplacer(f.placeholders(nonce, uri)...).Replace(string(data)))
}

// capturedConn is a PacketConn that keeps what is written to it (the
// answers of the REGISTER workers, register_udp.go) and reads nothing.
type capturedConn struct {
	net.PacketConn
	mu   sync.Mutex
	sent [][]byte
}

func (c *capturedConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	c.sent = append(c.sent, slices.Clone(p))
	c.mu.Unlock()
	return len(p), nil
}

func (c *capturedConn) take() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.sent
	c.sent = nil
	return out
}
