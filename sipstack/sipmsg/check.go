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
		switch strings.ToLower(h.Name()) {
		case "via", "v":
			v, ok := h.(*sip.ViaHeader)
			if !ok || !strings.EqualFold(v.ProtocolName, "SIP") || v.ProtocolVersion != "2.0" ||
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

// CheckRequest returns a 400 reply naming what is missing or malformed
// among the headers every request needs, or nil.
func CheckRequest(req *sip.Request) *Reply {
	bad := func(reason string) *Reply {
		return &Reply{Code: sip.StatusBadRequest, Reason: reason, Result: ResultBadRequest}
	}
	if req.SipVersion != "SIP/2.0" {
		return &Reply{Code: sip.StatusVersionNotSupported, Reason: "Version Not Supported", Result: ResultBadRequest}
	}
	cid := req.CallID()
	if cid == nil {
		return bad("Missing Call-ID")
	}
	if len(cid.Value()) > MaxCallID || !SafeText(cid.Value()) || strings.ContainsAny(cid.Value(), " \t") {
		return bad("Malformed Call-ID")
	}
	cseq := req.CSeq()
	if cseq == nil {
		return bad("Missing or malformed CSeq")
	}
	// sipgo keeps the spaces after the first one ("CSeq: 8   REGISTER").
	if strings.TrimLeft(string(cseq.MethodName), " \t") != string(req.Method) {
		return bad("CSeq method does not match the request")
	}
	if req.From() == nil {
		return bad("Missing or malformed From")
	}
	if req.To() == nil {
		return bad("Missing or malformed To")
	}
	return nil
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
// Require not in supported (RFC 3261 §8.2.2.3).
func CheckRequire(req *sip.Request, supported map[string]bool) *Reply {
	var bad []string
	for _, t := range OptionTags(req, "Require") {
		switch {
		case !IsToken(t):
			return &Reply{Code: sip.StatusBadRequest, Reason: "Malformed Require", Result: ResultBadRequest}
		case !supported[t] && len(bad) < 8:
			bad = append(bad, t)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return &Reply{Code: sip.StatusBadExtension, Reason: "Bad Extension", Result: ResultBadRequest,
		Headers: []sip.Header{sip.NewHeader("Unsupported", strings.Join(bad, ", "))}}
}

// IsToken reports whether s is an RFC 3261 token (safe to echo).
func IsToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return true
}
