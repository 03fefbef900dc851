package sipstack

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// A sipgo client registers with digest auth (both algorithms), refreshes,
// and the binding in the fsm records source, transport and ingress.
func TestRegisterDigest(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	srv := ts.addr(t, "udp", ts.ip)
	for _, alg := range []string{"SHA-256", "MD5"} {
		t.Run(alg, func(t *testing.T) {
			user := map[string]string{"SHA-256": "1001", "MD5": "1002"}[alg]
			p := newPhone(t, "UDP", srv, user, "pw"+user)
			p.alg = alg
			contact := "<sip:" + user + "@127.0.0.1:5999>"

			first := p.do(p.request([]string{contact}))
			wantStatus(t, first, 401, "Unauthorized")
			chals := first.GetHeaders("WWW-Authenticate")
			if len(chals) != 2 || !strings.Contains(chals[0].Value(), "algorithm=SHA-256") || !strings.Contains(chals[1].Value(), "algorithm=MD5") {
				t.Fatalf("want SHA-256 then MD5 challenges, got %v", chals)
			}
			for _, c := range chals {
				if !strings.Contains(c.Value(), `realm="troika"`) || !strings.Contains(c.Value(), `qop="auth"`) || strings.Contains(c.Value(), "stale") {
					t.Errorf("challenge %q", c.Value())
				}
			}

			res := p.do(p.request([]string{contact}, p.authorization(first)))
			wantStatus(t, res, 200, "OK")
			if got := contactsOf(res); len(got) != 1 || got[0] != "<sip:"+user+"@127.0.0.1:5999>;expires=3600" {
				t.Errorf("200 contacts: %q", got)
			}
			if d, err := http.ParseTime(header(res, "Date")); err != nil || time.Since(d) > time.Minute {
				t.Errorf("Date %q: %v", header(res, "Date"), err)
			}
			bs := ts.st.Bindings(user, time.Now().UnixMilli())
			if len(bs) != 1 {
				t.Fatalf("bindings: %+v", bs)
			}
			b := bs[0]
			if b.Contact != "sip:"+user+"@127.0.0.1:5999" || b.Transport != "udp" || b.Ingress != "udp:"+srv ||
				b.CallID != p.callID || b.CSeq != 2 || b.UserAgent != "testphone/1.0" || b.Q != -1 {
				t.Errorf("binding: %+v", b)
			}
			if host, port, err := net.SplitHostPort(b.Source); err != nil || host != "127.0.0.1" || port == "0" {
				t.Errorf("source %q", b.Source)
			}
			if left := b.ExpiresAt - time.Now().UnixMilli(); left < 3590_000 || left > 3600_000 {
				t.Errorf("expires in %d ms", left)
			}

			// Refresh with a shorter interval, reusing the nonce with the
			// next nc.
			res = p.do(p.request([]string{contact}, sip.NewHeader("Expires", "600"), p.authorization(first)))
			wantStatus(t, res, 200, "OK")
			if got := contactsOf(res); len(got) != 1 || !strings.HasSuffix(got[0], ";expires=600") {
				t.Errorf("refresh contacts: %q", got)
			}
			if bs := ts.st.Bindings(user, time.Now().UnixMilli()); len(bs) != 1 || bs[0].CSeq != 3 {
				t.Errorf("after refresh: %+v", bs)
			}
		})
	}
	if ts.counter("troika_sip_register_total", "result", "ok") != 4 || ts.counter("troika_sip_register_total", "result", "unauthorized") != 2 {
		t.Errorf("register metrics: ok=%v unauthorized=%v", ts.counter("troika_sip_register_total", "result", "ok"),
			ts.counter("troika_sip_register_total", "result", "unauthorized"))
	}
}

