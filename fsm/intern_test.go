package fsm

import (
	"bytes"
	"fmt"
	"testing"
	"unsafe"
)

func sameString(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

// Records stored share the values they have in common, whether they come
// from commands or from a snapshot; a binding's AOR is its account's id.
// The values stay what they were.
func TestInterning(t *testing.T) {
	s := benchState(t, 3)
	for i := range 3 {
		mustApply(t, s, benchRegister(i, 1, t0))
	}
	check := func(s *State) {
		t.Helper()
		a, b := s.bindings["u000000"][0], s.bindings["u000002"][0]
		if !sameString(a.Ingress, b.Ingress) || !sameString(a.Transport, b.Transport) || !sameString(a.UserAgent, b.UserAgent) {
			t.Error("two bindings hold their own copies of the same ingress, transport or user agent")
		}
		if !sameString(a.AOR, s.accounts["u000000"].ID) {
			t.Error("a binding's AOR is not its account's id")
		}
		x, y := s.accounts["u000000"], s.accounts["u000001"]
		if !sameString(x.Billing, y.Billing) || !sameString(x.TariffOut, y.TariffOut) {
			t.Error("two accounts hold their own copies of the same billing mode or tariff")
		}
		if a.Ingress != "udp:127.0.0.30:5060" || a.UserAgent != "SIPp" || x.TariffOut != "std" || a.AOR != "u000000" {
			t.Errorf("values changed: %+v %+v", a, x)
		}
	}
	check(s)
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	restored := New()
	if err := restored.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	check(restored)
	// Values phones choose do not grow the table without end.
	for i := range maxInterned + 10 {
		s.intern(fmt.Sprintf("agent %d", i))
	}
	if len(s.strs) > maxInterned {
		t.Errorf("%d interned strings, bound %d", len(s.strs), maxInterned)
	}
}
