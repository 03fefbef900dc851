package cluster

import (
	"bufio"
	"fmt"
)

// Link frames (link.go), after the connection's handshake (framed as
// framing.go says):
//
//	uint32 length (big endian, of what follows) | type | body
//
// The dialing node sends a hello first, then data frames; the accepting
// node only reads.
const (
	linkHello byte = 'H' // body: uvarint-length node id | the sender's hello data
	linkData  byte = 'D' // body: one message

	// MaxLinkMessage is the largest message Link.Send carries: a UDP
	// datagram with its envelope fits.
	MaxLinkMessage = 128 << 10
	maxLinkFrame   = 1 + MaxLinkMessage
)

// linkFraming is the dispatch link's frame format (framing.go).
func linkFraming() framing { return framing{name: "link frame ", limit: maxLinkFrame} }

func writeLinkFrame(w *bufio.Writer, typ byte, body []byte) error {
	return linkFraming().write(w, []byte{typ}, body)
}

// readLinkFrame reads one frame; its body is newly allocated (the caller
// may keep it). A length of zero or over the limit, or an unknown type,
// is errBadFrame.
func readLinkFrame(r *bufio.Reader) (byte, []byte, error) {
	var hdr [1]byte
	body, err := linkFraming().read(r, hdr[:], checkLinkType)
	if err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

// checkLinkType refuses a frame of a type this version does not know.
func checkLinkType(hdr []byte) error {
	if typ := hdr[0]; typ != linkHello && typ != linkData {
		return fmt.Errorf("%w: link frame type %#x", errBadFrame, typ)
	}
	return nil
}

func encodeHello(id string, data []byte) []byte {
	b := appendString(make([]byte, 0, 1+len(id)+len(data)), id)
	return append(b, data...)
}

func decodeHello(body []byte) (string, []byte, error) {
	id, rest, err := readString(body)
	if err != nil {
		return "", nil, err
	}
	if !nodeIDPattern.MatchString(id) {
		return "", nil, fmt.Errorf("%w: link hello from node id %q", errBadFrame, id)
	}
	return id, rest, nil
}
