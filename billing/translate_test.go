package billing

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTranslate(t *testing.T) {
	cases := []struct {
		rules, in, want string
	}{
		{`s/^00/+/; s/^\+44/44/`, "0044123", "44123"},         // the example
		{`s/^00/+/; s/^\+1//`, "0012125551234", "2125551234"}, // the design's example
		{`s/^0(?=[1-9])/44/`, "0207946", "44207946"},          // lookahead
		{`s/^0(?![1-9])//`, "0012", "012"},                    // negative lookahead
		{`s/(?<=^44)0//`, "440207", "44207"},                  // lookbehind
		{`s/^(\d)\1/$1/`, "99123", "9123"},                    // backreference in pattern
		{`s/^(\d{3})(\d+)$/$2$1/`, "123456", "456123"},        // groups in replacement
		{`s/^(\d{3})(\d+)$/\2-\1/`, "123456", "456-123"},      // Perl \1 in replacement
		{`s/^(\d{3})(\d+)$/${2}0/`, "123456", "4560"},         // ${n}
		{`s/-//g`, "1-2-3", "123"},                            // global
		{`s/-//`, "1-2-3", "12-3"},                            // first only
		{`s#^sip:##i; s/@.*$//`, "SIP:1001@host", "1001"},     // other delimiter, ignore case
		{`s/^\+//; s/;/x/`, "+1;2", "1x2"},                    // ';' inside a rule
		{`s/\//|/g`, "1/2", "1|2"},                            // escaped delimiter
		{`s/^/\$/`, "5", "$5"},                                // literal $
		{``, "0044", "0044"},                                  // no rules
		{` s/^1// ;  s/^2// `, "123", "3"},                    // spaces around
		{`s/^44/0/; s/^0/+44/`, "44207", "+44207"},            // order matters
	}
	for _, c := range cases {
		rs, err := ParseRules(c.rules)
		if err != nil {
			t.Errorf("ParseRules(%q): %v", c.rules, err)
			continue
		}
		got, err := rs.Apply(c.in)
		if err != nil || got != c.want {
			t.Errorf("%q on %q = %q, %v; want %q", c.rules, c.in, got, err, c.want)
		}
	}
}

func TestParseRulesRefusesNamingTheRule(t *testing.T) {
	cases := map[string]struct {
		index int
		msg   string
	}{
		`s/^00/+/; s/(/x/`:  {1, "pattern"},
		`s/^00/+/; x/a/b/`:  {1, "must look like"},
		`s/^00/+`:           {0, "no closing"},
		`s/a/b/q`:           {0, "flag"},
		`s/a/b/ s/c/d/`:     {0, "expected ';'"},
		`sa/b/c/`:           {0, "delimiter"},
		`s/^00/+/;; s/x/y/`: {1, "must look like"},
	}
	for src, want := range cases {
		_, err := ParseRules(src)
		var re *RuleError
		if !errors.As(err, &re) || re.Index != want.index || !strings.Contains(re.Msg, want.msg) {
			t.Errorf("ParseRules(%q) = %v; want rule %d: %s", src, err, want.index+1, want.msg)
		}
	}
	if _, err := ParseRules(strings.Repeat("s/a/b/;", 40)); err == nil {
		t.Error("too many rules accepted")
	}
	if _, err := ParseRules(strings.Repeat("x", MaxRulesLength+1)); err == nil {
		t.Error("oversized rule set accepted")
	}
}

// A catastrophic-backtracking rule stops at the match timeout with an
// error instead of stalling.
func TestHostileRuleTimesOut(t *testing.T) {
	rs, err := ParseRules(`s/(a+)+$/x/`)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = rs.Apply(strings.Repeat("a", 40) + "!")
	if !errors.Is(err, ErrRuleTimeout) {
		t.Fatalf("got %v, want a timeout", err)
	}
	t.Logf("stopped after %s", time.Since(start).Round(time.Millisecond))
	if _, err := rs.Apply(strings.Repeat("1", MaxNumberLength+1)); err == nil {
		t.Fatal("an over-long number was translated")
	}
}

func FuzzParseRules(f *testing.F) {
	for _, s := range []string{`s/^00/+/; s/^\+44/44/`, `s#a#b#gi`, `s/(a+)+$/x/`, `s/^(\d)\1/$1/`, `s/\//|/g`, ``} {
		f.Add(s, "0044123")
	}
	f.Fuzz(func(t *testing.T, src, number string) {
		rs, err := ParseRules(src)
		if err != nil {
			return
		}
		out, err := rs.Apply(number)
		if err == nil && len(out) > MaxNumberLength {
			t.Fatalf("output of %d characters", len(out))
		}
	})
}
