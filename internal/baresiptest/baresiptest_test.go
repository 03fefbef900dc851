package baresiptest

import (
	"strings"
	"testing"
)

// A stretch of a real baresip -s log (colours and all): the messages, who
// sent them where, and their CSeq.
func TestParseTrace(t *testing.T) {
	log := "baresip is ready.\n" +
		"\x1b[36;1m#\nTLS 127.0.0.1:59880 -> 127.0.0.82:5061\nREGISTER sip:127.0.0.82:5061;transport=tls SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS 127.0.0.1:40075;branch=z9hG4bK1;rport\r\nCSeq: 8127 REGISTER\r\nContent-Length: 0\r\n\r\n\x1b[;m\n" +
		"\x1b[36;1m#\nTLS 127.0.0.82:5061 -> 127.0.0.1:59880\nSIP/2.0 200 OK\r\nCSeq: 8127 REGISTER\r\n\r\n\x1b[;m\n" +
		"1002@127.0.0.82: {0/TLS/v4} 200 OK (troika) [1 binding]\n" +
		"\x1b[36;1m#\nTLS 127.0.0.82:5061 -> 127.0.0.1:59880\nBYE sip:1002@127.0.0.1:59880;transport=tls SIP/2.0\r\n" +
		"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n\x1b[;m\n"
	got := ParseTrace(ansi.ReplaceAllString(log, ""))
	want := []struct{ str, method, cseq string }{
		{"TLS 127.0.0.1:59880 -> 127.0.0.82:5061: REGISTER sip:127.0.0.82:5061;transport=tls SIP/2.0", "REGISTER", "8127 REGISTER"},
		{"TLS 127.0.0.82:5061 -> 127.0.0.1:59880: SIP/2.0 200 OK", "", "8127 REGISTER"},
		{"TLS 127.0.0.82:5061 -> 127.0.0.1:59880: BYE sip:1002@127.0.0.1:59880;transport=tls SIP/2.0", "BYE", "2 BYE"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].String() != w.str || got[i].Method() != w.method || got[i].CSeq() != w.cseq {
			t.Errorf("message %d: %q method %q cseq %q, want %q %q %q", i, got[i], got[i].Method(), got[i].CSeq(), w.str, w.method, w.cseq)
		}
	}
}

// The account lines the README shows.
func TestAccountLine(t *testing.T) {
	for _, c := range []struct {
		a    Account
		want string
	}{
		{Account{User: "1001", Password: "PW", Server: "127.0.0.1:5060"},
			"<sip:1001@127.0.0.1:5060>;auth_pass=PW;regint=600;answermode=auto"},
		{Account{User: "1002", Password: "PW", Server: "127.0.0.2:5061", Transport: "tls", Manual: true, RegInterval: 60},
			"<sip:1002@127.0.0.2:5061;transport=tls>;auth_pass=PW;regint=60;answermode=manual"},
	} {
		if got := c.a.Line(); got != c.want || !strings.HasPrefix(got, "<sip:") {
			t.Errorf("%+v: %q, want %q", c.a, got, c.want)
		}
	}
}
