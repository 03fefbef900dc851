package sipmsg

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// EchoSafe reports whether the headers a response copies from its request
// (Via, From, To, Call-ID, CSeq, Record-Route) are free of control
// characters, and every Via is one a response can be routed by. sipgo
// splits lines at CRLF only, so a lone LF or a NUL can sit inside a header
// value, and its Via parser accepts values (such as "//x y") that it
// cannot parse back once re-serialized.
func EchoSafe(req *sip.Request) bool {
	for _, h := range req.Headers() {
		var buf [32]byte
		switch string(lowerASCII(buf[:0], h.Name())) {
		case "via", "v":
			v, ok := h.(*sip.ViaHeader)
			// Any version: a request of another one is answered 505.
			if !ok || !strings.EqualFold(v.ProtocolName, "SIP") || !IsToken(v.ProtocolVersion) ||
				!IsToken(v.Transport) || v.Host == "" || strings.ContainsAny(v.Host, " \t;,") {
				return false
			}
			fallthrough
		case "from", "f", "to", "t", "call-id", "i", "cseq", "record-route":
			if !SafeHeaderValue(h.Value()) {
				return false
			}
		}
	}
	// From, To and Record-Route are re-serialized from what sipgo parsed,
	// which for odd input can be text it cannot parse again.
	if from := req.From(); from != nil && !nameAddrRoundTrips(from.Value()) {
		return false
	}
	if to := req.To(); to != nil && !nameAddrRoundTrips(to.Value()) {
		return false
	}
	for _, h := range req.GetHeaders("Record-Route") {
		if !addressRoundTrips(h.Value()) {
			return false
		}
	}
	return true
}

func addressRoundTrips(v string) bool {
	var u sip.Uri
	var p sip.HeaderParams
	_, err := sip.ParseAddressValue(v, &u, &p)
	return err == nil
}

// nameAddrRoundTrips is addressRoundTrips for From and To, whose parser
// also refuses the wildcard URI "*" (a mangled To can serialize as
// "<sip:*>").
func nameAddrRoundTrips(v string) bool {
	var u sip.Uri
	var p sip.HeaderParams
	_, err := sip.ParseAddressValue(v, &u, &p)
	return err == nil && !u.Wildcard
}

// SafeHeaderValue is SafeText allowing horizontal tabs.
func SafeHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// CheckRequest returns the refusal of a request whose start line or
// basic headers are wrong, or nil: 505 for a SIP version other than 2.0,
// 416 for a Request-URI that is neither sip: nor sips: (RFC 3261
// §8.2.2.1), and 400 naming the problem for a Request-URI with headers
// (§19.1.1), a single-valued header given twice (§7.3.1), a Call-ID, CSeq,
// From or To missing or malformed, a CSeq of another method, or a display
// name with characters a token cannot have but no quotes (RFC 4475
// §3.1.2.15).
func CheckRequest(req *sip.Request) *Reply {
	bad := func(label, reason string) *Reply {
		return &Reply{Code: sip.StatusBadRequest, Reason: reason, Result: ResultBadRequest, Bad: label}
	}
	if req.SipVersion != "SIP/2.0" {
		return &Reply{Code: sip.StatusVersionNotSupported, Reason: "Version Not Supported", Result: ResultBadRequest, Bad: BadVersion}
	}
	if sch := strings.ToLower(req.Recipient.Scheme); sch != "sip" && sch != "sips" {
		return &Reply{Code: 416, Reason: "Unsupported URI Scheme", Result: ResultBadRequest, Bad: BadURIScheme}
	}
	if h := req.Recipient.Headers; h != nil && h.Length() > 0 {
		return bad(BadRequestLine, "Malformed Request-URI: headers are not allowed")
	}
	if name := duplicateHeader(req); name != "" {
		return bad(BadDuplicateHeader, "Multiple "+name+" headers")
	}
	cid := req.CallID()
	if cid == nil {
		return bad(BadMissingHeader, "Missing Call-ID")
	}
	if len(cid.Value()) > MaxCallID || !SafeText(cid.Value()) || strings.ContainsAny(cid.Value(), " \t") {
		return bad(BadMalformedHeader, "Malformed Call-ID")
	}
	cseq := req.CSeq()
	if cseq == nil {
		return bad(BadMalformedHeader, "Missing or malformed CSeq")
	}
	// sipgo keeps the spaces after the first one ("CSeq: 8   REGISTER").
	if strings.TrimLeft(string(cseq.MethodName), " \t") != string(req.Method) {
		return bad(BadInvalid, "CSeq method does not match the request")
	}
	if req.From() == nil {
		return bad(BadMalformedHeader, "Missing or malformed From")
	}
	if req.To() == nil {
		return bad(BadMalformedHeader, "Missing or malformed To")
	}
	for _, name := range [...]string{"From", "To"} {
		if !displayNameOK(HeaderValues(req, name, name[:1])) {
			return bad(BadMalformedHeader, "Malformed "+name+": unquoted display name")
		}
	}
	return nil
}

