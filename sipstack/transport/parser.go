package transport

import (
	"reflect"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// NewParser returns sipgo's parser as troika configures it:
//
//   - From, To and Contact are not parsed eagerly: with sipgo's parsers a
//     malformed Contact makes the whole message unparseable, so it would
//     be dropped instead of answered with 400. Those headers are parsed on
//     access (From, To) or by the registrar (Contact).
//   - Via, From and To are read with the optional white space RFC 3261
//     allows around their separators (SLASH, SEMI, EQUAL, COMMA, COLON:
//     "SIP / 2.0 / UDP host ; branch = x") taken out first, which sipgo's
//     own parsers do not expect (RFC 4475 §3.1.1.1, wsinv): a Via would
//     parse with a host of "UDP host" and a From would lose its tag.
//     Quoted strings and <URI>s are left as they are.
func NewParser() *sip.Parser {
	hp := sip.HeadersParser{}
	for k, v := range sip.DefaultHeadersParser() {
		switch k {
		case "from", "f", "to", "t", "contact", "m":
			continue
		case "via", "v":
			hp[k] = viaParser(v)
			continue
		}
		hp[k] = v
	}
	for _, k := range []string{"from", "f"} {
		hp[k] = func(_ []byte, value string) (sip.Header, error) {
			return sip.NewHeader("From", CompactSeparators(value, ";=,", true)), nil
		}
	}
	for _, k := range []string{"to", "t"} {
		hp[k] = func(_ []byte, value string) (sip.Header, error) {
			return sip.NewHeader("To", CompactSeparators(value, ";=,", true)), nil
		}
	}
	return sip.NewParser(sip.WithHeadersParsers(hp))
}

// CompactSeparators removes the white space around the separators seps in
// a header value, outside quoted strings (and, with angles, outside
// <...>). For a Via (angles false) other runs of white space become one
// space. A value with nothing to remove is returned as it is, without
// allocating.
func CompactSeparators(v, seps string, angles bool) string {
	var out []byte // nil until something changes
	var last byte  // last byte written (0: none yet)
	inQuote, inAngle, escaped := false, false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case inQuote:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inQuote = false
			}
		case inAngle:
			inAngle = c != '>'
		case c == '"':
			inQuote = true
		case c == '<' && angles:
			inAngle = true
		case c == ' ' || c == '\t':
			j := i
			for j < len(v) && (v[j] == ' ' || v[j] == '\t') {
				j++
			}
			run := v[i:j]
			drop := last == 0 || j == len(v) || strings.IndexByte(seps, last) >= 0 || strings.IndexByte(seps, v[j]) >= 0
			keep := run
			switch {
			case drop:
				keep = ""
			case !angles && run != " ":
				keep = " "
			}
			if keep != run && out == nil {
				out = append(make([]byte, 0, len(v)), v[:i]...)
			}
			if out != nil {
				out = append(out, keep...)
			}
			if keep != "" {
				last = ' '
			}
			i = j - 1
			continue
		}
		if out != nil {
			out = append(out, c)
		}
		last = c
	}
	if out == nil {
		return v
	}
	return string(out)
}

// viaParser wraps sipgo's Via parser so that it reads the Via compacted.
//
// A header line may hold several Via values separated by commas. sipgo's
// parser parses the first and reports where the next starts in an error
// of an unexported integer type: the index of the comma, which sipgo's
// header loop uses to cut the text it passed. That index is into the
// compacted text; it is mapped back to the same comma of the text sipgo
// passed (compacting only removes white space, so the commas are the same
// ones in the same order) and reported in an error of sipgo's type, made
// by reflection. TestNewParserVia covers the protocol, should sipgo
// change it.
func viaParser(parse sip.HeaderParser) sip.HeaderParser {
	return func(name []byte, value string) (sip.Header, error) {
		compact := CompactSeparators(value, "/;=,:", false)
		h, err := parse(name, compact)
		if err == nil || compact == value {
			return h, err
		}
		ev := reflect.ValueOf(err)
		if ev.Kind() != reflect.Int {
			return h, err
		}
		at := int(ev.Int())
		if at < 0 || at >= len(compact) || compact[at] != ',' {
			return h, err
		}
		orig := nthComma(value, strings.Count(compact[:at], ","))
		if orig < 0 {
			return h, err
		}
		moved := reflect.New(ev.Type()).Elem()
		moved.SetInt(int64(orig))
		return h, moved.Interface().(error)
	}
}

// nthComma returns the index of the n-th (from 0) comma of v, or -1.
func nthComma(v string, n int) int {
	off := 0
	for {
		i := strings.IndexByte(v[off:], ',')
		if i < 0 {
			return -1
		}
		if n == 0 {
			return off + i
		}
		n--
		off += i + 1
	}
}
