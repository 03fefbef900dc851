package dispatch

import (
	"net/netip"
	"testing"
)

// benchRegister is a REGISTER as SIPp's reg scenario sends it, with
// credentials: what a dispatcher reads most.
const benchRegister = "REGISTER sip:127.0.0.51:5060 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.28:5060;branch=z9hG4bK-4242-17-2\r\n" +
	"From: <sip:u000017@127.0.0.51>;tag=4242SIPpTag0017\r\n" +
	"To: <sip:u000017@127.0.0.51>\r\n" +
	"Call-ID: 17-4242@127.0.0.28\r\n" +
	"CSeq: 2 REGISTER\r\n" +
	"Contact: <sip:u000017@127.0.0.28:5060>\r\n" +
	"Max-Forwards: 70\r\n" +
	"Expires: 3600\r\n" +
	"User-Agent: SIPp\r\n" +
	"Authorization: Digest username=\"u000017\",realm=\"troika\",cnonce=\"6b8b4567\",nc=00000001,qop=auth," +
	"uri=\"sip:127.0.0.51:5060\",nonce=\"AAABjN2xJ0B9cHr2c3bWq8Ug0Y3e5Hq1\",response=\"6629fae49393a05397450978507c4ef1\",algorithm=MD5\r\n" +
	"Content-Length: 0\r\n\r\n"

// BenchmarkDispatch: the dispatcher's work per datagram: the Call-ID
// scan, and the frame that carries it to another node, encoded and
// decoded. Run with
//
//	go test ./sipstack/dispatch -run '^$' -bench . -benchmem
func BenchmarkDispatch(b *testing.B) {
	msg := []byte(benchRegister)
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if _, ok := scanMessage(msg); !ok {
				b.Fatal("no Call-ID")
			}
		}
	})
	f := dispatchFrame{kind: frameIn, stamp: 1_700_000_000_000_000_000, socket: "udp:127.0.0.51:5060",
		peer: netip.MustParseAddrPort("127.0.0.28:5060"), payload: msg}
	buf := make([]byte, 0, frameSize(f))
	b.Run("frame-encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = appendFrame(buf[:0], f)
		}
	})
	enc := appendFrame(nil, f)
	b.Run("frame-decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeFrame(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