// Several contacts in one REGISTER, q-values, instance ids and Path;
// unregistering one; the query; Contact: * with Expires: 0.
func TestRegisterContacts(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	p := newPhone(t, "UDP", ts.addr(t, "udp", ts.ip), "1001", "pw1001")
	res := p.register([]string{
		"<sip:1001@10.0.0.1:5060>;q=0.7",
		`"Desk" <sip:1001@10.0.0.2:5060;transport=udp>;expires=120, <sip:1001@10.0.0.3>;+sip.instance="<urn:uuid:abc>";reg-id=1`,
	}, sip.NewHeader("Path", "<sip:edge.example.com;lr>"), sip.NewHeader("Supported", "path, outbound"))
	wantStatus(t, res, 200, "OK")
	got := contactsOf(res)
	want := []string{
		"<sip:1001@10.0.0.1:5060>;expires=3600;q=0.7",
		"<sip:1001@10.0.0.2:5060;transport=udp>;expires=120",
		`<sip:1001@10.0.0.3>;expires=3600;+sip.instance="<urn:uuid:abc>";reg-id=1`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("contacts\n got %q\nwant %q", got, want)
	}
	if header(res, "Path") != "<sip:edge.example.com;lr>" {
		t.Errorf("Path not echoed: %q", header(res, "Path"))
	}
	bs := ts.st.Bindings("1001", time.Now().UnixMilli())
	if len(bs) != 3 || bs[0].Q != 700 || bs[2].Instance != "<urn:uuid:abc>" || bs[2].RegID != 1 || !slices.Equal(bs[1].Path, []string{"<sip:edge.example.com;lr>"}) {
		t.Fatalf("bindings: %+v", bs)
	}

	// Unregister one.
	res = p.register([]string{"<sip:1001@10.0.0.2:5060;transport=udp>;expires=0"})
	wantStatus(t, res, 200, "OK")
	if got := contactsOf(res); len(got) != 2 || strings.Contains(strings.Join(got, ","), "10.0.0.2") {
		t.Errorf("after unregistering one: %q", got)
	}

	// Query: no Contact, no write.
	calls := ts.store.Writes.Load()
	res = p.register(nil)
	wantStatus(t, res, 200, "OK")
	if len(contactsOf(res)) != 2 || ts.store.Writes.Load() != calls {
		t.Errorf("query: %q, %d writes", contactsOf(res), ts.store.Writes.Load()-calls)
	}

	// * with another expiry is refused; with Expires: 0 removes all.
	res = p.register([]string{"*"}, sip.NewHeader("Expires", "3600"))
	wantStatus(t, res, 400, "Contact * requires Expires: 0")
	res = p.register([]string{"*", "<sip:1001@10.0.0.9>"}, sip.NewHeader("Expires", "0"))
	wantStatus(t, res, 400, "Contact * must be the only Contact")
	res = p.register([]string{"*"}, sip.NewHeader("Expires", "0"))
	wantStatus(t, res, 200, "OK")
	if len(contactsOf(res)) != 0 || len(ts.st.Bindings("1001", time.Now().UnixMilli())) != 0 {
		t.Errorf("after *: %q", contactsOf(res))
	}
}

func TestRegisterExpiresBounds(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	p := newPhone(t, "UDP", ts.addr(t, "udp", ts.ip), "1001", "pw1001")
	res := p.register([]string{"<sip:1001@10.0.0.1>"}, sip.NewHeader("Expires", "30"))
	wantStatus(t, res, 423, "Interval Too Brief")
	if header(res, "Min-Expires") != "60" {
		t.Errorf("Min-Expires %q", header(res, "Min-Expires"))
	}
	res = p.register([]string{"<sip:1001@10.0.0.1>;expires=59"})
	wantStatus(t, res, 423, "Interval Too Brief")
	res = p.register([]string{"<sip:1001@10.0.0.1>"}, sip.NewHeader("Expires", "999999"))
	wantStatus(t, res, 200, "OK")
	if got := contactsOf(res); len(got) != 1 || !strings.HasSuffix(got[0], ";expires=7200") {
		t.Errorf("clamped: %q", got)
	}
	res = p.register([]string{"<sip:1001@10.0.0.1>"}, sip.NewHeader("Expires", "soon"))
	wantStatus(t, res, 400, "Malformed Expires")
	if ts.counter("troika_sip_register_total", "result", "too_brief") != 2 {
		t.Errorf("too_brief metric")
	}
}

