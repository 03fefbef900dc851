package logthrottle

import (
	"fmt"
	"testing"
	"time"
)

func TestGate(t *testing.T) {
	g := New(10*time.Second, 2)
	t0 := time.Unix(1_700_000_000, 0)
	steps := []struct {
		name       string
		key        string
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{"first line of a key", "a", 0, true, 0},
		{"again within the period", "a", time.Second, false, 0},
		{"and again", "a", 2 * time.Second, false, 0},
		{"another key", "b", 3 * time.Second, true, 0},
		{"after the period: the held-back count", "a", 10 * time.Second, true, 2},
		{"a third key while two are remembered and busy", "c", 11 * time.Second, true, 0},
		{"a fourth shares the overflow entry", "d", 12 * time.Second, false, 0},
		{"b, quiet for a period, is written", "b", 14 * time.Second, true, 0},
	}
	for _, s := range steps {
		ok, n := g.Allow(Key{s.key, "wrong password"}, t0.Add(s.at))
		if ok != s.ok || n != s.suppressed {
			t.Errorf("%s: Allow(%q) = %v, %d; want %v, %d", s.name, s.key, ok, n, s.ok, s.suppressed)
		}
	}
}

// A scan from many addresses costs a bounded memory and a bounded number
// of lines.
func TestGateBounds(t *testing.T) {
	g := New(time.Minute, 100)
	t0 := time.Unix(1_700_000_000, 0)
	written := 0
	for i := range 10_000 {
		for _, what := range []string{"wrong password", "rate limited"} {
			if ok, _ := g.Allow(Key{fmt.Sprint("198.51.100.", i), what}, t0.Add(time.Duration(i)*time.Millisecond)); ok {
				written++
			}
		}
	}
	if n := g.Len(); n > 102 {
		t.Errorf("%d keys remembered, want at most 100 + one overflow per reason", n)
	}
	if written > 102 {
		t.Errorf("%d lines written for 20,000 in 10 s", written)
	}
}
