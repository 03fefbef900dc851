package sipmsg

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Screening of UDP datagrams, before sipgo's parser and transaction layer
// see them.
//
// sipgo drops a datagram it cannot parse without a word, and answers a
// request it cannot make a transaction for (no Via or CSeq, or an RFC 2543
// Via without a From tag) with a bare "400 Bad Request" of its own that
// echoes headers nobody has checked. RFC 4475 §3.1.2 wants most such
// requests answered (400 for a malformed Request-Line, CSeq or
// Content-Length, 416 for an unknown URI scheme, 505 for another SIP
// version), and troika wants each refusal to say what was wrong and to be
// counted. ScreenDatagram sees every datagram first and answers those
// itself, statelessly; a request sipgo can take goes on to it untouched.
//
// A response is sent only when the headers it must copy (Via, From, To,
// Call-ID, CSeq) can be copied safely (EchoSafe): a request without a
// usable Via is dropped. Headers that do not parse are left out of the
// response (a 400 Malformed CSeq has no CSeq). Responses go where sipgo
// sends them: the source IP, at the port of the top Via (RFC 3261
// §18.2.2), or the source port when the Via has rport (RFC 3581).

// Verdict is ScreenDatagram's decision about one datagram.
type Verdict struct {
	// Pass is what to hand to sipgo: the datagram, or nil when it is not
	// passed on.
	Pass []byte
	// Response, when not nil, is sent at once to Dest ("IP:port").
	Response []byte
	Dest     string
	// Bad labels a request refused as malformed, answered or not
	// (Bad... constants).
	Bad string
	// Unparseable: dropped without an answer, as not a SIP message, a
	// response sipgo cannot read, or a request without a safe answer.
	Unparseable bool
	// Req is the request passed on, as parsed (source and transport
	// not set), with its server transaction key TxKey: whoever takes it
	// need not parse it again. nil for anything else.
	Req   *sip.Request
	TxKey string
}

// maxSalvageLines bounds the header lines examined in a datagram that
// does not parse.
const maxSalvageLines = 256

// ScreenDatagram decides what becomes of a datagram received from src
// ("IP:port"), parsing it with p (the parser sipgo will use).
func ScreenDatagram(p *sip.Parser, data []byte, src string) Verdict {
	if len(bytes.Trim(data, "\r\n\x00")) == 0 {
		return Verdict{Pass: data} // keepalive: sipgo ignores it
	}
	msg, err := p.ParseSIP(data)
	if errors.Is(err, sip.ErrParseEOF) && bytes.HasSuffix(data, []byte("\r\n")) && !bytes.Contains(data, []byte("\r\n\r\n")) {
		// A datagram is a whole message (RFC 3261 §18.3): one whose
		// headers end without the empty line ends there.
		fixed := append(data[:len(data):len(data)], '\r', '\n')
		if m, err2 := p.ParseSIP(fixed); err2 == nil {
			msg, err, data = m, nil, fixed
		}
	}
	if err != nil {
		return salvage(p, data, src, err)
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return Verdict{Pass: data} // responses: sipgo matches them (or counts a stray one)
	}
	if key, err := sip.ServerTxKeyMake(req); err == nil {
		return Verdict{Pass: data, Req: req, TxKey: key}
	}
	// sipgo could not make a transaction of it.
	if req.Via() == nil || req.IsAck() {
		return Verdict{Unparseable: true, Bad: BadMissingHeader}
	}
	r := CheckRequest(req)
	if r == nil {
		// An RFC 2543 Via (no z9hG4bK branch): sipgo matches it by the
		// From tag, Call-ID and CSeq.
		r = &Reply{Code: sip.StatusBadRequest, Reason: "Missing From tag", Bad: BadMissingHeader}
	}
	return answer(req, src, *r)
}

