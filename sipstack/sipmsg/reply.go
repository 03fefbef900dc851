package sipmsg

import "github.com/emiago/sipgo/sip"

// ServerName goes into Server headers and sipgo's User-Agent.
const ServerName = "troika"

// AllowHeader lists the methods troika serves, for Allow headers.
const AllowHeader = "INVITE, ACK, CANCEL, BYE, UPDATE, INFO, OPTIONS, REGISTER"

// Reply is a response to build from a request.
type Reply struct {
	Code    int
	Reason  string
	Headers []sip.Header
	Result  string // REGISTER outcome label
	// Bad is set on the refusal of a malformed request: what was wrong,
	// the "reason" label of troika_sip_bad_requests_total (Bad...).
	Bad string
}

// Labels of troika_sip_bad_requests_total: what was wrong with a request
// refused as malformed. A fixed set: never text from the request.
const (
	BadVersion         = "version"          // 505: SIP version other than 2.0
	BadURIScheme       = "uri_scheme"       // 416: Request-URI neither sip: nor sips:
	BadExtension       = "extension"        // 420: Require names an extension troika lacks
	BadMaxForwards     = "max_forwards"     // 483: an INVITE with Max-Forwards 0
	BadRequestLine     = "request_line"     // 400: the Request-Line or Request-URI
	BadMissingHeader   = "missing_header"   // 400: Call-ID, CSeq, From, To, From tag
	BadMalformedHeader = "malformed_header" // 400: a header troika reads is malformed
	BadDuplicateHeader = "duplicate_header" // 400: a single-valued header twice
	BadContentLength   = "content_length"   // 400: Content-Length and body disagree
	BadInvalid         = "invalid"          // 400: anything else (CSeq method, Contact rules, ...)
)

// RetryAfter is the Retry-After of a 503, in seconds.
const RetryAfter = "5"

// Forbidden is the 403 of a refused authentication.
func Forbidden() Reply {
	return Reply{Code: sip.StatusForbidden, Reason: "Forbidden", Result: ResultForbidden}
}

// BadRequest is a 400 naming what is wrong.
func BadRequest(reason string) Reply {
	return Reply{Code: sip.StatusBadRequest, Reason: reason, Result: ResultBadRequest, Bad: BadInvalid}
}

// TooManyHops is the 483 of an INVITE with Max-Forwards 0.
func TooManyHops() Reply {
	return Reply{Code: sip.StatusTooManyHops, Reason: "Too Many Hops", Result: ResultBadRequest, Bad: BadMaxForwards}
}

// Unavailable is a 503 asking to try again after RetryAfter.
func Unavailable(reason string) Reply {
	return Reply{Code: sip.StatusServiceUnavailable, Reason: reason, Result: ResultUnavailable,
		Headers: []sip.Header{sip.NewHeader("Retry-After", RetryAfter)}}
}

// Outcomes of a request's answer, the "result" label of
// troika_sip_register_total. CheckRequest and the authentication answers
// set them for INVITEs too, where they are not counted.
const (
	ResultOK              = "ok"                // binding(s) written, 200
	ResultQuery           = "query"             // no Contact: bindings listed, 200
	ResultRetransmission  = "retransmission"    // already applied (its 200 was lost): 200, no write
	ResultUnauthorized    = "unauthorized"      // 401 challenge (no or unusable credentials)
	ResultStale           = "stale"             // 401 stale=true
	ResultForbidden       = "forbidden"         // 403: wrong password, unknown or blocked account, user mismatch
	ResultRateLimited     = "rate_limited"      // 403 without checking: source over the failure limit
	ResultTooBrief        = "too_brief"         // 423
	ResultBadRequest      = "bad_request"       // 400, 416, 420, 505
	ResultTooManyContacts = "too_many_contacts" // 403 Too Many Contacts
	ResultStaleCSeq       = "stale_cseq"        // 500: CSeq not above the binding's
	ResultUnavailable     = "unavailable"       // 503: no nonce secret yet, write failed, overloaded
	ResultError           = "error"             // 500: unexpected
	ResultReplayed        = "replayed"          // 401 stale=true: digest credentials used again (an nc already used)
	ResultThrottled       = "throttled"         // 503: the user name's guesses are used up
	ResultOverloaded      = "overloaded"        // 503: shed unread, the node had more than it could take (sipstack's UDP REGISTER queue)
)

// Respond sends r as the final response to req and ends the transaction at
// once. It returns the error of sending, for a log at debug level.
//
// sipgo would keep a finalized UDP transaction for Timer J (32 s) to
// answer retransmissions of the request from memory: about 2.6 kB each,
// so 1.7 GB at 10,000 REGISTERs a second. Everything answered here is
// idempotent instead (a retransmitted REGISTER gets a fresh challenge, or
// the same 200 via the registrar's retransmission check), so transactions
// end with their response, like a stateless registrar's. Retransmissions
// arriving while a request is still being processed are absorbed by its
// transaction as before.
//
// When r refuses a malformed request (r.Bad) and tx has a Refused method
// (the SIP server's transactions do: sipstack's wrap), it is told first,
// to count it.
func Respond(tx sip.ServerTransaction, req *sip.Request, r Reply) error {
	if r.Bad != "" {
		if rec, ok := tx.(interface{ Refused(bad string) }); ok {
			rec.Refused(r.Bad)
		}
	}
	err := tx.Respond(Response(req, r))
	tx.Terminate()
	return err
}

// Response is the response r to req, as Respond sends it.
func Response(req *sip.Request, r Reply) *sip.Response {
	res := sip.NewResponseFromRequest(req, r.Code, r.Reason, nil)
	res.SipVersion = "SIP/2.0" // not the request's: it may be what a 505 refuses
	for _, h := range r.Headers {
		res.AppendHeader(h)
	}
	res.AppendHeader(sip.NewHeader("Server", ServerName))
	return res
}
