package sipstack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/auth"
	"github.com/troika-sip/troika/sipstack/b2bua"
	"github.com/troika-sip/troika/sipstack/dispatch"
	"github.com/troika-sip/troika/sipstack/keepalive"
	"github.com/troika-sip/troika/sipstack/registrar"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// callShutdownWait bounds how long Run's shutdown waits for the
// goroutines of calls (unanswered calls ending, BYEs in flight).
// Answered calls stay in the cluster state for another node to adopt.
const callShutdownWait = 2 * time.Second

// Server runs troika's SIP sockets: one sipgo UserAgent and Server per
// ingress socket, all sharing the registrar.
type Server struct {
	cfg     Config
	state   *fsm.State
	store   Store
	log     *slog.Logger
	sipLog  *slog.Logger // handed to sipgo: see quietHandler
	m       *metrics
	parser  *sip.Parser
	tlsConf *tls.Config
	auth    *auth.Authenticator
	reg     *registrar.Registrar
	regs    *regPool             // REGISTERs over UDP (register_udp.go)
	gate    gate                 // handlers running
	calls   *b2bua.B2BUA         // the calls of this node
	disp    *dispatch.Dispatcher // dispatcher and relay sockets
	keep    *keepalive.Pinger    // NAT keepalive of the bindings of the sockets held here

	baseCtx    context.Context // cancelled when Run ends: aborts Propose calls
	cancelBase context.CancelFunc

	mu        sync.Mutex
	sockets   map[string]*transport.Socket // open sockets by name
	started   bool
	ready     chan struct{}
	wg        sync.WaitGroup // socket goroutines started by Run
	runCtx    context.Context
	managed   map[ingress]*managedSocket
	failures  map[ingress]bool
	tlsWarned map[string]bool

	addrMu sync.Mutex      // serializes ServeAddress and CloseAddress
	fed    map[string]bool // addresses opened by ServeAddress (under mu)
}

// New checks cfg and prepares a Server. state is the local replica read by
// the registrar; store is where it writes.
func New(cfg Config, state *fsm.State, store Store) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if state == nil || store == nil {
		return nil, errors.New("sipstack: state and store are required")
	}
	if err := transport.CheckLibrary(); err != nil {
		return nil, err
	}
	m := newMetrics(cfg.Metrics)
	log := cfg.Logger.With("node", cfg.NodeID)
	s := &Server{
		cfg:       cfg,
		state:     state,
		store:     store,
		log:       log,
		m:         m,
		parser:    transport.NewParser(),
		sockets:   map[string]*transport.Socket{},
		ready:     make(chan struct{}),
		managed:   map[ingress]*managedSocket{},
		failures:  map[ingress]bool{},
		tlsWarned: map[string]bool{},
		fed:       map[string]bool{},
	}
	s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	callMetrics := b2bua.NewMetrics(cfg.Metrics)
	ac := cfg.authConfig()
	ac.Logger, ac.VendorFailures = log, callMetrics.VendorAuthFailures()
	if s.auth, err = auth.New(ac, state); err != nil {
		return nil, err
	}
	rc := cfg.Registrar
	s.reg, err = registrar.New(registrar.Config{DefaultExpires: rc.DefaultExpires, MinExpires: rc.MinExpires,
		MaxExpires: rc.MaxExpires, MaxContacts: rc.MaxContacts, ProposeTimeout: rc.ProposeTimeout, MaxInFlight: rc.MaxInFlight,
		Metrics: cfg.Metrics, Logger: log, Now: cfg.Now}, state, store, s.auth)
	if err != nil {
		return nil, err
	}
	s.regs = newRegPool(s)
	if s.disp, err = dispatch.New(cfg.Dispatch, cfg.NodeID, s, cfg.Metrics, log); err != nil {
		return nil, err
	}
	s.calls, err = b2bua.New(s.baseCtx, b2bua.Config{Calls: cfg.Calls, Delivery: cfg.Delivery, NodeID: cfg.NodeID,
		NodeAlive: cfg.NodeAlive, AdoptThroughLog: cfg.AdoptThroughLog, QuotaThroughLog: cfg.QuotaThroughLog,
		Addresses: cfg.Addresses, Ports: cfg.mainPorts(), Now: cfg.Now, ClockJumps: cfg.ClockJumps, Logger: log,
		Metrics: callMetrics, Panics: m.stackErrors}, state, store, s.auth, s, s.disp)
	if err != nil {
		return nil, err
	}
	kc := cfg.Keepalive
	kc.Logger, kc.Metrics, kc.Now = log, cfg.Metrics, cfg.Now
	if s.keep, err = keepalive.New(kc, s, state, store, func() string { return s.disp.NewCallID("") }); err != nil {
		return nil, fmt.Errorf("registrar keepalive: %w", err)
	}
	s.sipLog = slog.New(transport.NewQuietHandler(log.Handler(), m.parseErrors, m.stackErrors)).With("component", "sipgo")
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("sip TLS certificate %s / key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		s.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return s, nil
}

