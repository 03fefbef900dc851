package sipstack

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// The messages of RFC 4475 (SIP torture tests), §3.1.1 to §3.4, are in
// testdata/rfc4475/<name>.sip: the bytes of the RFC's bit-exact archive
// (its Appendix B), the RFC's example.com addresses kept. A test server
// answers whatever reaches its socket, and its responses go where RFC 3261
// §18.2.2 sends them: the source IP, at the port of the top Via. So each
// message is sent from a fresh loopback address bound at that port.
//
// baddn.sip, like the archive's baddn.dat, has no empty line after its
// headers; over UDP troika takes the end of the datagram for it.

// tortureOutcome is what troika does with a message on one transport.
type tortureOutcome struct {
	code   int    // the status of the answer; 0: no answer
	reason string // its reason phrase
	// count is the counter that goes up by one (and it alone among parse
	// errors and bad requests): "bad:<reason label>", "parse" (parse
	// errors: dropped without an answer), "stray" (a response matching no
	// transaction), "request:<method label>", "register:<result>".
	count string
	// closed: over TCP, the server closes the connection (framing lost);
	// an answer sent just before is allowed but not required.
	closed bool
}

type tortureCase struct {
	name, section, kind string // kind: the method, or "response"
	udp                 tortureOutcome
	tcp                 *tortureOutcome // nil: not sent over TCP
	note                string          // why, where the RFC allows or prefers another answer
}

var (
	dropped      = func(count string) tortureOutcome { return tortureOutcome{count: count} }
	proxyAuth    = tortureOutcome{code: 407, reason: "Proxy Authentication Required", count: "request:INVITE"}
	unauthorized = tortureOutcome{code: 401, reason: "Unauthorized", count: "register:unauthorized"}
	optionsOK    = tortureOutcome{code: 200, reason: "OK", count: "request:OPTIONS"}
	notImpl      = tortureOutcome{code: 501, reason: "Not Implemented", count: "request:other"}
	badRequest   = func(reason, label string) tortureOutcome {
		return tortureOutcome{code: 400, reason: reason, count: "bad:" + label}
	}
)