// A wrong password and an unknown user get the same answers: the same
// challenge, then the same 403 with the same headers.
func TestNoUserEnumeration(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	srv := ts.addr(t, "udp", ts.ip)
	wrong := newPhone(t, "UDP", srv, "1001", "not-the-password")
	unknown := newPhone(t, "UDP", srv, "1003", "whatever")
	blocked := newPhone(t, "UDP", srv, "1009", "pw1009") // right password, blocked account

	var chal, final []*sip.Response
	for _, p := range []*phone{wrong, unknown, blocked} {
		c := p.do(p.request([]string{"<sip:x@10.0.0.1>"}))
		f := p.do(p.request([]string{"<sip:x@10.0.0.1>"}, p.authorization(c)))
		chal, final = append(chal, c), append(final, f)
	}
	wantStatus(t, final[0], 403, "Forbidden")
	for i := 1; i < len(final); i++ {
		compareResponses(t, chal[0], chal[i])
		compareResponses(t, final[0], final[i])
	}
	if n := ts.counter("troika_sip_auth_failures_total"); n != 2 {
		t.Errorf("auth failures %v, want 2 (blocked accounts with the right password are not failures)", n)
	}
	if len(ts.st.Bindings("1009", time.Now().UnixMilli())) != 0 {
		t.Errorf("blocked account registered")
	}
}

var volatile = regexp.MustCompile(`tag=[^;>]*|nonce="[^"]*"|\b(100[0-9])\b`)

// compareResponses checks two responses are the same but for Via, Call-ID,
// tags, nonces and user names.
func compareResponses(t *testing.T, a, b *sip.Response) {
	t.Helper()
	if a.StatusCode != b.StatusCode || a.Reason != b.Reason {
		t.Errorf("status differs: %d %s vs %d %s", a.StatusCode, a.Reason, b.StatusCode, b.Reason)
	}
	norm := func(r *sip.Response) []string {
		var out []string
		for _, h := range r.Headers() {
			switch strings.ToLower(h.Name()) {
			case "via", "call-id":
				out = append(out, h.Name())
			default:
				out = append(out, h.Name()+": "+volatile.ReplaceAllString(h.Value(), "X"))
			}
		}
		return out
	}
	if na, nb := norm(a), norm(b); !slices.Equal(na, nb) {
		t.Errorf("responses differ:\n%q\n%q", na, nb)
	}
}

// A nonce issued by one node verifies on another sharing the fsm state.
func TestClusterWideNonce(t *testing.T) {
	t.Parallel()
	st := newTestState(t, false)
	a := startServer(t, st, nil)
	b := startServer(t, st, nil)
	pa := newPhone(t, "UDP", a.addr(t, "udp", a.ip), "1001", "pw1001")
	chal := pa.do(pa.request([]string{"<sip:1001@10.0.0.1>"}))
	wantStatus(t, chal, 401, "")
	pb := newPhone(t, "UDP", b.addr(t, "udp", b.ip), "1001", "pw1001")
	pb.callID, pb.cseq = pa.callID, pa.cseq
	// The digest uri is the Request-URI the phone used with node A.
	pb.host, pb.port = pa.host, pa.port
	req := pb.request([]string{"<sip:1001@10.0.0.1>"}, pa.authorization(chal))
	req.SetDestination(b.addr(t, "udp", b.ip))
	res := pb.do(req)
	wantStatus(t, res, 200, "OK")
	if bs := st.Bindings("1001", time.Now().UnixMilli()); len(bs) != 1 || bs[0].Ingress != "udp:"+b.addr(t, "udp", b.ip) {
		t.Errorf("bindings %+v", bs)
	}
}

