package registrar

import (
	"math"
	"strings"
	"testing"

	"github.com/troika-sip/troika/sipstack/sipmsg"
)

func TestExpiresFor(t *testing.T) {
	const def, min, max = 3600, 60, 7200
	cases := []struct {
		name      string
		c         sipmsg.ContactSpec
		hdr       int
		hasHdr    bool
		want      int
		wantBrief bool
	}{
		{"default", sipmsg.ContactSpec{}, 0, false, def, false},
		{"header", sipmsg.ContactSpec{}, 600, true, 600, false},
		{"param wins over header", sipmsg.ContactSpec{Expires: 120, HasExpires: true}, 600, true, 120, false},
		{"param 0 removes", sipmsg.ContactSpec{Expires: 0, HasExpires: true}, 600, true, 0, false},
		{"header 0 removes", sipmsg.ContactSpec{}, 0, true, 0, false},
		{"below min", sipmsg.ContactSpec{}, 59, true, 59, true},
		{"param below min", sipmsg.ContactSpec{Expires: 1, HasExpires: true}, 3600, true, 1, true},
		{"at min", sipmsg.ContactSpec{}, 60, true, 60, false},
		{"above max clamped", sipmsg.ContactSpec{}, 100000, true, max, false},
		{"huge clamped", sipmsg.ContactSpec{Expires: math.MaxUint32, HasExpires: true}, 0, false, max, false},
	}
	for _, c := range cases {
		got, brief := expiresFor(c.c, c.hdr, c.hasHdr, def, min, max)
		if got != c.want || brief != c.wantBrief {
			t.Errorf("%s: got %d brief=%v, want %d brief=%v", c.name, got, brief, c.want, c.wantBrief)
		}
	}
	for in, want := range map[string]int{"0": 0, "3600": 3600, " 42 ": 42, "99999999999999999999": math.MaxUint32} {
		if got, ok := sipmsg.ParseDelta(in); !ok || got != want {
			t.Errorf("parseDelta(%q) = %d %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "-1", "1.5", "abc", "0x10", "+5", strings.Repeat("9", 65)} {
		if _, ok := sipmsg.ParseDelta(in); ok {
			t.Errorf("parseDelta(%q) accepted", in)
		}
	}
}
