package dispatch

import (
	"net/netip"

	"github.com/emiago/sipgo/sip"
	"github.com/troika-sip/troika/sipstack/transport"
)

// Streams (TCP, TLS) are not dispatched: the node holding a stream socket
// processes what arrives on it, its sipgo stack keeping the connections.
// What a stream leg needs from the other nodes goes through that node:
//
//   - A processor sending on a stream socket another node holds (a callee
//     registered over TCP through another node's address) has a stream
//     relay socket: a relay socket named after the stream socket
//     ("tcp:198.51.100.10:5060"), whose Via and Contact say TCP, served
//     by a sipgo stack over a RelayPacketConn as if it were UDP
//     (buildRequest sends through it as UDP). Its messages go to the
//     holder as frames (frameOut), which writes each into the phone's
//     connection (its sipgo transport finds it by the phone's address, or
//     dials one from the socket's IP for a request).
//   - The holder passes what arrives on its stream sockets for a dialog of
//     another node (a Call-ID naming another processor: responses that
//     match no transaction here, and requests) to that node as frames
//     (frameIn), adding an empty rport to a request's top Via so the
//     answer goes to the phone's connection, not to its Via port.
//
// Because the processor's stack thinks the leg is UDP, it retransmits its
// requests until answered (at most a few times, T1 apart): the phone sees
// them as retransmissions on its connection and absorbs them.

// ForwardStreamRequest passes a request that arrived on a stream socket
// here to the node its Call-ID names, when that is another processor:
// true when it was handed over (the caller then ends its transaction
// without answering: the other node answers).
func (d *Dispatcher) ForwardStreamRequest(sock *transport.Socket, req *sip.Request) bool {
	node, ok := d.streamTarget(sock, req.CallID())
	if !ok {
		return false
	}
	if via := req.Via(); via != nil && !via.Params.Has("rport") {
		via.Params.Add("rport", "")
	}
	if !d.Forward(sock, node, req.Source(), []byte(req.String())) {
		return false
	}
	d.m.streamForwarded.Inc()
	return true
}

// ForwardStreamResponse passes a response that arrived on a stream socket
// and matched no transaction here to the node its Call-ID names.
func (d *Dispatcher) ForwardStreamResponse(sock *transport.Socket, res *sip.Response) bool {
	node, ok := d.streamTarget(sock, res.CallID())
	if !ok {
		return false
	}
	if !d.Forward(sock, node, res.Source(), []byte(res.String())) {
		return false
	}
	d.m.streamForwarded.Inc()
	return true
}

// streamTarget returns the processor a message on a stream socket belongs
// to, when it is not this node.
func (d *Dispatcher) streamTarget(sock *transport.Socket, cid *sip.CallIDHeader) (string, bool) {
	if !d.cfg.Enabled || !transport.IsStream(sock.Transport) || sock.Relay || cid == nil {
		return "", false
	}
	node, _, ok := parseMarker([]byte(cid.Value()))
	if !ok || string(node) == d.self {
		return "", false
	}
	if r := d.ring.Load(); r == nil || !r.has(node) {
		return "", false // its node is gone: processed here (adoption)
	}
	return string(node), true
}

// Forward passes a message received on sock from source to node, to be
// processed there as if it had arrived there.
func (d *Dispatcher) Forward(sock *transport.Socket, node, source string, payload []byte) bool {
	ap, err := netip.ParseAddrPort(source)
	if err != nil || len(payload) > maxFramePayload || d.cfg.Peers == nil {
		return false
	}
	f := dispatchFrame{kind: frameIn, stamp: d.now(), socket: sock.Name, peer: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), payload: payload}
	if !d.cfg.Peers.Send(node, appendFrame(make([]byte, 0, frameSize(f)), f)) {
		d.m.linkRefused.Inc()
		return false
	}
	return true
}

// sendStream writes a message a processor sent on a stream socket held
// here (frameOut) into the phone's connection. It runs on its own
// goroutine (a write may block), at most maxStreamWrites at once.
func (d *Dispatcher) sendStream(f dispatchFrame) {
	select {
	case d.streamWrites <- struct{}{}:
	default:
		d.m.drop(dropStreamBusy)
		return
	}
	sock := d.stacks.Stream(f.socket)
	if sock == nil {
		<-d.streamWrites
		d.m.drop(dropNoSocket)
		return
	}
	go func() {
		defer func() { <-d.streamWrites }()
		msg, err := d.parser.ParseSIP(f.payload)
		if err != nil {
			d.m.drop(dropBadFrame)
			return
		}
		msg.SetTransport(sip.NetworkToUpper(sock.Transport))
		msg.SetDestination(f.peer.String())
		if req, ok := msg.(*sip.Request); ok {
			req.Laddr = sip.Addr{IP: netip.MustParseAddr(sock.IP).AsSlice()}
		}
		if err := sock.UA.TransportLayer().WriteMsg(msg); err != nil {
			d.m.drop(dropWriteError)
			d.log.Debug("dispatch: writing a relayed message into a stream failed", "socket", sock.Name, "to", f.peer, "error", err)
			return
		}
		d.m.sentRelayed.Inc()
	}()
}