// Right credentials with an expired nonce get 401 stale=true; wrong ones
// with an expired nonce get 403.
func TestStaleNonce(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, func(c *Config) { c.Registrar.NonceTTL = time.Minute })
	srv := ts.addr(t, "udp", ts.ip)
	p := newPhone(t, "UDP", srv, "1001", "pw1001")
	chal := p.do(p.request([]string{"<sip:1001@10.0.0.1>"}))
	auth := p.authorization(chal)
	ts.clock.Advance(2 * time.Minute)
	res := p.do(p.request([]string{"<sip:1001@10.0.0.1>"}, auth))
	wantStatus(t, res, 401, "Unauthorized")
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		if !strings.Contains(h.Value(), "stale=true") {
			t.Errorf("challenge without stale=true: %s", h.Value())
		}
	}
	res = p.do(p.request([]string{"<sip:1001@10.0.0.1>"}, p.authorization(res)))
	wantStatus(t, res, 200, "OK")

	bad := newPhone(t, "UDP", srv, "1001", "wrong")
	chal = bad.do(bad.request([]string{"<sip:1001@10.0.0.1>"}))
	auth = bad.authorization(chal)
	ts.clock.Advance(2 * time.Minute)
	wantStatus(t, bad.do(bad.request([]string{"<sip:1001@10.0.0.1>"}, auth)), 403, "Forbidden")
	if ts.counter("troika_sip_register_total", "result", "stale") != 1 {
		t.Errorf("stale metric")
	}
}

func TestRegisterRefusals(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, func(c *Config) { c.Registrar.MaxContacts = 2 })
	srv := ts.addr(t, "udp", ts.ip)

	p := newPhone(t, "UDP", srv, "1001", "pw1001")
	res := p.register([]string{"<sip:1001@10.0.0.1>", "<sip:1001@10.0.0.2>", "<sip:1001@10.0.0.3>"})
	wantStatus(t, res, 403, "Too Many Contacts")

	// A lower CSeq of the same Call-ID than the binding's.
	p.cseq = 10
	wantStatus(t, p.register([]string{"<sip:1001@10.0.0.1>"}), 200, "OK")
	p.cseq = 5
	wantStatus(t, p.register([]string{"<sip:1001@10.0.0.1>;expires=0"}), 500, "Stale CSeq")

	// Username other than the To user.
	q := newPhone(t, "UDP", srv, "1002", "pw1002")
	chal := q.do(q.request([]string{"<sip:1002@10.0.0.1>"}))
	q.user = "1001" // To: 1001, Authorization: 1002's
	req := q.request([]string{"<sip:1002@10.0.0.1>"})
	q.user = "1002"
	req.AppendHeader(q.authorization(chal))
	wantStatus(t, q.do(req), 403, "Forbidden")

	// Unsupported Require.
	wantStatus(t, p.register([]string{"<sip:1001@10.0.0.1>"}, sip.NewHeader("Require", "foo, path")), 420, "Bad Extension")

	// Write failure: 503 with Retry-After, never silence.
	ts.store.Fail.Store(true)
	wantRetryLater(t, p.register([]string{"<sip:1001@10.0.0.1>"}))
	ts.store.Fail.Store(false)

	// Bad Contact after authentication.
	wantStatus(t, p.register([]string{"<tel:+15551234>"}), 400, "Contact URI must be sip: or sips:")
	wantStatus(t, p.register([]string{"<sip:1001@10.0.0.1"}), 400, "Malformed Contact: missing >")
}

func TestRegisterWithoutSecret(t *testing.T) {
	t.Parallel()
	ts := startServer(t, newTestState(t, true), nil)
	wantRetryLater(t, newPhone(t, "UDP", ts.addr(t, "udp", ts.ip), "1001", "pw1001").register([]string{"<sip:1001@10.0.0.1>"}))
}