// answer is the verdict sending r as a stateless response to req.
func answer(req *sip.Request, src string, r Reply) Verdict {
	req.SetSource(src)
	req.SetTransport("UDP")
	if !EchoSafe(req) {
		return Verdict{Unparseable: true, Bad: r.Bad}
	}
	res := sip.NewResponseFromRequest(req, r.Code, r.Reason, nil)
	res.SipVersion = "SIP/2.0"
	for _, h := range r.Headers {
		res.AppendHeader(h)
	}
	res.AppendHeader(sip.NewHeader("Server", ServerName))
	return Verdict{Response: []byte(res.String()), Dest: ResponseDest(req, src), Bad: r.Bad}
}

// ResponseDest is where sipgo sends a response to a UDP request from src:
// the source IP, at the top Via's port (5060 when it has none), or at the
// source port when the Via asks for rport.
func ResponseDest(req *sip.Request, src string) string {
	host, port, err := net.SplitHostPort(src)
	if err != nil {
		return src
	}
	if via := req.Via(); via != nil {
		if v, ok := via.Params.Get("rport"); !ok || v != "" {
			port = strconv.Itoa(sip.DefaultUdpPort)
			if via.Port > 0 {
				port = strconv.Itoa(via.Port)
			}
		}
	}
	return net.JoinHostPort(host, port)
}

// salvage decides about a datagram sipgo's parser refuses (perr): a
// request whose Via, From, To, Call-ID and CSeq can still be read gets a
// response naming the first problem found (Request-Line, then headers in
// order, then the body's length); anything else is dropped.
func salvage(p *sip.Parser, data []byte, src string, perr error) Verdict {
	head := data
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		head = data[:i]
	}
	lines := unfold(string(head))
	if len(lines) < 2 || len(lines) > maxSalvageLines {
		return Verdict{Unparseable: true}
	}
	start := lines[0]
	fields := strings.Fields(start)
	if len(fields) < 3 || !IsToken(fields[0]) || !strings.HasPrefix(strings.ToUpper(fields[len(fields)-1]), "SIP/") {
		return Verdict{Unparseable: true} // a response, or not SIP at all
	}
	method := sip.RequestMethod(fields[0])
	if method == sip.ACK {
		return Verdict{Unparseable: true, Bad: BadRequestLine} // never answered
	}
	problem := checkRequestLine(start)

	// The stand-in request: the headers a response copies, each taken if
	// it parses on its own.
	req := sip.NewRequest(method, sip.Uri{Scheme: "sip", Host: "invalid"})
	var vias []string
	for _, l := range lines[1:] {
		if name, _ := headerName(l); name == "via" || name == "v" {
			vias = append(vias, l)
		}
	}
	viaMsg, err := parseHeaders(p, vias...)
	if len(vias) == 0 || err != nil {
		return Verdict{Unparseable: true, Bad: BadMalformedHeader} // no usable Via: nowhere to answer
	}
	for _, h := range viaMsg.GetHeaders("Via") {
		req.AppendHeader(h)
	}
	taken := map[string]bool{}
	for _, l := range lines[1:] {
		name, ok := headerName(l)
		if !ok {
			if problem == nil {
				problem = &Reply{Code: sip.StatusBadRequest, Reason: "Malformed header line", Bad: BadMalformedHeader}
			}
			continue
		}
		if name == "via" || name == "v" {
			continue
		}
		m, err := parseHeaders(p, l)
		if err != nil {
			if problem == nil {
				problem = malformedHeader(name)
			}
			continue
		}
		canon := canonicalNames[name]
		if taken[canon] {
			continue
		}
		switch canon {
		case "Call-ID":
			if h := m.CallID(); h != nil {
				req.AppendHeader(h)
				taken[canon] = true
			}
		case "CSeq":
			if h := m.CSeq(); h != nil {
				req.AppendHeader(h)
				taken[canon] = true
			}
		case "From", "To":
			if nameAddrRoundTrips(m.GetHeader(canon).Value()) {
				req.AppendHeader(m.GetHeader(canon))
				taken[canon] = true
			}
		}
	}
	if problem == nil {
		switch {
		case errors.Is(perr, sip.ErrParseReadBodyIncomplete) && bytes.Contains(data, []byte("\r\n\r\n")):
			problem = &Reply{Code: sip.StatusBadRequest, Reason: "Content-Length larger than the message", Bad: BadContentLength}
		default:
			return Verdict{Unparseable: true}
		}
	}
	return answer(req, src, *problem)
}

