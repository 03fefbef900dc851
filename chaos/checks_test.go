//go:build linux

package chaos

import (
	"slices"
	"testing"
)

// The bank checker's list of answered calls comes from SIPp's message
// log: received 200s to an INVITE, not the 407 before them, not a 200 to
// a BYE (of a call whose answer was lost), not a 200 SIPp sent.
func TestAnsweredCallIDs(t *testing.T) {
	const log = `----------------------------------------------- 2026-12-02 02:37:39.234424
UDP message sent (502 bytes):

INVITE sip:callee1@10.77.88.150:5060 SIP/2.0
Call-ID: 1-17046@10.77.88.200
CSeq: 1 INVITE

----------------------------------------------- 2026-12-02 02:37:39.234802
UDP message received [438] bytes :

SIP/2.0 407 Proxy Authentication Required
Call-ID: 1-17046@10.77.88.200
CSeq: 1 INVITE

----------------------------------------------- 2026-12-02 02:37:39.240000
UDP message received [600] bytes :

SIP/2.0 200 OK
call-id: 1-17046@10.77.88.200
CSeq: 2 INVITE

----------------------------------------------- 2026-12-02 02:37:39.240100
UDP message received [600] bytes :

SIP/2.0 200 OK
i: 1-17046@10.77.88.200
CSeq: 2 INVITE

----------------------------------------------- 2026-12-02 02:37:40.000000
UDP message received [300] bytes :

SIP/2.0 200 OK
Call-ID: 2-17046@10.77.88.200
CSeq: 3 BYE

----------------------------------------------- 2026-12-02 02:37:41.000000
UDP message sent [300] bytes :

SIP/2.0 200 OK
Call-ID: 3-17046@10.77.88.200
CSeq: 2 INVITE

----------------------------------------------- 2026-12-02 02:37:42.000000
UDP message received [600] bytes :

SIP/2.0 200 OK
Call-ID: 4-17046@10.77.88.200
CSeq: 2 INVITE
`
	got := answeredCallIDs(log)
	if want := []string{"1-17046@10.77.88.200", "4-17046@10.77.88.200"}; !slices.Equal(got, want) {
		t.Fatalf("answeredCallIDs = %q, want %q", got, want)
	}
}

// The set checker compares bindings by account and contact address.
func TestContactHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"sip:ph0001@10.64.3.200:15061":               "10.64.3.200:15061",
		"<sip:ph0001@10.64.3.200:15061>":             "10.64.3.200:15061",
		"sip:ph0001@10.64.3.200:15061;transport=udp": "10.64.3.200:15061",
		"sip:10.64.3.200:15061":                      "10.64.3.200:15061",
		"sips:a@[2001:db8::1]:5061;ob":               "[2001:db8::1]:5061",
	} {
		if got := contactHostPort(in); got != want {
			t.Errorf("contactHostPort(%q) = %q, want %q", in, got, want)
		}
	}
}