// After too many failures one source gets 403 without checking, even with
// the right password; other sources are not affected.
func TestAuthRateLimit(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, func(c *Config) { c.Registrar.AuthFailuresPerMinute = 3 })
	srv := ts.addr(t, "udp", ts.ip)
	bad := newPhone(t, "UDP", srv, "1001", "guess")
	for i := 0; i < 4; i++ {
		wantStatus(t, bad.register([]string{"<sip:1001@10.0.0.1>"}), 403, "Forbidden")
	}
	good := newPhone(t, "UDP", srv, "1001", "pw1001")
	wantStatus(t, good.do(good.request([]string{"<sip:1001@10.0.0.1>"})), 403, "Forbidden")
	if ts.counter("troika_sip_register_total", "result", "rate_limited") != 1 || ts.counter("troika_sip_auth_failures_total") != 4 {
		t.Errorf("metrics: rate_limited=%v failures=%v", ts.counter("troika_sip_register_total", "result", "rate_limited"), ts.counter("troika_sip_auth_failures_total"))
	}
	// The phones above all come from 127.0.0.1; a phone on another address
	// is served.
	other := testkit.FreePort(t, "127.0.0.2")
	c, err := net.ListenPacket("udp", "127.0.0.2:"+itoa(other))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	res := rawUDPFrom(t, "127.0.0.2:"+itoa(other), srv, rawRegister(srv, "1001", "other-src", 1, "UDP", "Contact: <sip:1001@10.0.0.1>\r\n"))
	wantStatus(t, res, 401, "Unauthorized")
}