// tortureCases is the table of the closing note: every message of RFC 4475
// §3 and troika's answer.
var tortureCases = []tortureCase{
	// §3.1.1 Valid messages: processed as usual.
	{name: "wsinv", section: "3.1.1.1", kind: "INVITE",
		udp:  tortureOutcome{code: 481, reason: "Call/Transaction Does Not Exist", count: "request:INVITE"},
		tcp:  &tortureOutcome{code: 481, reason: "Call/Transaction Does Not Exist", count: "request:INVITE"},
		note: "folded, spaced-out headers read as RFC 3261 allows; its To has a tag, so it is a request within a dialog troika does not know"},
	{name: "intmeth", section: "3.1.1.2", kind: "unknown method", udp: dropped("parse"),
		note: "RFC: 501; its To holds BEL, NUL and DEL (as quoted-pairs), which any answer must copy: troika never sends control characters"},
	{name: "esc01", section: "3.1.1.3", kind: "INVITE", udp: proxyAuth},
	{name: "escnull", section: "3.1.1.4", kind: "REGISTER", udp: unauthorized},
	{name: "esc02", section: "3.1.1.5", kind: "unknown method", udp: notImpl, note: "RE%47IST%45R is not REGISTER"},
	{name: "lwsdisp", section: "3.1.1.6", kind: "OPTIONS", udp: optionsOK},
	{name: "longreq", section: "3.1.1.7", kind: "INVITE", udp: proxyAuth},
	{name: "dblreq", section: "3.1.1.8", kind: "REGISTER", udp: unauthorized,
		note: "one answer: the INVITE after the REGISTER's Content-Length is ignored"},
	{name: "semiuri", section: "3.1.1.9", kind: "OPTIONS", udp: optionsOK},
	{name: "transports", section: "3.1.1.10", kind: "OPTIONS", udp: optionsOK},
	{name: "mpart01", section: "3.1.1.11", kind: "MESSAGE",
		udp: tortureOutcome{code: 405, reason: "Method Not Allowed", count: "request:MESSAGE"}},
	{name: "unreason", section: "3.1.1.12", kind: "response", udp: dropped("stray"), note: "matches no transaction"},
	{name: "noreason", section: "3.1.1.13", kind: "response", udp: dropped("stray"), note: "matches no transaction"},

	// §3.1.2 Invalid messages: refused, naming the problem.
	{name: "badinv01", section: "3.1.2.1", kind: "INVITE", udp: dropped("parse"),
		note: "RFC: 400; its only Via is malformed, so no answer can be addressed or matched"},
	{name: "clerr", section: "3.1.2.2", kind: "INVITE",
		udp:  badRequest("Content-Length larger than the message", sipmsg.BadContentLength),
		tcp:  &tortureOutcome{closed: true},
		note: "over TCP: waits for the rest, and closes the idle connection"},
	{name: "ncl", section: "3.1.2.3", kind: "INVITE", udp: badRequest("Malformed Content-Length", sipmsg.BadContentLength),
		tcp: &tortureOutcome{count: "parse", closed: true}},
	{name: "scalar02", section: "3.1.2.4", kind: "REGISTER", udp: badRequest("Malformed CSeq", sipmsg.BadMalformedHeader),
		note: "the 400 has no CSeq: the request's cannot be read"},
	{name: "scalarlg", section: "3.1.2.5", kind: "response", udp: dropped("parse")},
	{name: "quotbal", section: "3.1.2.6", kind: "INVITE", udp: badRequest("Missing or malformed To", sipmsg.BadMalformedHeader)},
	{name: "ltgtruri", section: "3.1.2.7", kind: "INVITE", udp: badRequest("Malformed Request-URI", sipmsg.BadRequestLine)},
	{name: "lwsruri", section: "3.1.2.8", kind: "INVITE", udp: badRequest("Malformed Request-Line", sipmsg.BadRequestLine)},
	{name: "lwsstart", section: "3.1.2.9", kind: "INVITE", udp: badRequest("Malformed Request-Line", sipmsg.BadRequestLine)},
	{name: "trws", section: "3.1.2.10", kind: "OPTIONS", udp: badRequest("Malformed Request-Line", sipmsg.BadRequestLine)},
	{name: "escruri", section: "3.1.2.11", kind: "INVITE",
		udp: badRequest("Malformed Request-URI: headers are not allowed", sipmsg.BadRequestLine)},
	{name: "baddate", section: "3.1.2.12", kind: "INVITE", udp: proxyAuth,
		note: "troika does not read Date, and the RFC says not to refuse it then"},
	{name: "regbadct", section: "3.1.2.13", kind: "REGISTER", udp: unauthorized,
		note: "Contact is read after authentication: then 400 Malformed Contact: a URI with headers must be in <>"},
	{name: "badaspec", section: "3.1.2.14", kind: "OPTIONS", udp: badRequest("Missing or malformed To", sipmsg.BadMalformedHeader)},
	{name: "baddn", section: "3.1.2.15", kind: "OPTIONS",
		udp:  badRequest("Malformed From: unquoted display name", sipmsg.BadMalformedHeader),
		note: "the archive's file has no empty line after the headers: the datagram's end is taken for it"},
	{name: "badvers", section: "3.1.2.16", kind: "OPTIONS",
		udp: tortureOutcome{code: 505, reason: "Version Not Supported", count: "bad:" + sipmsg.BadVersion}},
	{name: "mismatch01", section: "3.1.2.17", kind: "OPTIONS", udp: badRequest("CSeq method does not match the request", sipmsg.BadInvalid)},
	{name: "mismatch02", section: "3.1.2.18", kind: "unknown method", udp: notImpl, note: "the RFC prefers 501 to 400"},
	{name: "bigcode", section: "3.1.2.19", kind: "response", udp: dropped("parse")},

	// §3.2 Transaction layer, §3.3 application layer, §3.4 RFC 2543.
	{name: "badbranch", section: "3.2.1", kind: "OPTIONS", udp: optionsOK,
		note: "a branch of z9hG4bK alone: matched as RFC 2543 would, which the RFC allows"},
	{name: "insuf", section: "3.3.1", kind: "INVITE", udp: badRequest("Missing Call-ID", sipmsg.BadMissingHeader)},
	{name: "unkscm", section: "3.3.2", kind: "OPTIONS",
		udp: tortureOutcome{code: 416, reason: "Unsupported URI Scheme", count: "bad:" + sipmsg.BadURIScheme}},
	{name: "novelsc", section: "3.3.3", kind: "OPTIONS",
		udp: tortureOutcome{code: 416, reason: "Unsupported URI Scheme", count: "bad:" + sipmsg.BadURIScheme}},
	{name: "unksm2", section: "3.3.4", kind: "REGISTER", udp: badRequest("To must be a SIP or SIPS URI", sipmsg.BadInvalid)},
	{name: "bext01", section: "3.3.5", kind: "OPTIONS",
		udp:  tortureOutcome{code: 420, reason: "Bad Extension", count: "bad:" + sipmsg.BadExtension},
		note: "Unsupported: nothingSupportsThis, nothingSupportsThisEither (troika answers as a UAS: Proxy-Require is not its)"},
	{name: "invut", section: "3.3.6", kind: "INVITE", udp: proxyAuth,
		note: "bodies are checked after authentication (RFC 3261 §8.2's order): then 415 with Accept"},
	{name: "regaut01", section: "3.3.7", kind: "REGISTER", udp: unauthorized, note: "a new challenge, as the RFC says"},
	{name: "multi01", section: "3.3.8", kind: "INVITE", udp: badRequest("Multiple CSeq headers", sipmsg.BadDuplicateHeader)},
	{name: "mcl01", section: "3.3.9", kind: "OPTIONS", udp: badRequest("Multiple Content-Length headers", sipmsg.BadDuplicateHeader),
		tcp:  &tortureOutcome{code: 400, reason: "Multiple Content-Length headers", count: "parse", closed: true},
		note: "over TCP the octets after the last Content-Length are taken for the next message, which does not parse: the connection is closed"},
	{name: "bcast", section: "3.3.10", kind: "response", udp: dropped("stray")},
	{name: "zeromf", section: "3.3.11", kind: "OPTIONS", udp: optionsOK, note: "troika is the OPTIONS' endpoint, not a proxy"},
	{name: "cparam01", section: "3.3.12", kind: "REGISTER", udp: unauthorized},
	{name: "cparam02", section: "3.3.13", kind: "REGISTER", udp: unauthorized},
	{name: "regescrt", section: "3.3.14", kind: "REGISTER", udp: unauthorized},
	{name: "sdp01", section: "3.3.15", kind: "INVITE", udp: proxyAuth,
		note: "after authentication troika does not read Accept (the RFC: 406, or 400)"},
	{name: "inv2543", section: "3.4.1", kind: "INVITE", udp: badRequest("Missing From tag", sipmsg.BadMissingHeader),
		tcp:  &tortureOutcome{count: "parse", closed: true},
		note: "RFC 2543 requests (no From tag, no branch) are not served; over TCP it has no Content-Length to frame it"},
}

