package billing

import (
	"math"
	"testing"
)

func TestParseMoney(t *testing.T) {
	good := map[string]int64{
		"10": 10_000_000, "10.00": 10_000_000, "10.5": 10_500_000, "0.000001": 1,
		"-0.25": -250_000, "+3": 3_000_000, ".5": 500_000, "1000000000": MaxAmount,
	}
	for in, want := range good {
		got, err := ParseMoney(in)
		if err != nil || got != want {
			t.Errorf("ParseMoney(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-", ".", "10.", "1e3", "1,50", " 1", "0.0000001", "NaN", "12345678901234", "1000000000.000001", "1.2.3", "--1"} {
		if got, err := ParseMoney(in); err == nil {
			t.Errorf("ParseMoney(%q) = %d, want an error", in, got)
		}
	}
}

func TestFormatMoney(t *testing.T) {
	cases := map[int64]string{
		0: "0.00", 10_000_000: "10.00", 1_234_567: "1.234567", -250_000: "-0.25", 1: "0.000001",
		math.MinInt64 + 1: "-9223372036854.775807",
	}
	for in, want := range cases {
		if got := FormatMoney(in); got != want {
			t.Errorf("FormatMoney(%d) = %q, want %q", in, got, want)
		}
		if back, err := ParseMoney(want); in > -1e15 && (err != nil || back != in) {
			t.Errorf("round trip %d -> %q -> %d, %v", in, want, back, err)
		}
	}
}

func FuzzParseMoney(f *testing.F) {
	for _, s := range []string{"10.00", "-0.25", "0.000001", "1e3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseMoney(s)
		if err != nil {
			return
		}
		if back, err := ParseMoney(FormatMoney(v)); err != nil || back != v {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, v, FormatMoney(v), back, err)
		}
	})
}
