package sipstack

import (
	"runtime/debug"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// serverName goes into Server headers and sipgo's User-Agent.
const serverName = "troika"

// allowHeader lists the methods served.
const allowHeader = "INVITE, ACK, CANCEL, BYE, UPDATE, INFO, OPTIONS, REGISTER"

// notAllowed are standard methods answered with 405 and Allow; other
// unknown methods get 501.
var notAllowed = []sip.RequestMethod{sip.SUBSCRIBE, sip.NOTIFY, sip.REFER, sip.MESSAGE, sip.PRACK, sip.PUBLISH}

// handlerFunc handles one request received on sock.
type handlerFunc func(sock *socket, req *sip.Request, tx sip.ServerTransaction)

func (s *Server) route(sock *socket) {
	sock.srv.OnRequest(sip.REGISTER, s.wrap(sock, s.handleRegister))
	sock.srv.OnRequest(sip.OPTIONS, s.wrap(sock, s.handleOptions))
	sock.srv.OnRequest(sip.INVITE, s.wrap(sock, s.handleInvite))
	for _, m := range []sip.RequestMethod{sip.BYE, sip.UPDATE, sip.INFO} {
		sock.srv.OnRequest(m, s.wrap(sock, s.handleInDialog))
	}
	// ACKs of our non-2xx final responses are absorbed by the transaction
	// layer; the B2BUA takes those of its 2xx; any other ACK has nothing
	// to acknowledge and gets no answer.
	sock.srv.OnRequest(sip.ACK, func(req *sip.Request, _ sip.ServerTransaction) {
		if !s.gate.enter() {
			return
		}
		defer s.gate.exit()
		s.m.request(string(req.Method))
		if echoSafe(req) {
			s.handleAck(sock, req)
		}
	})
	// A CANCEL reaching a handler matched no pending INVITE (sipgo answers
	// the ones that do, and the B2BUA hears of them through the INVITE
	// transaction's OnCancel).
	sock.srv.OnRequest(sip.CANCEL, s.wrap(sock, func(_ *socket, req *sip.Request, tx sip.ServerTransaction) {
		if s.forwardToCallNode(sock, req) { // its INVITE is on another node (dispatch.go)
			tx.Terminate()
			return
		}
		s.reply(tx, req, reply{code: sip.StatusCallTransactionDoesNotExists, reason: "Call/Transaction Does Not Exist"})
	}))
	for _, m := range notAllowed {
		sock.srv.OnRequest(m, s.wrap(sock, func(_ *socket, req *sip.Request, tx sip.ServerTransaction) {
			s.reply(tx, req, reply{code: sip.StatusMethodNotAllowed, reason: "Method Not Allowed",
				headers: []sip.Header{sip.NewHeader("Allow", allowHeader)}})
		}))
	}
	sock.srv.OnNoRoute(s.wrap(sock, func(_ *socket, req *sip.Request, tx sip.ServerTransaction) {
		s.reply(tx, req, reply{code: sip.StatusNotImplemented, reason: "Not Implemented",
			headers: []sip.Header{sip.NewHeader("Allow", allowHeader)}})
	}))
}

// wrap runs h for requests of sock: it counts the request, drops requests
// that cannot be answered safely (see echoSafe), and recovers a panic as a
// last resort (logged with its stack; the phone gets 500).
func (s *Server) wrap(sock *socket, h handlerFunc) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if !s.gate.enter() {
			return // shutting down: the phone retries elsewhere
		}
		defer s.gate.exit()
		s.m.request(string(req.Method))
		if !echoSafe(req) {
			// A 400 would carry the offending bytes back, or could not be
			// routed: drop it as unparseable.
			s.m.parseErrors.Inc()
			s.log.Debug("dropped request with control characters in its headers", "socket", sock.name, "source", req.Source())
			return
		}
		if s.forwardStreamRequest(sock, req) {
			tx.Terminate() // the node running its dialog answers (dispatch_stream.go)
			return
		}
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("SIP handler panicked", "socket", sock.name, "method", string(req.Method), "panic", p, "stack", string(debug.Stack()))
				s.m.stackErrors.Inc()
				s.reply(tx, req, reply{code: sip.StatusInternalServerError, reason: "Server Internal Error"})
			}
		}()
		h(sock, req, tx)
	}
}