// TestRFC4475 sends each message of RFC 4475 to a server of its own, as
// one UDP datagram (and over TCP where the table says), and checks the
// answer, the counters, and that nothing was written: no binding, no call,
// no xDR.
func TestRFC4475(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "rfc4475", "*.sip"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tortureCases) {
		t.Errorf("%d messages in testdata/rfc4475, %d in the table", len(files), len(tortureCases))
	}
	for _, c := range tortureCases {
		msg, err := os.ReadFile(filepath.Join("testdata", "rfc4475", c.name+".sip"))
		if err != nil {
			t.Fatal(err)
		}
		t.Run(c.name+"/udp", func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, nil, nil)
			c.udp.check(t, ts, exchangeUDP(t, ts, msg, c.udp, c.name == "dblreq"))
		})
		if c.tcp != nil {
			t.Run(c.name+"/tcp", func(t *testing.T) {
				t.Parallel()
				ts := startServer(t, nil, func(cfg *Config) {
					if c.tcp.closed && c.tcp.code == 0 && c.tcp.count == "" {
						cfg.TCPIdleTimeout = time.Second // clerr: waits for the rest of the body
					}
				})
				c.tcp.check(t, ts, exchangeTCP(t, ts.addr(t, "tcp", ts.ip), msg))
			})
		}
	}
}

