package billing

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MicrosPerUnit is how many micro-units make one unit of a currency.
const MicrosPerUnit = 1_000_000

// MaxAmount bounds any single amount (one billion units), leaving int64
// headroom for sums over millions of accounts.
const MaxAmount = 1_000_000_000 * MicrosPerUnit

// ParseMoney reads a decimal amount such as "10", "10.5", "-0.25" or
// "0.000001" into micro-units. More than six decimals, exponents, spaces,
// and amounts beyond ±MaxAmount are refused rather than rounded: an amount
// of money is either exact or an error.
func ParseMoney(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty amount")
	}
	neg := false
	rest := s
	if rest[0] == '-' || rest[0] == '+' {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	whole, frac, hasDot := strings.Cut(rest, ".")
	if whole == "" && frac == "" || !digits(whole) || !digits(frac) || hasDot && frac == "" {
		return 0, fmt.Errorf("amount %q is not a decimal number like 10.50", s)
	}
	if len(frac) > 6 {
		return 0, fmt.Errorf("amount %q has more than 6 decimals", s)
	}
	if len(whole) > 13 {
		return 0, fmt.Errorf("amount %q is too large", s)
	}
	var w int64
	if whole != "" {
		w, _ = strconv.ParseInt(whole, 10, 64)
	}
	f := int64(0)
	if frac != "" {
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
	}
	v := w*MicrosPerUnit + f
	if v > MaxAmount {
		return 0, fmt.Errorf("amount %q is too large", s)
	}
	if neg {
		v = -v
	}
	return v, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FormatMoney writes micro-units as a decimal string with at least two
// decimals and no trailing zeros beyond them: 10000000 is "10.00",
// 1234567 is "1.234567".
func FormatMoney(v int64) string {
	sign := ""
	u := uint64(v)
	if v < 0 {
		sign, u = "-", uint64(-v)
	}
	frac := fmt.Sprintf("%06d", u%MicrosPerUnit)
	frac = strings.TrimRight(frac, "0")
	for len(frac) < 2 {
		frac += "0"
	}
	return fmt.Sprintf("%s%d.%s", sign, u/MicrosPerUnit, frac)
}
