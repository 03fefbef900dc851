package cluster

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Link frames (link.go), after the connection's handshake:
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

func writeLinkFrame(w *bufio.Writer, typ byte, body []byte) error {
	if len(body) > MaxLinkMessage {
		return fmt.Errorf("link frame of %d bytes is over the %d limit", len(body), MaxLinkMessage)
	}
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(1+len(body)))
	hdr[4] = typ
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// readLinkFrame reads one frame; its body is newly allocated (the caller
// may keep it). A length of zero or over the limit, or an unknown type,
// is errBadFrame.
func readLinkFrame(r *bufio.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 1 || n > maxLinkFrame {
		return 0, nil, fmt.Errorf("%w: link frame length %d", errBadFrame, n)
	}
	if _, err := io.ReadFull(r, hdr[4:5]); err != nil {
		return 0, nil, noEOF(err)
	}
	typ := hdr[4]
	if typ != linkHello && typ != linkData {
		return 0, nil, fmt.Errorf("%w: link frame type %#x", errBadFrame, typ)
	}
	body := make([]byte, n-1)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, noEOF(err)
	}
	return typ, body, nil
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
