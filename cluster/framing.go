package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Both message links of the cluster port, after their handshake, carry
// length-prefixed frames:
//
//	uint32 length (big endian, of what follows) | fixed header | body
//
// The forwarding link's header is code | uint64 request id (frame.go),
// the dispatch link's a type byte (link_frame.go). These bytes are what
// nodes of different versions exchange during a rolling upgrade: they do
// not change (TestFrameBytesPinned).

// errBadFrame: a frame whose length or header cannot be right; the
// connection it came on is closed.
var errBadFrame = errors.New("bad frame")

// framing is one link's frame format.
type framing struct {
	// name prefixes the length in errors ("" for the forwarding link,
	// whose messages predate the dispatch link).
	name string
	// limit is the largest length: header and body.
	limit int
}

// write writes one frame of header hdr and body body.
func (f framing) write(w *bufio.Writer, hdr, body []byte) error {
	n := len(hdr) + len(body)
	if n > f.limit {
		return fmt.Errorf("%sframe of %d bytes is over the %d limit", f.name, n, f.limit)
	}
	head := binary.BigEndian.AppendUint32(w.AvailableBuffer(), uint32(n))
	if _, err := w.Write(append(head, hdr...)); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// read reads one frame: its fixed header into hdr (len(hdr) bytes) and
// its body into a new slice (the caller may keep it). A length shorter
// than the header or over the limit is errBadFrame; so is a header that
// check refuses (it runs before the body is read; nil accepts any). The
// stream ending cleanly before a frame is io.EOF, inside one
// io.ErrUnexpectedEOF.
func (f framing) read(r *bufio.Reader, hdr []byte, check func(hdr []byte) error) ([]byte, error) {
	var prefix [4]byte
	if err := readSmall(r, prefix[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(prefix[:])
	if n < uint32(len(hdr)) || n > uint32(f.limit) {
		return nil, fmt.Errorf("%w: %slength %d", errBadFrame, f.name, n)
	}
	if err := readSmall(r, hdr); err != nil {
		return nil, noEOF(err)
	}
	if check != nil {
		if err := check(hdr); err != nil {
			return nil, err
		}
	}
	body := make([]byte, int(n)-len(hdr))
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, noEOF(err)
	}
	return body, nil
}

// readSmall fills p (a few bytes: within r's buffer) like io.ReadFull,
// through r's buffer, so that p does not escape to the heap.
func readSmall(r *bufio.Reader, p []byte) error {
	b, err := r.Peek(len(p))
	if err != nil {
		if len(b) > 0 {
			err = noEOF(err)
		}
		return err
	}
	copy(p, b)
	_, err = r.Discard(len(p))
	return err
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
