package sipmsg_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

func TestScreenDatagram(t *testing.T) {
	p := transport.NewParser()
	const src = "10.0.0.1:40000"
	edit := func(old, new string) string { return strings.Replace(goodOptions, old, new, 1) }
	cases := []struct {
		name, msg string
		pass      bool   // handed to sipgo as it is
		code      int    // the stateless answer; 0: none
		reason    string //
		dest      string
		bad       string
		drop      bool // counted as unparseable
	}{
		{name: "good", msg: goodOptions, pass: true},
		{name: "keepalive", msg: "\r\n\r\n", pass: true},
		{name: "response", msg: "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", pass: true},
		{name: "garbage", msg: "hello world\r\n\r\n", drop: true},
		{name: "unparseable response", msg: "SIP/2.0 99999999999 X\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\n\r\n", drop: true},
		{name: "request line spaces", msg: edit("OPTIONS sip:u@example.com SIP/2.0", "OPTIONS  sip:u@example.com SIP/2.0"),
			code: 400, reason: "Malformed Request-Line", dest: "10.0.0.1:5062", bad: sipmsg.BadRequestLine},
		{name: "trailing space", msg: edit("SIP/2.0\r\n", "SIP/2.0 \r\n"), code: 400, reason: "Malformed Request-Line", dest: "10.0.0.1:5062", bad: sipmsg.BadRequestLine},
		{name: "angle URI", msg: edit("sip:u@example.com SIP", "<sip:u@example.com> SIP"), code: 400, reason: "Malformed Request-URI", dest: "10.0.0.1:5062", bad: sipmsg.BadRequestLine},
		{name: "scheme", msg: edit("sip:u@example.com SIP", "soap.beep://192.0.2.103:3002 SIP"), code: 416, reason: "Unsupported URI Scheme", dest: "10.0.0.1:5062", bad: sipmsg.BadURIScheme},
		{name: "version and CSeq", msg: edit("SIP/2.0\r\n", "SIP/3.0\r\n"), pass: true}, // parses: the handler answers 505
		{name: "big CSeq", msg: edit("CSeq: 7", "CSeq: 99999999999"), code: 400, reason: "Malformed CSeq", dest: "10.0.0.1:5062", bad: sipmsg.BadMalformedHeader},
		{name: "negative length", msg: edit("Content-Length: 0", "Content-Length: -1"), code: 400, reason: "Malformed Content-Length", dest: "10.0.0.1:5062", bad: sipmsg.BadContentLength},
		{name: "long length", msg: edit("Content-Length: 0", "Content-Length: 10"), code: 400, reason: "Content-Length larger than the message", dest: "10.0.0.1:5062", bad: sipmsg.BadContentLength},
		{name: "bad CSeq", msg: edit("CSeq: 7", "CSeq: x"), code: 400, reason: "Malformed CSeq", dest: "10.0.0.1:5062", bad: sipmsg.BadMalformedHeader},
		{name: "rport source port", msg: edit(";branch=z9hG4bKa", ";rport;branch=z9hG4bKa\r\nMax-Forwards: many"), code: 400, reason: "Malformed Max-Forwards", dest: src, bad: sipmsg.BadMalformedHeader},
		{name: "default port", msg: strings.Replace(edit("10.0.0.1:5062", "10.0.0.1"), "CSeq: 7", "CSeq: x", 1),
			code: 400, reason: "Malformed CSeq", dest: "10.0.0.1:5060", bad: sipmsg.BadMalformedHeader},
		{name: "bad Via", msg: edit(";branch=z9hG4bKa", ";;,;,,"), drop: true},
		{name: "no Via, bad CSeq", msg: strings.Replace(edit("CSeq: 7", "CSeq: x"), "Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa\r\n", "", 1), drop: true},
		{name: "ACK", msg: strings.ReplaceAll(edit("CSeq: 7", "CSeq: x"), "OPTIONS", "ACK"), drop: true},
		{name: "no Via", msg: edit("Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa\r\n", ""), drop: true},
		{name: "RFC 2543 Via without From tag", msg: strings.Replace(edit(";branch=z9hG4bKa", ""), ";tag=1", "", 1),
			code: 400, reason: "Missing From tag", dest: "10.0.0.1:5062", bad: sipmsg.BadMissingHeader},
		{name: "no CSeq", msg: edit("CSeq: 7 OPTIONS\r\n", ""), code: 400, reason: "Missing or malformed CSeq", dest: "10.0.0.1:5062", bad: sipmsg.BadMalformedHeader},
		{name: "unsafe echo", msg: strings.Replace(edit("CSeq: 7", "CSeq: x"), "Call-ID: c1", "Call-ID: c1\x00", 1), drop: true},
	}
	for _, c := range cases {
		v := sipmsg.ScreenDatagram(p, []byte(c.msg), src)
		if c.pass != (v.Pass != nil) || (c.pass && !bytes.Equal(v.Pass, []byte(c.msg))) {
			t.Errorf("%s: passed %q", c.name, v.Pass)
		}
		if c.drop != v.Unparseable || (c.code == 0) != (v.Response == nil) {
			t.Errorf("%s: unparseable %v, response %q", c.name, v.Unparseable, v.Response)
			continue
		}
		if v.Response == nil {
			continue
		}
		m, err := sip.ParseMessage(v.Response)
		if err != nil {
			t.Errorf("%s: answer does not parse: %v\n%s", c.name, err, v.Response)
			continue
		}
		res := m.(*sip.Response)
		if res.StatusCode != c.code || res.Reason != c.reason || v.Dest != c.dest || v.Bad != c.bad || res.Via() == nil {
			t.Errorf("%s: %d %s to %s (%s), want %d %s to %s (%s)\n%s", c.name, res.StatusCode, res.Reason, v.Dest, v.Bad,
				c.code, c.reason, c.dest, c.bad, v.Response)
		}
	}

	// Headers ending with the datagram: the empty line is added.
	short := strings.TrimSuffix(goodOptions, "\r\n")
	if v := sipmsg.ScreenDatagram(p, []byte(short), src); string(v.Pass) != goodOptions {
		t.Errorf("no empty line: passed %q", v.Pass)
	}
	// The good path does not copy the datagram.
	data := []byte(goodOptions)
	if v := sipmsg.ScreenDatagram(p, data, src); &v.Pass[0] != &data[0] {
		t.Errorf("the datagram was copied")
	}
}

// The screen parses every datagram once more than sipgo does: its cost
// next to that parse.
func BenchmarkScreenDatagram(b *testing.B) {
	p := transport.NewParser()
	data := []byte(goodOptions)
	b.Run("screen", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sipmsg.ScreenDatagram(p, data, "10.0.0.1:5060")
		}
	})
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.ParseSIP(data)
		}
	})
}
