package sipstack

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/transport"
)

// The addresses the SIP server listens on: its configured ones all the
// time, the IP aliases of the replicated state (ServeAliases), or those the
// node's address owner gives it (ServeAddress, CloseAddress), each on its
// main ports and an alias's extra ports.

// ingress is a socket Run should have open: a configured or alias address
// and port (the port may be 0: any free port).
type ingress struct {
	transport string
	ip        string
	port      int
}

func (i ingress) String() string {
	return i.transport + ":" + net.JoinHostPort(i.ip, strconv.Itoa(i.port))
}

type managedSocket struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *Server) mainIngresses() []ingress {
	var out []ingress
	for _, ip := range s.cfg.Addresses {
		out = append(out, s.portsFor(transport.CanonicalIP(ip), nil)...)
	}
	return out
}

// portsFor lists the ingresses of ip: the main ports of every transport,
// plus the extra ports of an alias.
func (s *Server) portsFor(ip string, extra *fsm.AliasPorts) []ingress {
	var out []ingress
	add := func(transport string, ports ...[]int) {
		seen := map[int]bool{}
		for _, list := range ports {
			for _, p := range list {
				if !seen[p] {
					seen[p] = true
					out = append(out, ingress{transport, ip, p})
				}
			}
		}
	}
	var eu, et, es []int
	if extra != nil {
		eu, et, es = extra.UDP, extra.TCP, extra.TLS
	}
	add("udp", s.cfg.UDPPorts, eu)
	add("tcp", s.cfg.TCPPorts, et)
	if s.tlsConf != nil {
		add("tls", s.cfg.TLSPorts, es)
	} else if len(es) > 0 {
		s.mu.Lock()
		first := !s.tlsWarned[ip]
		s.tlsWarned[ip] = true
		s.mu.Unlock()
		if first {
			s.log.Warn("alias has TLS ports but no TLS certificate is configured; not listening on them", "ip", ip, "ports", es)
		}
	}
	return out
}

// reconcileAliases opens the sockets of new aliases and closes those of
// removed ones. It returns the channel closed at the next alias change.
func (s *Server) reconcileAliases() <-chan struct{} {
	ch := s.state.AliasesChanged() // before reading, so no change is missed
	want := map[ingress]bool{}
	for _, in := range s.mainIngresses() {
		want[in] = true
	}
	for _, a := range s.state.Aliases() {
		for _, in := range s.portsFor(transport.CanonicalIP(a.IP), &a.Ports) {
			want[in] = true
		}
	}
	s.mu.Lock()
	var stale []ingress
	for in := range s.managed {
		if !want[in] && !s.fed[in.ip] {
			stale = append(stale, in)
		}
	}
	s.mu.Unlock()
	for _, in := range stale {
		s.closeManaged(in)
	}
	for in := range want {
		if s.isOpen(in) {
			continue
		}
		if err := s.openManaged(in); err != nil {
			s.m.socketErrors.Inc()
			s.mu.Lock()
			first := !s.failures[in]
			s.failures[in] = true
			s.mu.Unlock()
			if first {
				s.log.Warn("cannot open alias socket; retrying", "socket", in.String(), "every", s.cfg.AliasRetry, "error", err)
			}
			continue
		}
		s.mu.Lock()
		delete(s.failures, in)
		s.mu.Unlock()
	}
	s.mu.Lock()
	for in := range s.failures {
		if !want[in] {
			delete(s.failures, in)
		}
	}
	s.mu.Unlock()
	return ch
}

func (s *Server) hasFailures() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.failures) > 0
}

// isOpen reports whether the socket of in is open (managed) here.
func (s *Server) isOpen(in ingress) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, open := s.managed[in]
	return open
}

