package sipmsg_test

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

const goodOptions = "OPTIONS sip:u@example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa\r\n" +
	"From: <sip:a@example.com>;tag=1\r\nTo: <sip:u@example.com>\r\n" +
	"Call-ID: c1\r\nCSeq: 7 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"

func TestCheckRequest(t *testing.T) {
	p := transport.NewParser()
	edit := func(old, new string) string { return strings.Replace(goodOptions, old, new, 1) }
	cases := []struct {
		msg    string
		code   int // 0: accepted
		reason string
		bad    string
	}{
		{msg: goodOptions},
		{msg: edit("SIP/2.0\r\n", "SIP/7.0\r\n"), code: 505, reason: "Version Not Supported", bad: sipmsg.BadVersion},
		{msg: edit("sip:u@example.com SIP", "tel:+15551234 SIP"), code: 416, reason: "Unsupported URI Scheme", bad: sipmsg.BadURIScheme},
		{msg: edit("sip:u@example.com SIP", "SIPS:u@example.com SIP")},
		{msg: edit("sip:u@example.com SIP", "sip:u@example.com?Route=%3Csip:x%3E SIP"), code: 400,
			reason: "Malformed Request-URI: headers are not allowed", bad: sipmsg.BadRequestLine},
		{msg: edit("Call-ID: c1\r\n", "Call-ID: c1\r\ni: c2\r\n"), code: 400, reason: "Multiple Call-ID headers", bad: sipmsg.BadDuplicateHeader},
		{msg: edit("Content-Length: 0\r\n", "l: 0\r\nContent-Length: 0\r\n"), code: 400, reason: "Multiple Content-Length headers", bad: sipmsg.BadDuplicateHeader},
		{msg: edit("To: <sip:u@example.com>\r\n", "To: <sip:u@example.com>\r\nt: <sip:v@example.com>\r\n"), code: 400, reason: "Multiple To headers", bad: sipmsg.BadDuplicateHeader},
		{msg: edit("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nExpires: 1\r\nExpires: 2\r\n"), code: 400, reason: "Multiple Expires headers", bad: sipmsg.BadDuplicateHeader},
		{msg: edit("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nRoute: <sip:a>\r\nRoute: <sip:b>\r\nContact: <sip:a>\r\nContact: <sip:b>\r\n")},
		{msg: edit("Call-ID: c1\r\n", "")},
		{msg: edit("From: <sip:a@example.com>", "From: Bell, Alexander <sip:a@example.com>"), code: 400,
			reason: "Malformed From: unquoted display name", bad: sipmsg.BadMalformedHeader},
		{msg: edit("To: <sip:u@example.com>", "To: Watson/Thomas <sip:u@example.com>"), code: 400,
			reason: "Malformed To: unquoted display name", bad: sipmsg.BadMalformedHeader},
		{msg: edit("From: <sip:a@example.com>", "From: caller<sip:a@example.com>")},
		{msg: edit("From: <sip:a@example.com>", "From: token1~` token2'+_ token3*%!.- <sip:a@example.com>")},
		{msg: edit("From: <sip:a@example.com>", `From: "Bell, Alexander" <sip:a@example.com>`)},
		{msg: edit("From: <sip:a@example.com>;tag=1", "From: sip:a@example.com ; tag = 1")},
		{msg: edit("CSeq: 7 OPTIONS", "CSeq: 7 INVITE"), code: 400, reason: "CSeq method does not match the request", bad: sipmsg.BadInvalid},
	}
	for i, c := range cases {
		m, err := p.ParseSIP([]byte(c.msg))
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		req := m.(*sip.Request)
		r := sipmsg.CheckRequest(req)
		if i == 10 { // no Call-ID
			if r == nil || r.Reason != "Missing Call-ID" || r.Bad != sipmsg.BadMissingHeader {
				t.Errorf("no Call-ID: %+v", r)
			}
			continue
		}
		switch {
		case c.code == 0 && r != nil:
			t.Errorf("%d: refused %d %s\n%s", i, r.Code, r.Reason, c.msg)
		case c.code != 0 && (r == nil || r.Code != c.code || r.Reason != c.reason || r.Bad != c.bad):
			t.Errorf("%d: got %+v, want %d %s (%s)", i, r, c.code, c.reason, c.bad)
		}
		if !sipmsg.EchoSafe(req) {
			t.Errorf("%d: not echo-safe", i)
		}
	}
}

func TestCheckRequire(t *testing.T) {
	msg := strings.Replace(goodOptions, "Max-Forwards: 70\r\n", "Require: Path, nothingSupportsThis\r\nRequire: fooBar\r\n", 1)
	m, err := transport.NewParser().ParseSIP([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	r := sipmsg.CheckRequire(m.(*sip.Request), map[string]bool{"path": true})
	if r == nil || r.Code != 420 || r.Bad != sipmsg.BadExtension || len(r.Headers) != 1 || r.Headers[0].Value() != "nothingSupportsThis, fooBar" {
		t.Errorf("got %+v", r)
	}
}

func TestAlnumOr(t *testing.T) {
	for _, tc := range []struct {
		s, others string
		want      bool
	}{
		{"", "-", false},
		{"aZ09", "", true},
		{"a-b.c", "-.", true},
		{"a-b.c", "-", false},
		{"a b", " ", true},
		{"a b", "-", false},
		{"é", "", false},
		{"+44", "+", true},
	} {
		if got := sipmsg.AlnumOr(tc.s, tc.others); got != tc.want {
			t.Errorf("AlnumOr(%q, %q) = %v, want %v", tc.s, tc.others, got, tc.want)
		}
	}
}
