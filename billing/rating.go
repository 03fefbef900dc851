package billing

import (
	"errors"
	"math/big"
	"strings"
)

// Rate is the price of calls to destinations starting with Prefix. Money
// is in micro-units, times in seconds.
type Rate struct {
	Prefix        string
	PerMinute     int64
	ConnectFee    int64
	FirstInterval int
	NextInterval  int
	FreeSeconds   int
}

// ErrNoRate means no rate of the tariff matches the number.
var ErrNoRate = errors.New("no rate for this destination")

// Lookup returns the rate with the longest prefix of number; the prefix ""
// matches every number. A leading '+' on number or prefix is ignored, so
// "+4420" and "4420" rate alike.
func Lookup(rates []Rate, number string) (Rate, error) {
	n := strings.TrimPrefix(number, "+")
	best, found := Rate{}, false
	for _, r := range rates {
		p := strings.TrimPrefix(r.Prefix, "+")
		if strings.HasPrefix(n, p) && (!found || len(p) > len(strings.TrimPrefix(best.Prefix, "+"))) {
			best, found = r, true
		}
	}
	if !found {
		return Rate{}, ErrNoRate
	}
	return best, nil
}

// ChargedSeconds is the billable time of a call that lasted d seconds: the
// free seconds come off the start, then the rest is rounded up to the first
// interval and after it to whole next intervals. 0 when nothing is billable.
func (r Rate) ChargedSeconds(d int) int {
	rest := d - r.FreeSeconds
	if rest <= 0 {
		return 0
	}
	if rest <= r.FirstInterval {
		return r.FirstInterval
	}
	next := r.NextInterval
	if next < 1 {
		next = 1
	}
	after := rest - r.FirstInterval
	return r.FirstInterval + (after+next-1)/next*next
}

// Charge is the price of an answered call that lasted d seconds: the
// connect fee plus the per-minute price of the charged seconds, rounded up
// to the next micro-unit. Unanswered calls cost nothing and are not rated.
func (r Rate) Charge(d int) int64 {
	return r.ConnectFee + perSeconds(r.PerMinute, r.ChargedSeconds(d))
}

// perSeconds is ceil(perMinute*secs/60) without overflow.
func perSeconds(perMinute int64, secs int) int64 {
	if perMinute == 0 || secs == 0 {
		return 0
	}
	p := new(big.Int).Mul(big.NewInt(perMinute), big.NewInt(int64(secs)))
	q, m := new(big.Int).QuoRem(p, big.NewInt(60), new(big.Int))
	if m.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return MaxAmount * 1000
	}
	return q.Int64()
}

// MaxDuration is the longest call (seconds, at most limit) whose Charge
// fits in budget. It is 0 when the budget does not cover the connect fee
// or the first billable interval and there are no free seconds.
func (r Rate) MaxDuration(budget int64, limit int) int {
	if budget < r.ConnectFee || limit <= 0 {
		return 0
	}
	if r.PerMinute == 0 {
		return limit
	}
	left := budget - r.ConnectFee
	// Billable seconds the budget pays for: the largest s with
	// ceil(PerMinute*s/60) <= left, i.e. s = floor(left*60/PerMinute).
	s := new(big.Int).Mul(big.NewInt(left), big.NewInt(60))
	s.Quo(s, big.NewInt(r.PerMinute))
	paid := int64(limit) + int64(r.FirstInterval) // more than limit ever needs
	if s.IsInt64() && s.Int64() < paid {
		paid = s.Int64()
	}
	var billable int64
	if paid >= int64(r.FirstInterval) {
		next := int64(max(r.NextInterval, 1))
		billable = int64(r.FirstInterval) + (paid-int64(r.FirstInterval))/next*next
	}
	d := int64(r.FreeSeconds) + billable
	if d > int64(limit) {
		return limit
	}
	return int(d)
}