// Ready is closed once Run has opened the configured sockets (and tried
// the alias sockets once). If Run fails before that it stays open: wait
// for Run's error too.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Sockets returns the names of the open sockets, e.g.
// "udp:127.0.0.2:5070", sorted: the sockets of the addresses this node
// holds (not the relay sockets it serves for addresses held elsewhere).
func (s *Server) Sockets() []string {
	s.mu.Lock()
	out := make([]string, 0, len(s.sockets))
	var relays []string
	for name, sock := range s.sockets {
		switch {
		case !sock.Usable.Load():
		case sock.Relay:
			relays = append(relays, name)
		default:
			out = append(out, name)
		}
	}
	s.mu.Unlock()
	for _, name := range relays { // not under s.mu: the dispatcher's lock comes first
		if s.disp.HasReal(name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Run opens the configured sockets (and, with ServeAliases, the alias
// sockets, kept in step with the replicated alias set), serves until ctx
// is done, then closes everything and returns nil. It returns an error,
// having closed what it opened, if a configured socket cannot be opened.
// Alias sockets that fail to open are logged, counted and retried.
//
// When the node manages its virtual and alias addresses (a [vip]
// section), ServeAliases is off and the address owner opens and closes
// the sockets of the addresses it holds with ServeAddress and
// CloseAddress instead.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("sipstack: Run called twice")
	}
	s.started = true
	runCtx, cancel := context.WithCancel(ctx)
	s.runCtx = runCtx
	s.mu.Unlock()
	s.disp.Start(runCtx)
	defer s.shutdown(cancel)
	s.regs.start(runCtx)

	for _, in := range s.mainIngresses() {
		if err := s.openManaged(in); err != nil {
			return fmt.Errorf("open %s: %w", in, err)
		}
	}
	var aliasCh <-chan struct{}
	if s.cfg.ServeAliases {
		aliasCh = s.reconcileAliases()
	}
	close(s.ready)
	s.log.Info("SIP sockets open", "sockets", s.Sockets())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.keep.Run(runCtx)
	}()

	retry := time.NewTicker(s.cfg.AliasRetry)
	defer retry.Stop()
	for {
		select {
		case <-runCtx.Done():
			return nil
		case <-aliasCh:
			aliasCh = s.reconcileAliases()
		case <-retry.C:
			if s.cfg.ServeAliases && s.hasFailures() {
				aliasCh = s.reconcileAliases()
			}
		}
	}
}

func (s *Server) shutdown(cancel context.CancelFunc) {
	cancel()
	s.disp.Close()
	s.wg.Wait()
	s.disp.Wait()
	s.cancelBase()
	s.gate.closeAndWait(s.cfg.Registrar.ProposeTimeout + time.Second)
	if !s.calls.Stop(callShutdownWait) {
		s.log.Warn("some call goroutines were still running at shutdown")
	}
	s.log.Info("SIP sockets closed", "calls_left", s.ActiveCalls())
}

// ServeUDP serves SIP on pc until ctx is done or pc is closed, then closes
// pc. The socket is named after pc.LocalAddr(), which for a virtual
// PacketConn fed by a dispatcher must be the real socket's address.
func (s *Server) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	sock, err := s.attach("udp", pc.LocalAddr())
	if err != nil {
		return err
	}
	return s.runUDP(ctx, sock, s.newUDP(sock, pc))
}

// ServeTCP serves SIP over the connections of l until ctx is done or l is
// closed, then closes l and its connections.
func (s *Server) ServeTCP(ctx context.Context, l net.Listener) error {
	sock, err := s.attach("tcp", l.Addr())
	if err != nil {
		return err
	}
	return s.runStream(ctx, sock, l, false)
}

// ServeTLS is ServeTCP for a listener whose connections are TLS (such as
// tls.NewListener's), or were TLS before a dispatcher terminated it: they
// are recorded as transport tls. The listener does the handshakes; Run's
// own TLS sockets use the configured certificate.
func (s *Server) ServeTLS(ctx context.Context, l net.Listener) error {
	sock, err := s.attach("tls", l.Addr())
	if err != nil {
		return err
	}
	return s.runStream(ctx, sock, l, false)
}

// attach creates the sipgo stack of a socket, routes its requests and
// lists it in Sockets.
func (s *Server) attach(transportName string, local net.Addr) (*transport.Socket, error) {
	return s.attachAs(transportName, local, false)
}

