package sipstack

import (
	"context"
	"net"

	"github.com/troika-sip/troika/sipstack/dispatch"
	"github.com/troika-sip/troika/sipstack/transport"
)

// The SIP server's side of the dispatcher (sipstack/dispatch): the
// dispatcher's configuration and cluster view, as the node gives them,
// and the sockets it asks for (the Server is its dispatch.Stacks).

// DispatchConfig configures the dispatcher (dispatch.Config).
type DispatchConfig = dispatch.Config

// Peers reaches the other nodes for the dispatcher (dispatch.Peers).
type Peers = dispatch.Peers

// Processor is a node that may process SIP messages (dispatch.Processor).
type Processor = dispatch.Processor

// SetProcessors tells the dispatcher which nodes may process messages now
// (dispatch.Dispatcher.SetProcessors).
func (s *Server) SetProcessors(ps []Processor) { s.disp.SetProcessors(ps) }

// HandleFrame takes a frame another node sent over the cluster link
// (dispatch.Dispatcher.HandleFrame).
func (s *Server) HandleFrame(from string, frame []byte) { s.disp.HandleFrame(from, frame) }

// OpenRelay creates the stack of a relay socket fed by pc
// (dispatch.Stacks).
func (s *Server) OpenRelay(name string, pc net.PacketConn) (*transport.Socket, func(context.Context) error, error) {
	sock, err := s.attachAs(transport.TransportOf(name), pc.LocalAddr(), true)
	if err != nil {
		return nil, nil, err
	}
	uc := s.newUDP(sock, pc)
	return sock, func(ctx context.Context) error { return s.runUDP(ctx, sock, uc) }, nil
}

// Stream returns the stream socket called name held here (dispatch.Stacks).
func (s *Server) Stream(name string) *transport.Socket {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sock := s.sockets[name]; sock != nil && !sock.Relay && transport.IsStream(sock.Transport) {
		return sock
	}
	return nil
}