// tortureResult is what came back for a message.
type tortureResult struct {
	res    *sip.Response
	closed bool // TCP: the server closed the connection
}

// silence is how long a test listens for an answer that must not come.
const silence = 300 * time.Millisecond

func (want tortureOutcome) check(t *testing.T, ts *testServer, got tortureResult) {
	t.Helper()
	switch {
	case want.closed && !got.closed:
		t.Errorf("connection left open")
	case !want.closed && got.closed:
		t.Errorf("connection closed")
	}
	switch res := got.res; {
	case want.code == 0 && res != nil:
		t.Errorf("answered %d %s, want no answer", res.StatusCode, res.Reason)
	case want.code != 0 && res == nil && !want.closed:
		t.Errorf("no answer, want %d %s", want.code, want.reason)
	case res != nil && (res.StatusCode != want.code || res.Reason != want.reason):
		t.Errorf("answered %d %s, want %d %s", res.StatusCode, res.Reason, want.code, want.reason)
	}
	if res := got.res; res != nil {
		if res.Via() == nil || res.CallID() == nil && want.count != "bad:"+sipmsg.BadMissingHeader {
			t.Errorf("answer without Via or Call-ID:\n%s", res)
		}
		if res.StatusCode == 420 && header(res, "Unsupported") != "nothingSupportsThis, nothingSupportsThisEither" {
			t.Errorf("420 with Unsupported %q", header(res, "Unsupported"))
		}
	}

	// The counter, once; none of the others.
	if want.count != "" && !(want.closed && got.res == nil && strings.HasPrefix(want.count, "bad:")) {
		name, labels := counterOf(want.count)
		testkit.WaitFor(t, 5*time.Second, want.count+" counted", func() bool { return ts.counter(name, labels...) >= 1 })
		if n := ts.counter(name, labels...); n != 1 {
			t.Errorf("%s counted %v times", want.count, n)
		}
	}
	wantParse, wantBad := 0.0, 0.0
	switch {
	case want.count == "parse":
		wantParse = 1
	case strings.HasPrefix(want.count, "bad:"):
		wantBad = 1
	}
	if n := ts.counter("troika_sip_parse_errors_total"); n != wantParse {
		t.Errorf("%v parse errors, want %v", n, wantParse)
	}
	// mcl01 over TCP: the first message is refused or not, depending on
	// whether its transaction starts before the connection is closed.
	if n := ts.counter("troika_sip_bad_requests_total"); n != wantBad && !(want.closed && want.code != 0 && n <= 1) {
		t.Errorf("%v bad requests, want %v", n, wantBad)
	}

	// Nothing changed.
	if w := ts.store.Writes.Load(); w != 0 || ts.st.BindingCount() != 0 || len(ts.st.Calls()) != 0 ||
		ts.ActiveCalls() != 0 || len(ts.st.XDRs(fsm.XDRFilter{})) != 0 {
		t.Errorf("state changed: %d writes, %d bindings, %d calls (%d active), %d xDRs",
			w, ts.st.BindingCount(), len(ts.st.Calls()), ts.ActiveCalls(), len(ts.st.XDRs(fsm.XDRFilter{})))
	}
}

// counterOf maps a tortureOutcome count to a metric and its labels.
func counterOf(count string) (string, []string) {
	kind, label, _ := strings.Cut(count, ":")
	switch kind {
	case "bad":
		return "troika_sip_bad_requests_total", []string{"reason", label}
	case "parse":
		return "troika_sip_parse_errors_total", nil
	case "stray":
		return "troika_sip_stray_responses_total", nil
	case "request":
		return "troika_sip_requests_total", []string{"method", label}
	case "register":
		return "troika_sip_register_total", []string{"result", label}
	}
	panic("unknown count " + count)
}

// viaPort is the port of msg's top Via (5060 when it has none, or when
// the message does not parse): where an answer over UDP is sent.
func viaPort(msg []byte) int {
	if m, err := transport.NewParser().ParseSIP(msg); err == nil {
		if via := m.(interface{ Via() *sip.ViaHeader }).Via(); via != nil && via.Port > 0 {
			return via.Port
		}
	}
	return sip.DefaultUdpPort
}