// echoSafe reports whether the headers a response copies from its request
// (Via, From, To, Call-ID, CSeq, Record-Route) are free of control
// characters, and every Via is one a response can be routed by. sipgo
// splits lines at CRLF only, so a lone LF or a NUL can sit inside a header
// value, and its Via parser accepts values (such as "//x y") that it
// cannot parse back once re-serialized.
func echoSafe(req *sip.Request) bool {
	for _, h := range req.Headers() {
		switch strings.ToLower(h.Name()) {
		case "via", "v":
			v, ok := h.(*sip.ViaHeader)
			if !ok || !strings.EqualFold(v.ProtocolName, "SIP") || v.ProtocolVersion != "2.0" ||
				!isToken(v.Transport) || v.Host == "" || strings.ContainsAny(v.Host, " \t;,") {
				return false
			}
			fallthrough
		case "from", "f", "to", "t", "call-id", "i", "cseq", "record-route":
			if !safeHeaderValue(h.Value()) {
				return false
			}
		}
	}
	// From, To and Record-Route are re-serialized from what sipgo parsed,
	// which for odd input can be text it cannot parse again.
	if from := req.From(); from != nil && !addressRoundTrips(from.Value()) {
		return false
	}
	if to := req.To(); to != nil && !addressRoundTrips(to.Value()) {
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

// safeHeaderValue is safeText allowing horizontal tabs.
func safeHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// reply is a response to build from a request.
type reply struct {
	code    int
	reason  string
	headers []sip.Header
	result  string // REGISTER outcome label
}

// reply sends a final response and ends the transaction at once.
//
// sipgo would keep a finalized UDP transaction for Timer J (32 s) to
// answer retransmissions of the request from memory: about 2.6 kB each,
// so 1.7 GB at 10,000 REGISTERs a second. Everything answered here is
// idempotent instead (a retransmitted REGISTER gets a fresh challenge, or
// the same 200 via the registrar's retransmission check), so transactions
// end with their response, like a stateless registrar's. Retransmissions
// arriving while a request is still being processed are absorbed by its
// transaction as before.
func (s *Server) reply(tx sip.ServerTransaction, req *sip.Request, r reply) {
	res := sip.NewResponseFromRequest(req, r.code, r.reason, nil)
	res.SipVersion = "SIP/2.0" // not the request's: it may be what a 505 refuses
	for _, h := range r.headers {
		res.AppendHeader(h)
	}
	res.AppendHeader(sip.NewHeader("Server", serverName))
	if err := tx.Respond(res); err != nil {
		s.log.Debug("could not send response", "code", r.code, "to", req.Source(), "error", err)
	}
	tx.Terminate()
}

// checkRequest returns a 400 reply naming what is missing or malformed
// among the headers every request needs, or nil.
func checkRequest(req *sip.Request) *reply {
	bad := func(reason string) *reply {
		return &reply{code: sip.StatusBadRequest, reason: reason, result: resBadRequest}
	}
	if req.SipVersion != "SIP/2.0" {
		return &reply{code: sip.StatusVersionNotSupported, reason: "Version Not Supported", result: resBadRequest}
	}
	cid := req.CallID()
	if cid == nil {
		return bad("Missing Call-ID")
	}
	if len(cid.Value()) > maxCallID || !safeText(cid.Value()) || strings.ContainsAny(cid.Value(), " \t") {
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

func (s *Server) handleOptions(sock *socket, req *sip.Request, tx sip.ServerTransaction) {
	if r := checkRequest(req); r != nil {
		s.reply(tx, req, *r)
		return
	}
	s.reply(tx, req, reply{code: sip.StatusOK, reason: "OK", headers: []sip.Header{
		sip.NewHeader("Allow", allowHeader),
		sip.NewHeader("Accept", "application/sdp"),
		sip.NewHeader("Supported", "path"),
	}})
}

// headerValues returns the values of the headers named by any of names
// (lower case, compact forms included), in message order.
func headerValues(req *sip.Request, names ...string) []string {
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
