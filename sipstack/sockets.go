package sipstack

import (
	"slices"

	"github.com/troika-sip/troika/sipstack/transport"
)

// The SIP server's sockets as the B2BUA sends from them (b2bua.Sockets).

// Named returns the open socket called name, or nil. A socket another
// node holds is served by a relay socket (sipstack/dispatch; a stream
// relay for TCP and TLS), opened here when there is none yet.
func (s *Server) Named(name string) *transport.Socket {
	s.mu.Lock()
	sock := s.sockets[name]
	s.mu.Unlock()
	if sock != nil && sock.Usable.Load() {
		return sock
	}
	if sock != nil || !s.disp.CanRelay(name) {
		return nil
	}
	sock, err := s.disp.Relay(name)
	if err != nil {
		s.log.Warn("dispatch: cannot open a relay socket", "socket", name, "error", err)
		return nil
	}
	return sock
}

// Main returns an open socket of transport on a main address (the first
// configured address that has one), or nil.
func (s *Server) Main(network string) *transport.Socket {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ip := range s.cfg.Addresses {
		ip = transport.CanonicalIP(ip)
		var best *transport.Socket
		for _, sock := range s.sockets {
			if sock.Transport == network && sock.IP == ip && (best == nil || sock.Port < best.Port) {
				best = sock
			}
		}
		if best != nil {
			return best
		}
	}
	return nil
}

// All returns the names of every socket this node can send from:
// those it holds and its relay sockets.
func (s *Server) All() []string {
	s.mu.Lock()
	out := make([]string, 0, len(s.sockets))
	for name, sock := range s.sockets {
		if sock.Usable.Load() {
			out = append(out, name)
		}
	}
	s.mu.Unlock()
	slices.Sort(out)
	return out
}
