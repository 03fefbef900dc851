package dispatch

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/troika-sip/troika/sipstack/transport"
)

// Dispatch frames: what dispatchers and processors send each other over
// the cluster link (the link adds its own length prefix and
// authentication; cluster/link.go). One frame is one datagram with its
// envelope:
//
//	kind     1 byte: frameIn (to process) or frameOut (to send)
//	stamp    8 bytes: the sender's clock, unix ns (relay latency)
//	socket   uvarint length + name, e.g. "udp:198.51.100.10:5060": the
//	         ingress socket, which also gives the transport (udp; tcp
//	         and tls for stream legs: stream.go)
//	peer     1 byte length (4 or 16) + IP + 2 bytes port: the phone's
//	         address (where a frameIn came from, where a frameOut goes)
//	payload  the rest: the SIP message, as received or to send
const (
	frameIn  byte = 'I'
	frameOut byte = 'O'

	maxFramePayload = 65535
	maxSocketName   = 64
)

var errBadDispatchFrame = errors.New("bad dispatch frame")

type dispatchFrame struct {
	kind    byte
	stamp   int64
	socket  string
	peer    netip.AddrPort
	payload []byte
}

// appendFrame encodes f.
func appendFrame(b []byte, f dispatchFrame) []byte {
	b = append(b, f.kind)
	b = binary.BigEndian.AppendUint64(b, uint64(f.stamp))
	b = binary.AppendUvarint(b, uint64(len(f.socket)))
	b = append(b, f.socket...)
	ip := f.peer.Addr().Unmap()
	if ip.Is4() {
		a := ip.As4()
		b = append(b, 4)
		b = append(b, a[:]...)
	} else {
		a := ip.As16()
		b = append(b, 16)
		b = append(b, a[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, f.peer.Port())
	return append(b, f.payload...)
}

func frameSize(f dispatchFrame) int {
	return 1 + 8 + binary.MaxVarintLen64 + len(f.socket) + 1 + 16 + 2 + len(f.payload)
}

// decodeFrame decodes a frame; the payload aliases b. The socket name
// must name a socket with a specific IP and the peer be a valid address.
func decodeFrame(b []byte) (dispatchFrame, error) {
	var f dispatchFrame
	if len(b) < 1+8+1 {
		return f, errBadDispatchFrame
	}
	f.kind = b[0]
	if f.kind != frameIn && f.kind != frameOut {
		return f, errBadDispatchFrame
	}
	f.stamp = int64(binary.BigEndian.Uint64(b[1:9]))
	b = b[9:]
	n, k := binary.Uvarint(b)
	if k <= 0 || k != uvarintLen(n) || n == 0 || n > maxSocketName || n > uint64(len(b)-k) {
		return f, errBadDispatchFrame
	}
	f.socket = string(b[k : k+int(n)])
	b = b[k+int(n):]
	if _, err := transport.ParseSocketName(f.socket); err != nil {
		return f, errBadDispatchFrame
	}
	if len(b) < 1 {
		return f, errBadDispatchFrame
	}
	l := int(b[0])
	if (l != 4 && l != 16) || len(b) < 1+l+2 {
		return f, errBadDispatchFrame
	}
	ip, _ := netip.AddrFromSlice(b[1 : 1+l])
	port := binary.BigEndian.Uint16(b[1+l:])
	if port == 0 || ip.IsUnspecified() || ip.Is4In6() { // one encoding per address
		return f, errBadDispatchFrame
	}
	f.peer = netip.AddrPortFrom(ip, port)
	f.payload = b[1+l+2:]
	if len(f.payload) == 0 || len(f.payload) > maxFramePayload {
		return f, errBadDispatchFrame
	}
	return f, nil
}

func uvarintLen(n uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], n)
}