// exchangeUDP sends msg to ts as one datagram from a fresh loopback
// address bound at its Via's port, and returns the answer. When want is
// no answer, it first waits for the server to count the message, then
// listens for silence. With once, it also checks that no second answer
// follows.
func exchangeUDP(t *testing.T, ts *testServer, msg []byte, want tortureOutcome, once bool) tortureResult {
	t.Helper()
	local := &net.UDPAddr{IP: net.ParseIP(testIP()), Port: viaPort(msg)}
	remote, err := net.ResolveUDPAddr("udp", ts.addr(t, "udp", ts.ip))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", local, remote)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if want.code == 0 {
		name, labels := counterOf(want.count)
		testkit.WaitFor(t, 5*time.Second, want.count+" counted", func() bool { return ts.counter(name, labels...) >= 1 })
		return tortureResult{res: readDatagram(t, c, silence)}
	}
	res := readDatagram(t, c, 5*time.Second)
	if res != nil && once {
		if again := readDatagram(t, c, silence); again != nil {
			t.Errorf("a second answer: %d %s", again.StatusCode, again.Reason)
		}
	}
	return tortureResult{res: res}
}

// exchangeTCP sends msg over a new TCP connection and returns the first
// answer (or none) and whether the server closed the connection: within
// 5 s when no answer comes (clerr's server closes connections idle for
// 1 s), within 2×silence after an answer.
func exchangeTCP(t *testing.T, server string, msg []byte) tortureResult {
	t.Helper()
	c, err := net.Dial("tcp", server)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	var got tortureResult
	var data []byte
	buf := make([]byte, 65536)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.SetReadDeadline(deadline)
		n, err := c.Read(buf)
		data = append(data, buf[:n]...)
		if got.res == nil {
			if end := bytes.Index(data, []byte("\r\n\r\n")); end >= 0 {
				m, perr := sip.ParseMessage(data[:end+4])
				if perr != nil {
					t.Fatalf("unparseable answer %q: %v", data, perr)
				}
				got.res = m.(*sip.Response)
				// Keep reading only to see whether the server closes.
				if d := time.Now().Add(2 * silence); d.Before(deadline) {
					deadline = d
				}
			}
		}
		var ne net.Error
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || (err != nil && strings.Contains(err.Error(), "reset")):
			got.closed = true
			return got
		case errors.As(err, &ne) && ne.Timeout():
			return got
		case err != nil:
			t.Fatal(err)
		}
	}
}

// The corpus is the RFC's: byte counts and line ends of the archive
// (Appendix B), so that an editor's "fix" shows.
func TestRFC4475Corpus(t *testing.T) {
	sizes := map[string]int{
		"wsinv": 1001, "intmeth": 641, "esc01": 543, "escnull": 359, "esc02": 439, "lwsdisp": 255, "longreq": 3515,
		"dblreq": 750, "semiuri": 380, "transports": 503, "mpart01": 1290, "unreason": 526, "noreason": 274,
		"badinv01": 472, "clerr": 498, "ncl": 486, "scalar02": 476, "scalarlg": 385, "quotbal": 485, "ltgtruri": 452,
		"lwsruri": 541, "lwsstart": 506, "trws": 327, "escruri": 550, "baddate": 532, "regbadct": 307, "badaspec": 346,
		"baddn": 331, "badvers": 291, "mismatch01": 236, "mismatch02": 449, "bigcode": 332, "badbranch": 262,
		"insuf": 304, "unkscm": 291, "novelsc": 277, "unksm2": 282, "bext01": 381, "invut": 391, "regaut01": 304,
		"multi01": 643, "mcl01": 382, "bcast": 516, "zeromf": 272, "cparam01": 321, "cparam02": 311, "regescrt": 302,
		"sdp01": 494, "inv2543": 445,
	}
	for _, c := range tortureCases {
		b, err := os.ReadFile(filepath.Join("testdata", "rfc4475", c.name+".sip"))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != sizes[c.name] {
			t.Errorf("%s: %d bytes, the archive's has %d", c.name, len(b), sizes[c.name])
		}
		// Every line ends in CRLF, but in mpart01's binary body.
		if c.name != "mpart01" && bytes.Count(b, []byte("\n")) != bytes.Count(b, []byte("\r\n")) {
			t.Errorf("%s: a bare LF", c.name)
		}
	}
}