// singleValued are the headers a request may carry once (RFC 3261 §7.3.1:
// only comma-separated lists may be split over several header lines), by
// lower-case name and compact form, with the name written in reasons.
var singleValued = map[string]string{
	"call-id": "Call-ID", "i": "Call-ID",
	"cseq": "CSeq",
	"from": "From", "f": "From",
	"to": "To", "t": "To",
	"max-forwards":   "Max-Forwards",
	"content-length": "Content-Length", "l": "Content-Length",
	"content-type": "Content-Type", "c": "Content-Type",
	"expires": "Expires",
}

// duplicateHeader returns the name of the first single-valued header seen
// twice in req, or "".
func duplicateHeader(req *sip.Request) string {
	var seen [8]string // few distinct names: a slice search beats a map
	n := 0
	for _, h := range req.Headers() {
		var buf [32]byte
		name, ok := singleValued[string(lowerASCII(buf[:0], h.Name()))]
		if !ok {
			continue
		}
		for _, s := range seen[:n] {
			if s == name {
				return name
			}
		}
		if n < len(seen) {
			seen[n] = name
			n++
		}
	}
	return ""
}

// lowerASCII appends name in ASCII lower case to b (a header name: a
// stack buffer, so that comparing or looking it up allocates nothing).
func lowerASCII(b []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// displayNameOK reports whether the display name of a From or To value
// (the first of values) is quoted, absent, or tokens separated by white
// space (RFC 3261 §25.1: display-name = *(token LWS) / quoted-string).
func displayNameOK(values []string) bool {
	if len(values) == 0 {
		return true
	}
	v := strings.TrimSpace(values[0])
	i := strings.IndexByte(v, '<')
	if strings.HasPrefix(v, "\"") || i <= 0 {
		return true
	}
	for _, t := range strings.Fields(v[:i]) {
		if !tokenChars(t) {
			return false
		}
	}
	return true
}

// HeaderValues returns the values of the headers named by any of names
// (lower case, compact forms included), in message order.
func HeaderValues(req *sip.Request, names ...string) []string {
	var out []string
	for _, h := range req.Headers() {
		n := h.Name()
		for _, want := range names {
			if strings.EqualFold(n, want) {
				out = append(out, h.Value())
				break
			}
		}
	}
	return out
}

// HasHeader reports whether req has a header named name (in any case),
// without the allocation of sip.Request.GetHeader.
func HasHeader(req *sip.Request, name string) bool {
	for _, h := range req.Headers() {
		if strings.EqualFold(h.Name(), name) {
			return true
		}
	}
	return false
}

// OptionTags returns the lower-cased option tags of the named headers.
func OptionTags(req *sip.Request, names ...string) []string {
	var out []string
	for _, v := range HeaderValues(req, names...) {
		for _, t := range strings.Split(v, ",") {
			if t = strings.ToLower(strings.TrimSpace(t)); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

func Supports(req *sip.Request, tag string) bool {
	for _, t := range OptionTags(req, "Supported", "k") {
		if t == tag {
			return true
		}
	}
	return false
}

// CheckRequire answers 420 Bad Extension listing the option tags of
// Require not in supported (lower case), as the request wrote them (RFC
// 3261 §8.2.2.3).
func CheckRequire(req *sip.Request, supported map[string]bool) *Reply {
	var bad []string
	for _, v := range HeaderValues(req, "Require") {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			switch {
			case t == "":
			case !IsToken(t):
				return &Reply{Code: sip.StatusBadRequest, Reason: "Malformed Require", Result: ResultBadRequest, Bad: BadMalformedHeader}
			case !supported[strings.ToLower(t)] && len(bad) < 8:
				bad = append(bad, t)
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return &Reply{Code: sip.StatusBadExtension, Reason: "Bad Extension", Result: ResultBadRequest, Bad: BadExtension,
		Headers: []sip.Header{sip.NewHeader("Unsupported", strings.Join(bad, ", "))}}
}

// IsToken reports whether s is an RFC 3261 token (safe to echo) of at
// most 64 bytes.
func IsToken(s string) bool {
	return len(s) <= 64 && tokenChars(s)
}

// tokenChars reports whether s is an RFC 3261 token, of any length.
func tokenChars(s string) bool {
	return AlnumOr(s, "-.!%*_+`'~")
}

// AlnumOr reports whether s is not empty and made only of ASCII letters,
// digits and the bytes of others.
func AlnumOr(s, others string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(others, c) >= 0) {
			return false
		}
	}
	return true
}
