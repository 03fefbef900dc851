package billing

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dlclark/regexp2"
)

// Translation rules rewrite a number the way PortaBilling-style switches do:
// Perl substitutions `s/pattern/replacement/flags`, several chained with
// ';' and applied in order, e.g. `s/^00/+/; s/^\+44/44/`. Patterns may use
// lookahead, lookbehind and backreferences (github.com/dlclark/regexp2, a
// .NET-compatible engine); replacements use $1, ${1}, $& and \1. Every
// match runs under a timeout, so a hostile pattern such as `(a+)+$` stops
// with an error instead of stalling the node.

// Limits on a rule set and its input.
const (
	MaxRulesLength   = 2048
	MaxRules         = 32
	MaxNumberLength  = 128
	RuleMatchTimeout = 50 * time.Millisecond
)

// ErrRuleTimeout is returned when a rule's match ran out of time.
var ErrRuleTimeout = errors.New("translation rule timed out")

// Rules is a parsed, validated translation rule set.
type Rules struct {
	src   string
	rules []rule
}

type rule struct {
	text        string // the rule as written, for errors
	re          *regexp2.Regexp
	replacement string // in regexp2 syntax
	global      bool
}

// RuleError says which rule of a set is wrong and why.
type RuleError struct {
	Index int    // 0-based position in the set
	Rule  string // the rule's text
	Msg   string
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("rule %d %q: %s", e.Index+1, e.Rule, e.Msg)
}

// ParseRules parses a rule set. The empty string is the empty set, which
// leaves numbers as they are.
func ParseRules(src string) (*Rules, error) {
	if len(src) > MaxRulesLength {
		return nil, fmt.Errorf("rule set is %d characters, over the %d limit", len(src), MaxRulesLength)
	}
	rs := &Rules{src: src}
	rest := strings.TrimSpace(src)
	for i := 0; rest != ""; i++ {
		if i == MaxRules {
			return nil, fmt.Errorf("more than %d rules", MaxRules)
		}
		r, n, err := parseRule(rest)
		if err != nil {
			text := rest
			if j := strings.IndexByte(text, ';'); j >= 0 && n == 0 {
				text = text[:j]
			}
			return nil, &RuleError{Index: i, Rule: strings.TrimSpace(text), Msg: err.Error()}
		}
		rs.rules = append(rs.rules, r)
		rest = strings.TrimSpace(rest[n:])
		if rest == "" {
			break
		}
		if rest[0] != ';' {
			return nil, &RuleError{Index: i, Rule: r.text, Msg: fmt.Sprintf("expected ';' before %q", clip(rest, 20))}
		}
		rest = strings.TrimSpace(rest[1:])
	}
	return rs, nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// parseRule reads one s/pattern/replacement/flags from the start of src
// and returns it with the number of bytes it used.
func parseRule(src string) (rule, int, error) {
	if len(src) < 4 || src[0] != 's' {
		return rule{}, 0, errors.New(`must look like s/pattern/replacement/flags`)
	}
	delim := src[1]
	if delim == '\\' || delim == ' ' || delim == ';' || (delim >= 'a' && delim <= 'z') || (delim >= 'A' && delim <= 'Z') || (delim >= '0' && delim <= '9') {
		return rule{}, 0, fmt.Errorf("%q cannot be the delimiter", delim)
	}
	pattern, i, err := delimited(src, 2, delim)
	if err != nil {
		return rule{}, 0, fmt.Errorf("pattern: %w", err)
	}
	repl, j, err := delimited(src, i, delim)
	if err != nil {
		return rule{}, 0, fmt.Errorf("replacement: %w", err)
	}
	k := j
	for k < len(src) && src[k] >= 'a' && src[k] <= 'z' {
		k++
	}
	r := rule{text: src[:k]}
	var opts regexp2.RegexOptions
	for _, f := range src[j:k] {
		switch f {
		case 'g':
			r.global = true
		case 'i':
			opts |= regexp2.IgnoreCase
		case 'x':
			opts |= regexp2.IgnorePatternWhitespace
		default:
			return rule{}, 0, fmt.Errorf("flag %q is not supported (use g, i or x)", f)
		}
	}
	re, err := regexp2.Compile(pattern, opts)
	if err != nil {
		return rule{}, 0, fmt.Errorf("pattern: %v", err)
	}
	re.MatchTimeout = RuleMatchTimeout
	r.re = re
	r.replacement = perlReplacement(repl, delim)
	if _, err := re.Replace("", r.replacement, -1, 1); err != nil {
		return rule{}, 0, fmt.Errorf("replacement: %v", err)
	}
	return r, k, nil
}

// delimited returns the text from src[start] up to the next unescaped
// delim, with escaped delimiters unescaped, and the index after delim.
func delimited(src string, start int, delim byte) (string, int, error) {
	var b strings.Builder
	for i := start; i < len(src); i++ {
		c := src[i]
		if c == '\\' && i+1 < len(src) {
			if src[i+1] == delim {
				b.WriteByte(delim)
			} else {
				b.WriteByte('\\')
				b.WriteByte(src[i+1])
			}
			i++
			continue
		}
		if c == delim {
			return b.String(), i + 1, nil
		}
		b.WriteByte(c)
	}
	return "", 0, fmt.Errorf("no closing %q", delim)
}

// perlReplacement turns a Perl replacement into regexp2's syntax: \1 is a
// group, \$ and \\ are literal, and any other escaped character stands for
// itself; $1, ${1} and $& mean the same in both.
func perlReplacement(repl string, delim byte) string {
	var b strings.Builder
	for i := 0; i < len(repl); i++ {
		c := repl[i]
		if c != '\\' || i+1 == len(repl) {
			b.WriteByte(c)
			continue
		}
		i++
		switch n := repl[i]; {
		case n >= '1' && n <= '9':
			b.WriteString("${" + string(n) + "}")
		case n == '$':
			b.WriteString("$$")
		default:
			b.WriteByte(n)
		}
	}
	return b.String()
}

// String returns the rule set as written.
func (rs *Rules) String() string { return rs.src }

// Apply runs every rule in order on number and returns the result. An
// error (a rule timed out, or the input is too long) means the number
// could not be translated: the caller must refuse the call, not guess.
func (rs *Rules) Apply(number string) (string, error) {
	if len(number) > MaxNumberLength {
		return "", fmt.Errorf("number of %d characters is over the %d limit", len(number), MaxNumberLength)
	}
	for i, r := range rs.rules {
		count := 1
		if r.global {
			count = -1
		}
		out, err := r.re.Replace(number, r.replacement, -1, count)
		if err != nil {
			if strings.Contains(err.Error(), "match timeout") {
				return "", fmt.Errorf("rule %d %q on %q: %w", i+1, r.text, clip(number, 32), ErrRuleTimeout)
			}
			return "", fmt.Errorf("rule %d %q on %q: %w", i+1, r.text, clip(number, 32), err)
		}
		if len(out) > MaxNumberLength {
			return "", fmt.Errorf("rule %d %q made a number of %d characters, over the %d limit", i+1, r.text, len(out), MaxNumberLength)
		}
		number = out
	}
	return number, nil
}