// attachAs is attach; relay marks a relay socket (sipstack/dispatch),
// before it is listed.
func (s *Server) attachAs(transportName string, local net.Addr, relay bool) (*transport.Socket, error) {
	sock, err := transport.NewSocket(transportName, local, transport.StackOptions{
		Parser: s.parser,
		TLS:    s.tlsConf,
		Log:    s.sipLog,
		StrayResponse: func(sock *transport.Socket, res *sip.Response) {
			if !s.disp.ForwardStreamResponse(sock, res) { // a stream leg of another node (sipstack/dispatch)
				s.m.strayResponses.Inc()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	sock.Relay = relay
	s.route(sock)
	s.mu.Lock()
	if _, dup := s.sockets[sock.Name]; dup {
		s.mu.Unlock()
		sock.Close()
		return nil, fmt.Errorf("socket %s is already served", sock.Name)
	}
	s.sockets[sock.Name] = sock
	s.mu.Unlock()
	s.m.openSockets.WithLabelValues(sock.Transport).Inc()
	return sock, nil
}

func (s *Server) detach(sock *transport.Socket) {
	s.mu.Lock()
	delete(s.sockets, sock.Name)
	s.mu.Unlock()
	s.m.openSockets.WithLabelValues(sock.Transport).Dec()
	sock.Close()
}

// newUDP wraps pc for sock and makes the socket usable at once: the
// caller may list it before runUDP's goroutine starts.
func (s *Server) newUDP(sock *transport.Socket, pc net.PacketConn) *transport.UDPConn {
	uc := transport.NewUDPConn(pc, s.cfg.MaxUDPPeers, s.m.udpRecycles.Inc)
	uc.Screen(func(data []byte, from net.Addr) ([]byte, []byte, net.Addr) { return s.screen(sock, uc, data, from) })
	sock.Listen(uc)
	return uc
}

// screen decides about a datagram of sock (read from uc) before sipgo
// reads it (sipmsg.ScreenDatagram): most go on to sipgo; malformed
// requests sipgo would drop or answer itself are refused here and
// counted; REGISTERs go to the registrar's workers (register_udp.go).
func (s *Server) screen(sock *transport.Socket, uc net.PacketConn, data []byte, from net.Addr) (pass, reply []byte, to net.Addr) {
	v := sipmsg.ScreenDatagram(s.parser, data, from.String())
	if v.Req != nil && v.Req.Method == sip.REGISTER && sock.Transport == "udp" {
		s.regs.take(sock, uc, v.Req, v.TxKey, from)
		return nil, nil, nil
	}
	switch {
	case v.Unparseable:
		s.m.parseErrors.Inc()
		s.log.Debug("dropped a datagram that cannot be parsed or answered", "socket", sock.Name, "source", from, "bad", v.Bad)
	case v.Bad != "":
		s.m.badRequests.WithLabelValues(v.Bad).Inc()
		s.log.Debug("refused a malformed request", "socket", sock.Name, "source", from, "bad", v.Bad)
	}
	if v.Response != nil {
		if ua, err := net.ResolveUDPAddr("udp", v.Dest); err == nil {
			return v.Pass, v.Response, ua
		}
	}
	return v.Pass, nil, nil
}

// runUDP serves a UDP socket until ctx ends, then unlists it.
func (s *Server) runUDP(ctx context.Context, sock *transport.Socket, uc *transport.UDPConn) error {
	defer s.detach(sock)
	return transport.ServeUDP(ctx, sock, uc)
}

// runStream serves a TCP or TLS listener until ctx ends, then unlists
// it; wrapTLS adds the TLS layer with the configured certificate (for
// plain TCP listeners Run opened).
func (s *Server) runStream(ctx context.Context, sock *transport.Socket, l net.Listener, wrapTLS bool) error {
	defer s.detach(sock)
	lim := transport.StreamLimits{Idle: s.cfg.TCPIdleTimeout, MaxConns: s.cfg.MaxConnsPerSocket, Refused: s.m.connsRefused.Inc}
	if wrapTLS {
		lim.TLS = s.tlsConf
	}
	return transport.ServeStream(ctx, sock, l, lim)
}

// gate counts running handlers so that shutdown can wait for them.
type gate struct {
	mu      sync.Mutex
	n       int
	closed  bool
	drained chan struct{}
}

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *gate) exit() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.n == 0 && g.drained != nil {
		close(g.drained)
		g.drained = nil
	}
}

func (g *gate) closeAndWait(timeout time.Duration) {
	g.mu.Lock()
	g.closed = true
	if g.n == 0 {
		g.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	g.drained = ch
	g.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(timeout):
	}
}

// ConfigureLibrary sets sipgo's process-wide settings: its UDP size limit
// and package-level logger (transport.ConfigureLibrary). The node calls it
// once, before New; New fails without it.
func ConfigureLibrary(log *slog.Logger) { transport.ConfigureLibrary(log) }
