package cluster

import (
	"bufio"
	"encoding/binary"
	"fmt"
)

// Forwarding link frames (framed as framing.go says):
//
//	uint32 length (big endian, of what follows) | code | uint64 request id | body
//
// A request's code is an op; a response's is respOK or respErr. Many
// requests are in flight on one connection; responses come back in any
// order, matched by id.
const (
	frameHeader  = 1 + 8
	maxFrameSize = 4 << 20

	opApply        byte = 0x01 // body: an encoded fsm command; ok body: fsm.EncodeResult
	opAddVoter     byte = 0x02 // body: id, addr (uvarint-prefixed strings)
	opRemoveServer byte = 0x03 // body: id
	// opTransferLeadership: body: id, addr: hand leadership to that voter
	// (snapshot.go: raft restores a backup on the leader).
	opTransferLeadership byte = 0x04

	// opApplyTrusted never goes on the wire: a command encoded by this
	// binary, applied without the leader's decode check when this node
	// leads (it is sent as opApply otherwise).
	opApplyTrusted byte = 0xf1

	respOK  byte = 0x80
	respErr byte = 0x81 // body: kind | uvarint-prefixed leader address | message
)

// Error kinds in a respErr body.
const (
	// kindRetry: not applied, and another try (maybe elsewhere) may work:
	// not the leader, leadership transfer, shutting down, queue full.
	kindRetry byte = 0x01
	// kindUnknown: may or may not have been applied (leadership lost while
	// committing). Commands are idempotent, so retrying is safe.
	kindUnknown byte = 0x02
	// kindPermanent: retrying the same request cannot help.
	kindPermanent byte = 0x03
)

type frame struct {
	code byte
	id   uint64
	body []byte
}

// fwdFraming is the forwarding link's frame format (framing.go).
func fwdFraming() framing { return framing{limit: maxFrameSize} }

func writeFrame(w *bufio.Writer, f frame) error {
	var hdr [frameHeader]byte
	hdr[0] = f.code
	binary.BigEndian.PutUint64(hdr[1:], f.id)
	return fwdFraming().write(w, hdr[:], f.body)
}

// readFrame reads one frame; a frame too short or too long is errBadFrame.
func readFrame(r *bufio.Reader) (frame, error) {
	var hdr [frameHeader]byte
	body, err := fwdFraming().read(r, hdr[:], nil)
	if err != nil {
		return frame{}, err
	}
	return frame{code: hdr[0], id: binary.BigEndian.Uint64(hdr[1:]), body: body}, nil
}

// appendString appends a uvarint-length-prefixed string.
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// readString reads a uvarint-length-prefixed string from b.
func readString(b []byte) (string, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, errBadFrame
	}
	return string(b[k : k+int(n)]), b[k+int(n):], nil
}

// idAddrBody is the body of opAddVoter and opTransferLeadership: a
// voter's node id and its cluster address.
func idAddrBody(id, addr string) []byte { return appendString(appendString(nil, id), addr) }

// readIDAddr reads an idAddrBody.
func readIDAddr(b []byte) (id, addr string, err error) {
	id, rest, err := readString(b)
	if err != nil {
		return "", "", err
	}
	addr, _, err = readString(rest)
	return id, addr, err
}

// remoteError is an error response from the node a request was sent to.
type remoteError struct {
	addr   string // who answered
	kind   byte
	leader string // its idea of the leader's address, if any
	msg    string
}

func (e *remoteError) Error() string {
	return fmt.Sprintf("%s: %s", e.addr, e.msg)
}

func encodeErrBody(kind byte, leader, msg string) []byte {
	b := make([]byte, 0, 1+len(leader)+len(msg)+4)
	b = append(b, kind)
	b = appendString(b, leader)
	return append(b, msg...)
}

func decodeErrBody(addr string, body []byte) (*remoteError, error) {
	if len(body) < 1 {
		return nil, errBadFrame
	}
	leader, rest, err := readString(body[1:])
	if err != nil {
		return nil, err
	}
	return &remoteError{addr: addr, kind: body[0], leader: leader, msg: string(rest)}, nil
}
