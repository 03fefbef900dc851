package sipstack

import (
	"runtime/debug"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// notAllowed are standard methods answered with 405 and Allow; other
// unknown methods get 501.
var notAllowed = []sip.RequestMethod{sip.SUBSCRIBE, sip.NOTIFY, sip.REFER, sip.MESSAGE, sip.PRACK, sip.PUBLISH}

// handlerFunc handles one request received on sock.
type handlerFunc func(sock *transport.Socket, req *sip.Request, tx sip.ServerTransaction)

func (s *Server) route(sock *transport.Socket) {
	sock.Srv.OnRequest(sip.REGISTER, s.wrap(sock, s.handleRegister))
	sock.Srv.OnRequest(sip.OPTIONS, s.wrap(sock, s.handleOptions))
	sock.Srv.OnRequest(sip.INVITE, s.wrap(sock, s.calls.HandleInvite))
	for _, m := range []sip.RequestMethod{sip.BYE, sip.UPDATE, sip.INFO} {
		sock.Srv.OnRequest(m, s.wrap(sock, s.calls.HandleInDialog))
	}
	// ACKs of our non-2xx final responses are absorbed by the transaction
	// layer; the B2BUA takes those of its 2xx; any other ACK has nothing
	// to acknowledge and gets no answer.
	sock.Srv.OnRequest(sip.ACK, func(req *sip.Request, _ sip.ServerTransaction) {
		if !s.gate.enter() {
			return
		}
		defer s.gate.exit()
		s.m.request(string(req.Method))
		if sipmsg.EchoSafe(req) {
			s.calls.HandleAck(sock, req)
		}
	})
	// A CANCEL reaching a handler matched no pending INVITE (sipgo answers
	// the ones that do, and the B2BUA hears of them through the INVITE
	// transaction's OnCancel).
	sock.Srv.OnRequest(sip.CANCEL, s.wrap(sock, s.calls.HandleCancel))
	for _, m := range notAllowed {
		sock.Srv.OnRequest(m, s.wrap(sock, func(_ *transport.Socket, req *sip.Request, tx sip.ServerTransaction) {
			s.reply(tx, req, sipmsg.Reply{Code: sip.StatusMethodNotAllowed, Reason: "Method Not Allowed",
				Headers: []sip.Header{sip.NewHeader("Allow", sipmsg.AllowHeader)}})
		}))
	}
	sock.Srv.OnNoRoute(s.wrap(sock, func(_ *transport.Socket, req *sip.Request, tx sip.ServerTransaction) {
		s.reply(tx, req, sipmsg.Reply{Code: sip.StatusNotImplemented, Reason: "Not Implemented",
			Headers: []sip.Header{sip.NewHeader("Allow", sipmsg.AllowHeader)}})
	}))
}

// wrap runs h for requests of sock: it counts the request, drops requests
// that cannot be answered safely (see echoSafe), and recovers a panic as a
// last resort (logged with its stack; the phone gets 500).
func (s *Server) wrap(sock *transport.Socket, h handlerFunc) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if !s.gate.enter() {
			return // shutting down: the phone retries elsewhere
		}
		defer s.gate.exit()
		s.m.request(string(req.Method))
		if !sipmsg.EchoSafe(req) {
			// A 400 would carry the offending bytes back, or could not be
			// routed: drop it as unparseable.
			s.m.parseErrors.Inc()
			s.log.Debug("dropped request with control characters in its headers", "socket", sock.Name, "source", req.Source())
			return
		}
		if s.disp.ForwardStreamRequest(sock, req) {
			tx.Terminate() // the node running its dialog answers (dispatch_stream.go)
			return
		}
		tx = &refusalCounter{ServerTransaction: tx, m: s.m}
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("SIP handler panicked", "socket", sock.Name, "method", string(req.Method), "panic", p, "stack", string(debug.Stack()))
				s.m.stackErrors.Inc()
				s.reply(tx, req, sipmsg.Reply{Code: sip.StatusInternalServerError, Reason: "Server Internal Error"})
			}
		}()
		h(sock, req, tx)
	}
}

// refusalCounter is the transaction handlers get: sipmsg.Respond tells it
// of the refusal of a malformed request (sipmsg.Reply.Bad), counted in
// troika_sip_bad_requests_total, whichever part of the switch answers.
type refusalCounter struct {
	sip.ServerTransaction
	m *metrics
}

func (t *refusalCounter) Refused(bad string) { t.m.badRequests.WithLabelValues(bad).Inc() }

// optionsExtensions are the option tags an OPTIONS' Require may name:
// what its answer lists in Supported.
var optionsExtensions = map[string]bool{"path": true}

func (s *Server) handleOptions(sock *transport.Socket, req *sip.Request, tx sip.ServerTransaction) {
	if r := sipmsg.CheckRequest(req); r != nil {
		s.reply(tx, req, *r)
		return
	}
	if r := sipmsg.CheckRequire(req, optionsExtensions); r != nil {
		s.reply(tx, req, *r)
		return
	}
	s.reply(tx, req, sipmsg.Reply{Code: sip.StatusOK, Reason: "OK", Headers: []sip.Header{
		sip.NewHeader("Allow", sipmsg.AllowHeader),
		sip.NewHeader("Accept", "application/sdp"),
		sip.NewHeader("Supported", "path"),
	}})
}

// handleRegister answers a REGISTER (sipstack/registrar).
func (s *Server) handleRegister(sock *transport.Socket, req *sip.Request, tx sip.ServerTransaction) {
	s.reply(tx, req, s.reg.Handle(s.baseCtx, sock, req))
}

// reply answers req with r and ends its transaction (sipmsg.Respond).
func (s *Server) reply(tx sip.ServerTransaction, req *sip.Request, r sipmsg.Reply) {
	if err := sipmsg.Respond(tx, req, r); err != nil {
		s.log.Debug("could not send response", "code", r.Code, "to", req.Source(), "error", err)
	}
}
