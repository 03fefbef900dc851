package dispatch

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/troika-sip/troika/sipstack/sipmsg"
)

func TestScanMessage(t *testing.T) {
	long := strings.Repeat("x", sipmsg.MaxCallID+1)
	cases := []struct {
		name     string
		msg      string
		callID   string // "" = not ok
		response bool
		method   string
		toTag    bool
	}{
		{"register", "REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nTo: <sip:1@h>\r\nCall-ID: abc@host\r\nCSeq: 1 REGISTER\r\n\r\n",
			"abc@host", false, "REGISTER", false},
		{"compact i", "INVITE sip:h SIP/2.0\r\nv: SIP/2.0/UDP a\r\nt: <sip:1@h>\r\ni: short-1\r\n\r\n", "short-1", false, "INVITE", false},
		{"upper case", "BYE sip:h SIP/2.0\r\nCALL-ID: UP\r\nTO: <sip:1@h>;TAG=9\r\n\r\n", "UP", false, "BYE", true},
		{"space before colon", "BYE sip:h SIP/2.0\r\nCall-ID   :   spaced  \r\n\r\n", "spaced", false, "BYE", false},
		{"tab after colon", "BYE sip:h SIP/2.0\r\ni:\tx1\r\n\r\n", "x1", false, "BYE", false},
		{"folded value", "BYE sip:h SIP/2.0\r\nCall-ID:\r\n   folded-1\r\nTo: a\r\n\r\n", "folded-1", false, "BYE", false},
		{"folded whitespace inside", "BYE sip:h SIP/2.0\r\nCall-ID: a\r\n b\r\n\r\n", "", false, "", false},
		{"folded other header", "BYE sip:h SIP/2.0\r\nSubject: x\r\n Call-ID: no\r\nCall-ID: yes\r\n\r\n", "yes", false, "BYE", false},
		{"folded to tag", "ACK sip:h SIP/2.0\r\nTo: <sip:1@h>\r\n ;tag=abc\r\ni: c\r\n\r\n", "c", false, "ACK", true},
		{"bare LF", "OPTIONS sip:h SIP/2.0\nCall-ID: lf-1\n\n", "lf-1", false, "OPTIONS", false},
		{"response", "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a\r\nTo: <sip:b@h>;tag=x\r\nCall-ID: r1\r\nCSeq: 1 INVITE\r\n\r\n", "r1", true, "", true},
		{"two Call-IDs are not routed", "BYE sip:h SIP/2.0\r\nCall-ID: one\r\ni: two\r\n\r\n", "", false, "", false},
		{"body ignored", "MESSAGE sip:h SIP/2.0\r\nContent-Length: 12\r\n\r\nCall-ID: body", "", false, "", false},
		{"tag in URI is not a tag", "INVITE sip:h SIP/2.0\r\nTo: <sip:1@h;tag=uri>\r\nCall-ID: c\r\n\r\n", "c", false, "INVITE", false},
		{"tagx is not a tag", "INVITE sip:h SIP/2.0\r\nTo: <sip:1@h>;tagx=1\r\nCall-ID: c\r\n\r\n", "c", false, "INVITE", false},
		{"tag with spaces", "INVITE sip:h SIP/2.0\r\nTo: <sip:1@h> ; tag = 1\r\nCall-ID: c\r\n\r\n", "c", false, "INVITE", true},
		{"no Call-ID", "BYE sip:h SIP/2.0\r\nCSeq: 1 BYE\r\n\r\n", "", false, "", false},
		{"empty Call-ID", "BYE sip:h SIP/2.0\r\nCall-ID:   \r\n\r\n", "", false, "", false},
		{"Call-ID with control char", "BYE sip:h SIP/2.0\r\nCall-ID: a\x00b\r\n\r\n", "", false, "", false},
		{"Call-ID too long", "BYE sip:h SIP/2.0\r\nCall-ID: " + long + "\r\n\r\n", "", false, "", false},
		{"name only", "BYE sip:h SIP/2.0\r\nCall-ID\r\n\r\n", "", false, "", false},
		{"Call-IDx", "BYE sip:h SIP/2.0\r\nCall-IDx: no\r\n\r\n", "", false, "", false},
		{"no start line", "Call-ID: c\r\n\r\n", "", false, "", false},
		{"keepalive", "\r\n\r\n", "", false, "", false},
		{"empty", "", "", false, "", false},
		{"garbage", "\x00\x01\x02\xff\xfe", "", false, "", false},
		{"no line end", "BYE sip:h SIP/2.0", "", false, "", false},
		{"leading space start line", " BYE sip:h SIP/2.0\r\nCall-ID: c\r\n\r\n", "", false, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, ok := scanMessage([]byte(c.msg))
			if c.callID == "" {
				if ok {
					t.Fatalf("scanned Call-ID %q from a message that has no usable one", info.callID)
				}
				return
			}
			if !ok || string(info.callID) != c.callID || info.response != c.response || string(info.method) != c.method || info.toTag != c.toTag {
				t.Fatalf("got ok=%v callID=%q response=%v method=%q toTag=%v, want %q %v %q %v",
					ok, info.callID, info.response, info.method, info.toTag, c.callID, c.response, c.method, c.toTag)
			}
		})
	}
}

func TestScanMessageAllocatesNothing(t *testing.T) {
	msg := []byte("INVITE sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:1@h>;tag=1\r\nTo: <sip:2@h>\r\nCall-ID: abc@host\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	if n := testing.AllocsPerRun(100, func() { scanMessage(msg) }); n != 0 {
		t.Fatalf("%v allocations per scan", n)
	}
}

// FuzzScanCallID checks the scan against sipgo's parser: whenever both
// read a Call-ID, they agree; the scan never panics and always returns a
// slice of its input. Seeds: testdata/fuzz/FuzzScanCallID.
func FuzzScanCallID(f *testing.F) {
	f.Add([]byte("REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:1@h>;tag=1\r\nTo: <sip:1@h>\r\nCall-ID: abc@host\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\ni: tk1.00112233445566ff.abcdefghijklmnopqrst.sip1\r\nt: <sip:b@h>;tag=x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, ok := scanMessage(data)
		if !ok {
			return
		}
		if len(info.callID) == 0 || !bytes.Contains(data, info.callID) {
			t.Fatalf("Call-ID %q is not a piece of the message", info.callID)
		}
		if _, _, mok := parseMarker(info.callID); mok {
			callIDKey(info.callID) // must not panic
		}
		m, err := sip.ParseMessage(data)
		if err != nil {
			return
		}
		// sipgo splits lines at CRLF only and does not unfold: compare
		// only plain messages.
		if bytes.Contains(bytes.ReplaceAll(data, []byte("\r\n"), nil), []byte("\n")) || bytes.Contains(data, []byte("\r\n ")) ||
			bytes.Contains(data, []byte("\r\n\t")) {
			return
		}
		if cid := m.CallID(); cid != nil && cid.Value() != string(info.callID) {
			t.Fatalf("scan found Call-ID %q, sipgo %q", info.callID, cid.Value())
		}
	})
}