// openManaged opens the socket of in and serves it until closeManaged or
// the end of Run.
func (s *Server) openManaged(in ingress) error {
	addr := net.JoinHostPort(in.ip, strconv.Itoa(in.port))
	var (
		name  string
		serve func(context.Context) error
	)
	switch in.transport {
	case "udp":
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		s.sizeBuffers(pc)
		if s.cfg.Dispatch.Enabled {
			// The dispatcher reads it; this node's stack for it is a
			// relay socket like any other node's (dispatch.go).
			if name, serve, err = s.disp.OpenReal(pc); err != nil {
				pc.Close()
				return err
			}
			break
		}
		sock, err := s.attach("udp", pc.LocalAddr())
		if err != nil {
			pc.Close()
			return err
		}
		uc := s.newUDP(sock, pc)
		name = sock.Name
		serve = func(ctx context.Context) error { return s.runUDP(ctx, sock, uc) }
	case "tcp", "tls":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		sock, err := s.attach(in.transport, l.Addr())
		if err != nil {
			l.Close()
			return err
		}
		name = sock.Name
		serve = func(ctx context.Context) error { return s.runStream(ctx, sock, l, in.transport == "tls") }
	default:
		return fmt.Errorf("unknown transport %q", in.transport)
	}
	ctx, cancel := context.WithCancel(s.runCtx)
	ms := &managedSocket{name: name, cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	s.managed[in] = ms
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(ms.done)
		if err := serve(ctx); err != nil {
			s.log.Error("SIP socket stopped", "socket", name, "error", err)
		}
	}()
	return nil
}

func (s *Server) closeManaged(in ingress) {
	s.mu.Lock()
	ms := s.managed[in]
	delete(s.managed, in)
	s.mu.Unlock()
	if ms == nil {
		return
	}
	ms.cancel()
	<-ms.done
	s.log.Info("closed socket", "socket", ms.name)
}

// ServeAddress opens the SIP sockets of ip, an address this node has just
// taken (a virtual IP, with extra nil, or an IP alias with its extra
// ports): one socket per main port of every transport plus the extra
// ports. Called again for the same address it opens what is missing and
// closes the sockets of ports no longer wanted (an alias whose ports
// changed). It returns once the sockets are open, or the first error, the
// sockets already open left as they are (CloseAddress undoes it). The
// address must be configured on the host first, and Run must be running.
func (s *Server) ServeAddress(ip string, extra *fsm.AliasPorts) error {
	ip = transport.CanonicalIP(ip)
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	s.mu.Lock()
	runCtx := s.runCtx
	s.mu.Unlock()
	if runCtx == nil || runCtx.Err() != nil {
		return fmt.Errorf("sipstack: serve %s: the SIP server is not running", ip)
	}
	for _, a := range s.cfg.Addresses {
		if transport.CanonicalIP(a) == ip {
			return fmt.Errorf("sipstack: serve %s: it is a configured address (sip.addresses), served all the time", ip)
		}
	}
	want := map[ingress]bool{}
	for _, in := range s.portsFor(ip, extra) {
		want[in] = true
	}
	s.mu.Lock()
	s.fed[ip] = true
	var stale []ingress
	for in := range s.managed {
		if in.ip == ip && !want[in] {
			stale = append(stale, in)
		}
	}
	s.mu.Unlock()
	for _, in := range stale {
		s.closeManaged(in)
	}
	for _, in := range s.portsFor(ip, extra) {
		if s.isOpen(in) {
			continue
		}
		if err := s.openManaged(in); err != nil {
			s.m.socketErrors.Inc()
			return fmt.Errorf("sipstack: open %s: %w", in, err)
		}
	}
	return nil
}

// CloseAddress closes every socket ServeAddress opened on ip and waits
// until they are closed. Closing an address with no socket is a no-op.
func (s *Server) CloseAddress(ip string) {
	ip = transport.CanonicalIP(ip)
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	s.mu.Lock()
	var open []ingress
	if s.fed[ip] {
		for in := range s.managed {
			if in.ip == ip {
				open = append(open, in)
			}
		}
	}
	delete(s.fed, ip)
	s.mu.Unlock()
	for _, in := range open {
		s.closeManaged(in)
	}
}

// sizeBuffers asks the kernel for UDPSocketBuffer bytes of receive and
// send buffer on pc. A refusal is logged: the socket works with the
// default.
func (s *Server) sizeBuffers(pc net.PacketConn) {
	uc, ok := pc.(*net.UDPConn)
	if !ok || s.cfg.UDPSocketBuffer < 0 {
		return
	}
	for what, set := range map[string]func(int) error{"receive": uc.SetReadBuffer, "send": uc.SetWriteBuffer} {
		if err := set(s.cfg.UDPSocketBuffer); err != nil {
			s.log.Warn("could not size a UDP socket's buffer", "socket", pc.LocalAddr().String(), "buffer", what,
				"bytes", s.cfg.UDPSocketBuffer, "error", err)
		}
	}
}
