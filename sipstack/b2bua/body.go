package b2bua

import (
	"bytes"
	"errors"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/troika-sip/troika/sipstack/sipmsg"
)

// What crosses from one leg of a call to the other: the body (SDP,
// unchanged: there is no media relay) and the headers of relayedHeaders,
// each only when its value is safe. sipgo v1.7.2 has no validator: a
// header value may hold a lone LF or NUL (it splits lines at CRLF only),
// which copied verbatim would inject headers into the other leg.

// relayedHeaders may be copied between legs.
var relayedHeaders = []string{"Subject", "Priority", "Accept", "Content-Disposition", "Reason",
	"Info-Package", "Recv-Info"}

const (
	maxRelayedValue   = 256 // bytes of one copied header value
	maxRelayedPerName = 4   // copies of one header name
	maxBody           = 16 << 10
)

// relayHeaders returns safe copies of msg's relayedHeaders.
func relayHeaders(msg interface{ GetHeaders(string) []sip.Header }) []sip.Header {
	var out []sip.Header
	for _, name := range relayedHeaders {
		for i, h := range msg.GetHeaders(name) {
			if i == maxRelayedPerName {
				break
			}
			if v := h.Value(); len(v) <= maxRelayedValue && sipmsg.SafeHeaderValue(v) && strings.TrimSpace(v) != "" {
				out = append(out, sip.NewHeader(name, v))
			}
		}
	}
	return out
}

// contentType returns the media type of msg's body (lower case, without
// parameters), "" when it has none.
func contentType(msg interface{ ContentType() *sip.ContentTypeHeader }) string {
	h := msg.ContentType()
	if h == nil {
		return ""
	}
	v, _, _ := strings.Cut(h.Value(), ";")
	return strings.ToLower(strings.TrimSpace(v))
}

// safeContentType returns msg's Content-Type value when it can be copied
// to another leg, else "".
func safeContentType(msg interface{ ContentType() *sip.ContentTypeHeader }) string {
	h := msg.ContentType()
	if h == nil {
		return ""
	}
	v := strings.TrimSpace(h.Value())
	if v == "" || len(v) > maxRelayedValue || !sipmsg.SafeText(v) {
		return ""
	}
	return v
}

var (
	errBodyTooLarge = errors.New("body too large")
	errBadSDP       = errors.New("malformed SDP")
)

// checkSDP checks that b looks like a session description (RFC 8866 §5)
// without interpreting it: text lines of the form x=value starting with
// v=0 and with at least one media line. The B2BUA passes SDP through
// untouched; this keeps binary garbage away from the callee.
func checkSDP(b []byte) error {
	if len(b) > maxBody {
		return errBodyTooLarge
	}
	media, first := false, true
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			continue
		}
		if len(line) < 2 || line[1] != '=' || line[0] < 'a' || line[0] > 'z' || !sipmsg.SafeText(string(line)) {
			return errBadSDP
		}
		if first && string(line) != "v=0" {
			return errBadSDP
		}
		first = false
		if line[0] == 'm' {
			media = true
		}
	}
	if !media {
		return errBadSDP
	}
	return nil
}

// reasonFor returns the reason phrase to send with code: the peer's own
// when it is short, plain text, else the standard one.
func reasonFor(code int, peer string) string {
	if peer != "" && len(peer) <= 64 && sipmsg.SafeText(peer) {
		return peer
	}
	return statusText(code)
}

// statusText is the RFC 3261 reason phrase of code (or of its class).
func statusText(code int) string {
	if t, ok := reasonPhrases[code]; ok {
		return t
	}
	switch {
	case code < 200:
		return "Session Progress"
	case code < 300:
		return "OK"
	case code < 400:
		return "Redirection"
	case code < 500:
		return "Request Failure"
	case code < 600:
		return "Server Failure"
	}
	return "Global Failure"
}

var reasonPhrases = map[int]string{
	100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
	200: "OK", 400: "Bad Request", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
	405: "Method Not Allowed", 408: "Request Timeout", 410: "Gone", 413: "Request Entity Too Large",
	415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
	480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
	483: "Too Many Hops", 484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
	488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
	501: "Not Implemented", 503: "Service Unavailable", 600: "Busy Everywhere", 603: "Decline",
	604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

// failure is a callee's final answer as the caller will get it.
type failure struct {
	code   int
	reason string
	by     string // ByCallee when a callee said it, else BySystem
}

// calleeFailure maps a callee leg's final non-2xx response to what the
// caller gets: redirections are never relayed (the caller would call the
// new target around the switch's billing; 300-302 are followed instead,
// b2bua_redirect.go), a
// callee's challenge cannot be answered by the caller, and a callee's 503
// must not make the caller think the switch is overloaded (RFC 3261
// §16.7 turns it into 500 likewise).
func calleeFailure(res *sip.Response) failure {
	code := res.StatusCode
	switch {
	case code < 400, code == 401, code == 407:
		return failure{sip.StatusTemporarilyUnavailable, statusText(480), ByCallee}
	case code == 503:
		return failure{sip.StatusInternalServerError, statusText(500), ByCallee}
	}
	return failure{code, reasonFor(code, res.Reason), ByCallee}
}

// failureRank orders failures for the caller when every fork failed, after
// RFC 3261 §16.7: a 6xx wins; then 4xx, the callee's own answers (486
// busy first) before unavailability, timeouts and cancellations; then
// 5xx. Lower is better.
func failureRank(code int) int {
	switch {
	case code >= 600:
		return 0
	case code == 486:
		return 1
	case code >= 400 && code < 500 && code != 408 && code != 480 && code != 487:
		return 2
	case code == 480:
		return 3
	case code == 408:
		return 4
	case code == 487:
		return 5
	}
	return 6
}

// better returns the failure the caller should rather get.
func better(a *failure, b failure) *failure {
	if a == nil || failureRank(b.code) < failureRank(a.code) {
		return &b
	}
	return a
}
