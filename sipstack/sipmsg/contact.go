package sipmsg

import (
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Limits on what a REGISTER may store in the replicated state.
const (
	maxContactURI        = 512 // bytes of one contact URI
	MaxPathEntries       = 5
	MaxPathEntry         = 512
	MaxUserAgent         = 256
	maxInstance          = 256
	MaxCallID            = 256
	MaxContactsInRequest = 32 // Contact entries in one REGISTER
)

// ContactSpec is one parsed Contact entry of a REGISTER.
type ContactSpec struct {
	URI        string // the URI as the phone sent it (without < >)
	Expires    int    // the expires parameter, when HasExpires
	HasExpires bool
	Q          int    // q x 1000; -1 when absent
	Instance   string // +sip.instance without quotes
	RegID      int
}

// RequestError is a REGISTER refused with 400 and this reason phrase.
type RequestError string

func (e RequestError) Error() string { return string(e) }

// SplitList splits a header value into its comma-separated elements,
// ignoring commas inside quotes and < >. Empty elements are dropped.
func SplitList(v string) []string {
	elems := splitUnquoted(v, ',', true)
	out := elems[:0]
	for _, e := range elems {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// splitParams splits ";a=1;b;c="x;y"" into its parameters, ignoring
// semicolons inside quotes.
func splitParams(s string) []string { return splitUnquoted(s, ';', false) }

// splitUnquoted splits s at every sep outside quotes (a backslash escapes
// the next character within them) and, with angles, outside < >.
func splitUnquoted(s string, sep byte, angles bool) []string {
	var out []string
	inQuote, inAngle, escaped := false, false, false
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case inQuote && c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case angles && c == '<':
			inAngle = true
		case angles && c == '>':
			inAngle = false
		case c == sep && !inAngle:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// SafeText reports whether s has no control characters (CR, LF, NUL, ...)
// and is valid for copying into a stored record or a header.
func SafeText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// CleanText drops control characters from s and cuts it to max bytes
// (on a UTF-8 boundary), for informational fields such as User-Agent.
func CleanText(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			continue
		}
		if b.Len()+len(string(r)) > max {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// ParseDelta parses delta-seconds (RFC 3261 §25.1): digits only; values
// over 2^32-1 saturate there (§20.19 allows treating them so).
func ParseDelta(s string) (int, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return math.MaxUint32, true // all digits: only the range failed
	}
	return int(v), true
}

// ParseQ parses a q-value (0 to 1, at most 3 decimals) into thousandths.
func ParseQ(s string) (int, bool) {
	intPart, frac, _ := strings.Cut(strings.TrimSpace(s), ".")
	if (intPart != "0" && intPart != "1") || len(frac) > 3 {
		return 0, false
	}
	for i := 0; i < len(frac); i++ {
		if frac[i] < '0' || frac[i] > '9' {
			return 0, false
		}
	}
	v := 0
	if intPart == "1" {
		v = 1000
	}
	f := (frac + "000")[:3]
	n, _ := strconv.Atoi(f)
	if intPart == "1" && n != 0 {
		return 0, false
	}
	return v + n, true
}

// ErrWildcard is ParseContact's answer to the Contact "*".
var ErrWildcard = errors.New("wildcard contact")

// ParseContact parses one Contact element (RFC 3261 §20.10): a name-addr
// "Name <uri>;params" or an addr-spec "uri;params". It returns ErrWildcard
// for "*" and a RequestError for anything it cannot store.
func ParseContact(s string) (ContactSpec, error) {
	c := ContactSpec{Q: -1}
	s = strings.TrimSpace(s)
	if s == "*" {
		return c, ErrWildcard
	}
	var uriText, params string
	rest := s
	if strings.HasPrefix(rest, "\"") { // quoted display name
		end := -1
		for i, escaped := 1, false; i < len(rest); i++ {
			switch {
			case escaped:
				escaped = false
			case rest[i] == '\\':
				escaped = true
			case rest[i] == '"':
				end = i
			}
			if end >= 0 {
				break
			}
		}
		if end < 0 {
			return c, RequestError("Malformed Contact: unterminated display name")
		}
		rest = strings.TrimLeft(rest[end+1:], " \t")
		if !strings.HasPrefix(rest, "<") {
			return c, RequestError("Malformed Contact: display name without <URI>")
		}
	}
	// name-addr when a '<' comes before any parameter; in an addr-spec a
	// '<' can only be inside a parameter such as +sip.instance="<urn:...>".
	if i, semi := strings.IndexByte(rest, '<'), strings.IndexByte(rest, ';'); i >= 0 && (semi < 0 || i < semi) {
		j := strings.IndexByte(rest[i:], '>')
		if j < 0 {
			return c, RequestError("Malformed Contact: missing >")
		}
		uriText, params = rest[i+1:i+j], rest[i+j+1:]
		if p := strings.TrimSpace(params); p != "" && !strings.HasPrefix(p, ";") {
			return c, RequestError("Malformed Contact: text after >")
		}
	} else {
		uriText, params, _ = strings.Cut(rest, ";")
		params = ";" + params
		if strings.ContainsAny(uriText, "?,") {
			// RFC 3261 §20: such a URI must be in < > (RFC 4475 §3.1.2.13).
			return c, RequestError("Malformed Contact: a URI with headers must be in <>")
		}
	}
	uriText = strings.TrimSpace(uriText)
	switch {
	case uriText == "":
		return c, RequestError("Malformed Contact: empty URI")
	case len(uriText) > maxContactURI:
		return c, RequestError("Contact URI too long")
	case !SafeText(uriText) || strings.ContainsAny(uriText, " \"<>"):
		return c, RequestError("Malformed Contact: invalid characters in URI")
	}
	var u sip.Uri
	if err := sip.ParseUri(uriText, &u); err != nil || u.Wildcard {
		return c, RequestError("Malformed Contact URI")
	}
	if u.Scheme != "sip" && u.Scheme != "sips" {
		return c, RequestError("Contact URI must be sip: or sips:")
	}
	if u.Host == "" {
		return c, RequestError("Contact URI has no host")
	}
	c.URI = uriText

	for _, p := range splitParams(params)[1:] {
		name, value, _ := strings.Cut(p, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		value = strings.TrimSpace(value)
		switch name {
		case "expires":
			v, ok := ParseDelta(value)
			if !ok {
				return c, RequestError("Malformed Contact expires")
			}
			c.Expires, c.HasExpires = v, true
		case "q":
			v, ok := ParseQ(value)
			if !ok {
				return c, RequestError("Malformed Contact q-value")
			}
			c.Q = v
		case "+sip.instance":
			v := strings.TrimSuffix(strings.TrimPrefix(value, "\""), "\"")
			if v == "" || len(v) > maxInstance || !SafeText(v) || strings.ContainsAny(v, "\"\\") {
				return c, RequestError("Malformed Contact +sip.instance")
			}
			c.Instance = v
		case "reg-id":
			v, ok := ParseDelta(value)
			if !ok || v < 1 || v > math.MaxInt32 {
				return c, RequestError("Malformed Contact reg-id")
			}
			c.RegID = v
		}
	}
	return c, nil
}

// FormatQ writes thousandths as a q-value: 500 is "0.5", 1000 is "1".
func FormatQ(q int) string {
	if q >= 1000 {
		return "1"
	}
	s := strconv.Itoa(1000 + q)[1:] // three digits
	s = strings.TrimRight(s, "0")
	if s == "" {
		return "0"
	}
	return "0." + s
}

// ParsePath collects the Path header entries (RFC 3327) of a request.
func ParsePath(values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		for _, e := range SplitList(v) {
			if len(out) == MaxPathEntries {
				return nil, RequestError("Too many Path entries")
			}
			if len(e) > MaxPathEntry || !SafeText(e) {
				return nil, RequestError("Malformed Path entry")
			}
			out = append(out, e)
		}
	}
	return out, nil
}
