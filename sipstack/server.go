package sipstack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/auth"
	"github.com/troika-sip/troika/sipstack/b2bua"
	"github.com/troika-sip/troika/sipstack/dispatch"
	"github.com/troika-sip/troika/sipstack/registrar"
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
	gate    gate                 // handlers running
	calls   *b2bua.B2BUA         // the calls of this node
	disp    *dispatch.Dispatcher // dispatcher and relay sockets

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
	if s.disp, err = dispatch.New(cfg.Dispatch, cfg.NodeID, s, cfg.Metrics, log); err != nil {
		return nil, err
	}
	s.calls, err = b2bua.New(s.baseCtx, b2bua.Config{Calls: cfg.Calls, Delivery: cfg.Delivery, NodeID: cfg.NodeID,
		NodeAlive: cfg.NodeAlive, AdoptThroughLog: cfg.AdoptThroughLog, Addresses: cfg.Addresses, Ports: cfg.mainPorts(),
		Now: cfg.Now, Logger: log, Metrics: callMetrics, Panics: m.stackErrors}, state, store, s.auth, s, s.disp)
	if err != nil {
		return nil, err
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
	sock.Listen(uc)
	return uc
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
