package dispatch

import (
	"bytes"

	"github.com/troika-sip/troika/sipstack/sipmsg"
)

// msgInfo is what the dispatcher reads of a message without parsing it:
// enough to route it (dispatcher.go).
type msgInfo struct {
	callID   []byte // a sub-slice of the message
	response bool   // a status line, not a request line
	method   []byte // the request method (nil for a response)
	toTag    bool   // the To header has a tag parameter: within a dialog
}

// scanMessage finds the Call-ID of a SIP message (and the request method
// and whether To has a tag) with one pass over its header lines, without
// parsing or allocating. It accepts CRLF or bare LF line ends, the compact
// forms (i, t), any letter case, spaces before the colon, and header
// values folded onto continuation lines. It stops at the blank line ending
// the headers. ok is false when the message has no start line, no
// Call-ID, or a Call-ID that is empty, over maxCallID bytes or holds
// whitespace or control characters: such a message is processed where it
// arrived, whose parser drops it or answers 400.
func scanMessage(msg []byte) (info msgInfo, ok bool) {
	line, rest, found := cutLine(msg)
	if !found || len(line) == 0 {
		return msgInfo{}, false
	}
	if bytes.HasPrefix(line, []byte("SIP/")) {
		info.response = true
	} else {
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 {
			return msgInfo{}, false
		}
		info.method = line[:sp]
	}
	var callID []byte
	haveCallID := false
	var cur int // the header whose continuation lines follow: 0 other, 1 Call-ID, 2 To
	for len(rest) > 0 {
		line, rest, _ = cutLine(rest)
		if len(line) == 0 {
			break // end of headers
		}
		if line[0] == ' ' || line[0] == '\t' {
			switch cur {
			case 1:
				v := trimLWS(line)
				if len(callID) == 0 {
					callID = v
				} else if len(v) > 0 {
					return msgInfo{}, false // a Call-ID with whitespace inside
				}
			case 2:
				if hasTagParam(line) {
					info.toTag = true
				}
			}
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			cur = 0
			continue
		}
		name := trimLWS(line[:colon])
		value := line[colon+1:]
		switch {
		case equalFoldASCII(name, "call-id") || equalFoldASCII(name, "i"):
			if haveCallID {
				// Two Call-IDs: the parser may keep either; processed
				// where it arrived (and refused there), never routed.
				return msgInfo{}, false
			}
			haveCallID, cur = true, 1
			callID = trimLWS(value)
		case equalFoldASCII(name, "to") || equalFoldASCII(name, "t"):
			cur = 2
			if hasTagParam(value) {
				info.toTag = true
			}
		default:
			cur = 0
		}
	}
	if !haveCallID || len(callID) == 0 || len(callID) > sipmsg.MaxCallID {
		return msgInfo{}, false
	}
	for _, c := range callID {
		if c <= ' ' || c == 0x7f {
			return msgInfo{}, false
		}
	}
	info.callID = callID
	return info, true
}

// cutLine returns the first line of b (without its CRLF or LF) and what
// follows; found is false when b holds no line end.
func cutLine(b []byte) (line, rest []byte, found bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return trimCR(b), nil, false
	}
	return trimCR(b[:i]), b[i+1:], true
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

func trimLWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// hasTagParam reports whether a To value (or a piece of one) has a
// ";tag=" parameter outside the URI's angle brackets.
func hasTagParam(v []byte) bool {
	if i := bytes.LastIndexByte(v, '>'); i >= 0 {
		v = v[i+1:]
	}
	for {
		i := bytes.IndexByte(v, ';')
		if i < 0 {
			return false
		}
		v = v[i+1:]
		p := trimLWS(v)
		if len(p) >= 3 && equalFoldASCII(p[:3], "tag") {
			q := trimLWS(p[3:])
			if len(q) > 0 && q[0] == '=' {
				return true
			}
		}
	}
}

// equalFoldASCII compares b with lower, a lower-case ASCII string,
// ignoring case.
func equalFoldASCII(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
