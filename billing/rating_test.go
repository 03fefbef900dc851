package billing

import (
	"errors"
	"testing"
)

var (
	r6060    = Rate{PerMinute: 100_000, FirstInterval: 60, NextInterval: 60}                                   // 0.10/min, whole minutes
	r11      = Rate{PerMinute: 60_000, FirstInterval: 1, NextInterval: 1}                                      // 0.06/min = 1000 µ/s
	rFee     = Rate{PerMinute: 120_000, ConnectFee: 50_000, FirstInterval: 30, NextInterval: 6}                // 30/6 with a fee
	rFree    = Rate{PerMinute: 60_000, FirstInterval: 1, NextInterval: 1, FreeSeconds: 10}                     // 10 free seconds
	rOdd     = Rate{PerMinute: 70_001, FirstInterval: 1, NextInterval: 1}                                      // rounding up
	rFreeFee = Rate{PerMinute: 60_000, ConnectFee: 1_000, FirstInterval: 60, NextInterval: 60, FreeSeconds: 5} // everything
)

func TestCharge(t *testing.T) {
	cases := []struct {
		name    string
		r       Rate
		d       int
		seconds int
		amount  int64
	}{
		{"60/60 zero", r6060, 0, 0, 0},
		{"60/60 one second is a minute", r6060, 1, 60, 100_000},
		{"60/60 exactly a minute", r6060, 60, 60, 100_000},
		{"60/60 61 s is two minutes", r6060, 61, 120, 200_000},
		{"1/1 per second", r11, 37, 37, 37_000},
		{"fee + first interval", rFee, 5, 30, 50_000 + 60_000},
		{"fee + 30 + 6", rFee, 31, 36, 50_000 + 72_000},
		{"fee + 30 + 12", rFee, 41, 42, 50_000 + 84_000},
		{"inside free seconds", rFree, 10, 0, 0},
		{"after free seconds", rFree, 11, 1, 1_000},
		{"rounding up to a micro-unit", rOdd, 1, 1, 1_167}, // 70001/60 = 1166.68
		{"free + fee + 60/60", rFreeFee, 66, 120, 1_000 + 120_000},
		{"free seconds still pay the fee", rFreeFee, 3, 0, 1_000},
	}
	for _, c := range cases {
		if got := c.r.ChargedSeconds(c.d); got != c.seconds {
			t.Errorf("%s: ChargedSeconds(%d) = %d, want %d", c.name, c.d, got, c.seconds)
		}
		if got := c.r.Charge(c.d); got != c.amount {
			t.Errorf("%s: Charge(%d) = %d, want %d", c.name, c.d, got, c.amount)
		}
	}
}

func TestMaxDuration(t *testing.T) {
	cases := []struct {
		name   string
		r      Rate
		budget int64
		limit  int
		want   int
	}{
		{"60/60 buys whole minutes", r6060, 250_000, 7200, 120},
		{"60/60 less than a minute", r6060, 99_999, 7200, 0},
		{"1/1 exact", r11, 37_000, 7200, 37},
		{"1/1 just short", r11, 36_999, 7200, 36},
		{"fee not covered", rFee, 49_999, 7200, 0},
		{"fee + first only", rFee, 50_000 + 60_000, 7200, 30},
		{"fee + first + one next", rFee, 50_000 + 72_000, 7200, 36},
		{"fee + first + almost two next", rFee, 50_000 + 83_999, 7200, 36},
		{"free seconds with no money", rFree, 0, 7200, 10},
		{"free seconds plus 5 s", rFree, 5_000, 7200, 15},
		{"limit caps", r11, 1 << 40, 7200, 7200},
		{"free price", Rate{FirstInterval: 1, NextInterval: 1}, 0, 3600, 3600},
		{"rounded-up price", rOdd, 1_167, 7200, 1},
		{"rounded-up price, one short", rOdd, 1_166, 7200, 0},
	}
	for _, c := range cases {
		got := c.r.MaxDuration(c.budget, c.limit)
		if got != c.want {
			t.Errorf("%s: MaxDuration(%d) = %d, want %d", c.name, c.budget, got, c.want)
		}
		if got > 0 && got < c.limit && c.r.Charge(got) > c.budget {
			t.Errorf("%s: a %d s call costs %d, over the budget %d", c.name, got, c.r.Charge(got), c.budget)
		}
		if got < c.limit && c.r.PerMinute > 0 && c.budget >= c.r.ConnectFee && c.r.Charge(got+1) <= c.budget && c.r.ChargedSeconds(got+1) != c.r.ChargedSeconds(got) {
			t.Errorf("%s: %d s would still be affordable", c.name, got+1)
		}
	}
}

// The prepaid promise, exhaustively for small budgets: a call cut at
// MaxDuration never costs more than the budget.
func TestMaxDurationNeverOverspends(t *testing.T) {
	for _, r := range []Rate{r6060, r11, rFee, rFree, rOdd, rFreeFee} {
		for budget := int64(0); budget < 400_000; budget += 777 {
			d := r.MaxDuration(budget, 7200)
			if d > 0 && r.Charge(d) > budget && r.Charge(d) > r.ConnectFee {
				t.Fatalf("%+v budget %d: %d s costs %d", r, budget, d, r.Charge(d))
			}
		}
	}
}

func TestLookup(t *testing.T) {
	rates := []Rate{{Prefix: "", PerMinute: 1}, {Prefix: "44", PerMinute: 2}, {Prefix: "4420", PerMinute: 3}, {Prefix: "+1", PerMinute: 4}}
	cases := map[string]int64{"4420123": 3, "+4420123": 3, "4430": 2, "33": 1, "1212": 4, "+1212": 4}
	for n, want := range cases {
		r, err := Lookup(rates, n)
		if err != nil || r.PerMinute != want {
			t.Errorf("Lookup(%q) = %+v, %v; want per_minute %d", n, r, err, want)
		}
	}
	if _, err := Lookup(rates[1:], "33"); !errors.Is(err, ErrNoRate) {
		t.Errorf("no match: %v", err)
	}
}