// checkRequestLine returns the refusal of a malformed Request-Line
// "Method SP Request-URI SP SIP-Version", or nil.
func checkRequestLine(line string) *Reply {
	badLine := func(reason string) *Reply {
		return &Reply{Code: sip.StatusBadRequest, Reason: reason, Bad: BadRequestLine}
	}
	parts := strings.Split(line, " ")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return badLine("Malformed Request-Line") // extra, missing or trailing spaces; LWS in the URI
	}
	if parts[2] != "SIP/2.0" {
		return &Reply{Code: sip.StatusVersionNotSupported, Reason: "Version Not Supported", Bad: BadVersion}
	}
	uri := parts[1]
	scheme, _, ok := strings.Cut(uri, ":")
	if !ok || !isURIScheme(scheme) {
		return badLine("Malformed Request-URI") // such as <sip:user@host>
	}
	if s := strings.ToLower(scheme); s != "sip" && s != "sips" {
		return &Reply{Code: 416, Reason: "Unsupported URI Scheme", Bad: BadURIScheme}
	}
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return badLine("Malformed Request-URI")
	}
	return nil
}

// isURIScheme reports whether s is an RFC 3986 scheme:
// ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func isURIScheme(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alpha && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// canonicalNames are the headers sipgo's parser reads, by lower-case name
// and compact form, with the name written in reasons. Other headers are
// kept as text and never fail to parse.
var canonicalNames = map[string]string{
	"via": "Via", "v": "Via",
	"from": "From", "f": "From",
	"to": "To", "t": "To",
	"call-id": "Call-ID", "i": "Call-ID",
	"cseq":           "CSeq",
	"max-forwards":   "Max-Forwards",
	"content-length": "Content-Length", "l": "Content-Length",
	"content-type": "Content-Type", "c": "Content-Type",
	"contact": "Contact", "m": "Contact",
	"route":        "Route",
	"record-route": "Record-Route",
}

// malformedHeader is the 400 naming a header that does not parse.
func malformedHeader(name string) *Reply {
	canon, ok := canonicalNames[name]
	if !ok {
		canon = "header"
	}
	bad := BadMalformedHeader
	if canon == "Content-Length" {
		bad = BadContentLength
	}
	return &Reply{Code: sip.StatusBadRequest, Reason: "Malformed " + canon, Bad: bad}
}

// headerName returns the lower-case name of a header line, and whether
// the line has one.
func headerName(line string) (string, bool) {
	name, _, ok := strings.Cut(line, ":")
	name = strings.TrimSpace(name)
	if !ok || !IsToken(name) {
		return "", false
	}
	return strings.ToLower(name), true
}

// unfold splits a header section into lines, joining continuation lines
// (starting with white space) to the line before them.
func unfold(head string) []string {
	var lines []string
	for _, l := range strings.Split(head, "\r\n") {
		if len(lines) > 1 && l != "" && (l[0] == ' ' || l[0] == '\t') {
			lines[len(lines)-1] += " " + strings.TrimLeft(l, " \t")
			continue
		}
		lines = append(lines, l)
	}
	return lines
}

// parseHeaders parses header lines alone, in a stand-in request without
// a body.
func parseHeaders(p *sip.Parser, lines ...string) (*sip.Request, error) {
	var b strings.Builder
	b.WriteString("OPTIONS sip:invalid SIP/2.0\r\n")
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	m, _, err := p.ParseHeaders([]byte(b.String()), false)
	if err != nil {
		return nil, err
	}
	return m.(*sip.Request), nil
}