// Requests with missing or malformed headers get 400 naming the problem;
// unparseable and oversized datagrams are dropped and counted; other
// methods get 405/501; OPTIONS 200.
func TestMalformedAndOtherMethods(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	srv := ts.addr(t, "udp", ts.ip)
	good := rawRegister(srv, "1001", "m1", 1, "UDP", "Contact: <sip:1001@10.0.0.1>\r\n")
	drop := func(msg, header string) string {
		var out []string
		for _, l := range strings.Split(msg, "\r\n") {
			if !strings.HasPrefix(l, header+":") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\r\n")
	}
	cases := []struct {
		msg    string
		code   int
		reason string
	}{
		{drop(good, "Call-ID"), 400, "Missing Call-ID"},
		{drop(good, "From"), 400, "Missing or malformed From"},
		{drop(good, "To"), 400, "Missing or malformed To"},
		{strings.Replace(good, "To: <sip:1001@", "To: \"1001 <sip:1001@", 1), 400, "Missing or malformed To"},
		{strings.Replace(good, "CSeq: 1 REGISTER", "CSeq: 1 INVITE", 1), 400, "CSeq method does not match the request"},
		{strings.Replace(good, "To: <sip:1001@", "To: <sip:@", 1), 400, "To URI has no user part"},
		{strings.Replace(good, "Max-Forwards: 70\r\n", "Require: 100rel\r\n", 1), 420, "Bad Extension"},
		{strings.Replace(good, "Max-Forwards: 70\r\n", "Authorization: Digest username=\"1001\r\n", 1), 400, "Malformed Authorization header"},
		{strings.Replace(good, "Max-Forwards: 70\r\n", "Authorization: Digest username=\"1001\", realm=\"troika\", nonce=\"x\", uri=\"sip:x\", response=\"y\"\r\n", 1), 400, "Authorization must use qop=auth"},
		// Contact: nonsense is only looked at after authentication: a
		// challenge first.
		{strings.Replace(good, "Contact: <sip:1001@10.0.0.1>", "Contact: <<<>>>,,;", 1), 401, "Unauthorized"},
		{strings.Replace(strings.Replace(good, "REGISTER", "OPTIONS", 2), "Contact", "X", 1), 200, "OK"},
		{strings.Replace(strings.Replace(good, "REGISTER", "INVITE", 2), "Contact", "X", 1), 407, "Proxy Authentication Required"},
		{strings.Replace(strings.Replace(good, "REGISTER", "SUBSCRIBE", 2), "Contact", "X", 1), 405, "Method Not Allowed"},
		{strings.Replace(strings.Replace(good, "REGISTER", "FOO", 2), "Contact", "X", 1), 501, "Not Implemented"},
		{strings.Replace(strings.Replace(good, "REGISTER", "CANCEL", 2), "Contact", "X", 1), 481, "Call/Transaction Does Not Exist"},
		{strings.Replace(good, "SIP/2.0\r\n", "SIP/3.0\r\n", 1), 505, "Version Not Supported"},
	}
	for i, c := range cases {
		res := rawExchange(t, srv, c.msg, 3*time.Second)
		if res == nil {
			t.Errorf("%d: no response, want %d %s", i, c.code, c.reason)
			continue
		}
		if res.StatusCode != c.code || res.Reason != c.reason {
			t.Errorf("%d: got %d %q, want %d %q", i, res.StatusCode, res.Reason, c.code, c.reason)
		}
		if c.code == 200 && (header(res, "Allow") != sipmsg.AllowHeader || header(res, "Accept") == "") {
			t.Errorf("OPTIONS: %s", res)
		}
		if c.code == 405 && header(res, "Allow") != sipmsg.AllowHeader {
			t.Errorf("405 without Allow")
		}
	}

	before := ts.counter("troika_sip_parse_errors_total")
	silent := []string{
		"hello world\r\n\r\n",
		"\x00\x01\x02garbage",
		strings.Replace(good, "Call-ID: m1", "Call-ID: m1\nInjected: x", 1), // bare LF inside a header
		// 40 kB: over sipgo's 32 kB read buffer, truncated, unparseable.
		strings.Replace(good, "Max-Forwards: 70\r\n", "X-Pad: "+strings.Repeat("a", 40000)+"\r\n", 1),
		// No Via: an answer could not be addressed (sipgo used to answer
		// it with a 400 of its own, without one).
		drop(good, "Via"),
	}
	for i, msg := range silent {
		if res := rawExchange(t, srv, msg, 500*time.Millisecond); res != nil {
			t.Errorf("silent %d: got %d %s", i, res.StatusCode, res.Reason)
		}
	}
	if got := ts.counter("troika_sip_parse_errors_total") - before; got < float64(len(silent)) {
		t.Errorf("parse errors counted: %v, want >= %d", got, len(silent))
	}
	// sipgo logs each one at Error with the whole datagram: nothing of it
	// at Info, and at Debug only cut values.
	if strings.Contains(ts.logs.String(), strings.Repeat("a", transport.MaxLoggedValue+1)) ||
		(os.Getenv("SIPSTACK_DEBUG") == "" && strings.Contains(ts.logs.String(), "hello world")) {
		t.Errorf("raw datagrams reached the log")
	}
	// 20 kB: within the read buffer, answered.
	big := strings.Replace(good, "Max-Forwards: 70\r\n", "X-Pad: "+strings.Repeat("a", 20000)+"\r\n", 1)
	wantStatus(t, rawExchange(t, srv, big, 3*time.Second), 401, "Unauthorized")
}

// The 200 OK stays whole over UDP even when it is larger than sipgo's
// default 1300-byte limit.
func TestLargeResponseOverUDP(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	p := newPhone(t, "UDP", ts.addr(t, "udp", ts.ip), "1001", "pw1001")
	var contacts []string
	for i := 0; i < 8; i++ {
		contacts = append(contacts, "<sip:1001@10.0.0."+itoa(i+1)+":5060;transport=udp;x-long-parameter="+strings.Repeat("z", 200)+">")
	}
	res := p.register(contacts)
	wantStatus(t, res, 200, "OK")
	if len(contactsOf(res)) != 8 || len(res.String()) < 1500 {
		t.Errorf("got %d contacts in %d bytes", len(contactsOf(res)), len(res.String()))
	}
}

func TestRegisterOverTCP(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	srv := ts.addr(t, "tcp", ts.ip)
	p := newPhone(t, "TCP", srv, "1005", "pw1005")
	wantStatus(t, p.register([]string{"<sip:1005@10.0.0.1;transport=tcp>"}), 200, "OK")
	bs := ts.st.Bindings("1005", time.Now().UnixMilli())
	if len(bs) != 1 || bs[0].Transport != "tcp" || bs[0].Ingress != "tcp:"+srv {
		t.Errorf("bindings %+v", bs)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

var _ = fsm.Binding{}

// Transactions end with their response, so a retransmitted REGISTER whose
// 200 was lost is processed again: it gets the same 200, without a second
// write.
func TestRetransmittedRegister(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	srv := ts.addr(t, "udp", ts.ip)
	c := dial(t, "udp", srv)
	send := func(msg string) *sip.Response {
		t.Helper()
		if _, err := c.Write([]byte(strings.ReplaceAll(msg, "@LOCAL@", c.LocalAddr().String()))); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 65536)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		m, err := sip.ParseMessage(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return m.(*sip.Response)
	}
	extra := "Contact: <sip:1001@10.0.0.1>\r\nContact: <sip:1001@10.0.0.2>;expires=0\r\n"
	first := rawRegister(srv, "1001", "rtx", 1, "UDP", extra)
	chal := send(first)
	wantStatus(t, chal, 401, "")
	wantStatus(t, send(first), 401, "") // a retransmission is challenged again
	second := rawRegister(srv, "1001", "rtx", 2, "UDP", extra+rawAuth(t, chal, "MD5", "sip:"+srv, "1001", "pw1001"))
	ok := send(second)
	wantStatus(t, ok, 200, "OK")
	writes := ts.store.Writes.Load()
	// A real retransmission comes T1 (500 ms) later; one sent at once may
	// still meet the transaction, which answers from memory: resend until
	// the registrar answers it itself.
	seen := ts.counter("troika_sip_register_total", "result", sipmsg.ResultRetransmission)
	var again *sip.Response
	testkit.WaitFor(t, 5*time.Second, "the registrar to answer the retransmission", func() bool {
		again = send(second)
		return ts.counter("troika_sip_register_total", "result", sipmsg.ResultRetransmission) > seen
	})
	wantStatus(t, again, 200, "OK")
	if !slices.Equal(contactsOf(ok), contactsOf(again)) || ts.store.Writes.Load() != writes {
		t.Errorf("retransmission: %q vs %q, %d more writes", contactsOf(ok), contactsOf(again), ts.store.Writes.Load()-writes)
	}
	if ts.counter("troika_sip_register_total", "result", "retransmission") != 1 {
		t.Errorf("retransmission not counted: unauthorized=%v ok=%v", ts.counter("troika_sip_register_total", "result", "unauthorized"), ts.counter("troika_sip_register_total", "result", "ok"))
	}
}

// An operator sees every change of bindings at INFO, and refusals too,
// but a flood of refusals from one source costs one line per result and
// period, the next line counting those not logged.
func TestRegisterOutcomesAreLogged(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, func(c *Config) { c.Registrar.AuthFailuresPerMinute = 5 })
	srv := ts.addr(t, "udp", ts.ip)
	good := newPhone(t, "UDP", srv, "1001", "pw1001")
	wantStatus(t, good.register([]string{"<sip:1001@10.0.0.1>"}), 200, "OK")
	// Refreshes of the same contact are routine: DEBUG only.
	wantStatus(t, good.register([]string{"<sip:1001@10.0.0.1>"}), 200, "OK")
	wantStatus(t, newPhone(t, "UDP", srv, "1001", "pw1001").register([]string{"<sip:1001@10.0.0.1>"}), 200, "OK")
	bad := newPhone(t, "UDP", srv, "1001", "guess")
	for range 30 {
		bad.register([]string{"<sip:1001@10.0.0.1>"})
	}
	lines := ts.logLines
	if n := lines("level=INFO", "msg=registered", "aor=1001", "contacts=1", "expires=3600", "socket=udp:"); n != 1 {
		t.Errorf("%d INFO lines for the registration and its two refreshes, want 1:\n%s", n, ts.logs.String())
	}
	forbidden, limited := lines("REGISTER refused", "result=forbidden"), lines("REGISTER refused", "result=rate_limited")
	if forbidden != 1 || limited != 1 {
		t.Errorf("30 refusals from one source logged %d (forbidden) + %d (rate_limited) lines, want 1 + 1", forbidden, limited)
	}
	held := int(ts.counter("troika_sip_register_total", "result", "rate_limited")) - 1
	ts.clock.Advance(11 * time.Second)
	bad.register([]string{"<sip:1001@10.0.0.1>"})
	if n := lines("REGISTER refused", "result=rate_limited", fmt.Sprintf("not_logged_since_last=%d ", held)); held < 20 || n != 1 {
		t.Errorf("the line after the period does not count the %d rate-limited refusals not logged:\n%s", held, ts.logs.String())
	}
}
