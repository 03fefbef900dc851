package transport

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestCompactSeparators(t *testing.T) {
	cases := []struct {
		in, seps string
		angles   bool
		want     string
	}{
		{"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx", "/;=,:", false, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx"},
		{"SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw", "/;=,:", false, "SIP/2.0/UDP 192.0.2.2;branch=390skdjuw"},
		{"SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  , SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239",
			"/;=,:", false, "SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8,SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239"},
		{"SIP/2.0/UDP h : 5060 ; x = \"a ; b\"", "/;=,:", false, "SIP/2.0/UDP h:5060;x=\"a ; b\""},
		{`"J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 98asjd8`, ";=,", true,
			`"J Rosenberg \\\""       <sip:jdrosen@example.com>;tag=98asjd8`},
		{"sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n", ";=,", true, "sip:vivekg@chair-dnrc.example.com;tag=1918181833n"},
		{`"Watson, Thomas" < sip:t.watson@example.org >`, ";=,", true, `"Watson, Thomas" < sip:t.watson@example.org >`},
		{`A "b \" ; c" <sip:x ; y> ; t = 1`, ";=,", true, `A "b \" ; c" <sip:x ; y>;t=1`},
	}
	for _, c := range cases {
		if got := CompactSeparators(c.in, c.seps, c.angles); got != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.in, got, c.want)
		}
	}
	v := "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx"
	if n := testing.AllocsPerRun(100, func() { CompactSeparators(v, "/;=,:", false) }); n != 0 {
		t.Errorf("%v allocations for a value with nothing to compact", n)
	}
}

// Several Via values on one line, spaced out: each is read, and sipgo's
// protocol for the next one's place (an index in its own error type)
// still holds.
func TestNewParserVia(t *testing.T) {
	msg := "OPTIONS sip:x@h SIP/2.0\r\n" +
		"v:  SIP  / 2.0  / TCP     a.example.com   ;\r\n  branch  =   z9hG4bK1  ,\r\n SIP / 2.0 / UDP b.example.com:5070 ; rport ; maddr = 10.0.0.1 , SIP/2.0/UDP c.example.com;branch=z9hG4bK3\r\n" +
		"Via: SIP/2.0/UDP d.example.com;branch=z9hG4bK4\r\n" +
		"From: A <sip:a@h> ; tag = 1\r\nTo: sip:b@h\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	m, err := NewParser().ParseSIP([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	var got []string
	for _, h := range req.GetHeaders("Via") {
		got = append(got, h.Value())
	}
	want := []string{
		"SIP/2.0/TCP a.example.com;branch=z9hG4bK1",
		"SIP/2.0/UDP b.example.com:5070;rport;maddr=10.0.0.1",
		"SIP/2.0/UDP c.example.com;branch=z9hG4bK3",
		"SIP/2.0/UDP d.example.com;branch=z9hG4bK4",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Vias:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if tag, _ := req.From().Params.Get("tag"); tag != "1" || req.From().DisplayName != "A" {
		t.Errorf("From %q: tag %q", req.From().Value(), tag)
	}
}
