package sipmsg

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

// The checks of a well-formed request allocate nothing for header names.
func TestHeaderNameChecksAllocateNothing(t *testing.T) {
	msg, err := sip.ParseMessage([]byte("REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:1@h>;tag=a\r\n" +
		"To: <sip:1@h>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	if n := testing.AllocsPerRun(100, func() { duplicateHeader(req) }); n != 0 {
		t.Errorf("duplicateHeader: %v allocations", n)
	}
	if duplicateHeader(req) != "" {
		t.Error("a duplicate found in a request without one")
	}
}
