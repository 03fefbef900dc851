package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/troika-sip/troika/internal/retry"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// Config configures the dispatcher and the processing role.
type Config struct {
	// Enabled makes this node dispatch the datagrams of the UDP sockets
	// it holds (otherwise it processes them all itself, with sipgo
	// reading the real socket). Frames from other nodes are processed
	// either way.
	Enabled bool
	// Peers reaches the other nodes; required when Enabled.
	Peers Peers
	// RelayQueue bounds the datagrams waiting to be read by the stack of
	// one relay socket. 4096 when zero.
	RelayQueue int
	// MaxRelaySockets bounds the relay sockets (one per ingress socket of
	// the cluster). 1024 when zero.
	MaxRelaySockets int
}

// Peers is what the dispatcher needs from the cluster; node/dispatch.go
// implements it over cluster.Link and the ownership map.
type Peers interface {
	// Send queues an encoded frame for node, never blocking. false: the
	// frame was not queued (queue full, node not connected) and is lost.
	Send(node string, frame []byte) bool
	// Holder names the node holding the real socket called socket
	// ("udp:198.51.100.10:5060"): the ownership map's holder of a virtual
	// IP or alias, or the node whose own socket (sip.addresses) it is.
	Holder(socket string) (node string, ok bool)
	// Dispatches reports whether node is up and takes frames (it runs
	// the dispatch link): a node of an older version does not.
	Dispatches(node string) bool
}

const (
	defaultRelayQueue      = 4096
	defaultMaxRelaySockets = 1024
	readBuffer             = 65536
	// maxDispatchDatagram bounds the datagrams a dispatcher takes: SIP
	// over UDP stays far below it (RFC 3261 §18.1.1 moves requests near
	// the MTU to TCP), and the queues hold at most this much per entry.
	maxDispatchDatagram = 16 << 10
	maxStreamWrites     = 256
)

// readRetry paces the reads of a real socket after an error other than
// its closing.
var readRetry = retry.Policy{Initial: 10 * time.Millisecond, Max: time.Second}

func (d *Dispatcher) now() int64 { return time.Now().UnixNano() }

var (
	errNoHolder      = errors.New("no node holds the socket's address")
	errTooManyRelays = errors.New("too many relay sockets")
)

// Stacks is what the dispatcher needs from the node's SIP sockets.
type Stacks interface {
	// OpenRelay creates the sipgo stack of the relay socket called name,
	// reading pc, and lists it among the node's sockets, usable at once.
	// serve runs the stack until its context ends, then unlists it.
	OpenRelay(name string, pc net.PacketConn) (sock *transport.Socket, serve func(context.Context) error, err error)
	// Stream returns the stream (TCP or TLS) socket called name whose
	// connections this node holds (not a relay socket), or nil.
	Stream(name string) *transport.Socket
}

// Dispatcher is the dispatcher of one node: it reads the real UDP sockets
// of the addresses the node holds, hands each datagram to its processing
// node, and serves the relay sockets of the node's own processing role.
type Dispatcher struct {
	cfg    Config
	self   string
	stacks Stacks
	parser *sip.Parser // for messages written into streams (sendStream)
	log    *slog.Logger
	m      *metrics
	ring   atomic.Pointer[ring]

	streamWrites chan struct{} // bounds sendStream's goroutines

	wg sync.WaitGroup // relay sockets' goroutines (Wait)

	mu     sync.RWMutex
	runCtx context.Context         // Start's; nil before
	closed bool                    // shutdown: no new relay sockets
	real   map[string]*realSocket  // real UDP sockets open here, by name
	relays map[string]*relaySocket // relay sockets, by name
	origin map[string]string       // socket name -> the node that last dispatched a frame for it
}

// realSocket is a UDP socket of an address this node holds, read by the
// dispatcher.
type realSocket struct {
	name  string
	pc    net.PacketConn
	local *relaySocket // this node's stack for the socket
}

// New returns the dispatcher of node self (its processing role too:
// frames from other nodes are processed whether or not cfg.Enabled).
func New(cfg Config, self string, stacks Stacks, reg prometheus.Registerer, log *slog.Logger) (*Dispatcher, error) {
	if cfg.Enabled && cfg.Peers == nil {
		return nil, errors.New("dispatch is enabled but no Peers are given")
	}
	if cfg.RelayQueue <= 0 {
		cfg.RelayQueue = defaultRelayQueue
	}
	if cfg.MaxRelaySockets <= 0 {
		cfg.MaxRelaySockets = defaultMaxRelaySockets
	}
	return &Dispatcher{cfg: cfg, self: self, stacks: stacks, parser: transport.NewParser(), log: log, m: newMetrics(reg),
		streamWrites: make(chan struct{}, maxStreamWrites),
		real:         map[string]*realSocket{}, relays: map[string]*relaySocket{}, origin: map[string]string{}}, nil
}

// Start lets relay sockets open; they run until ctx ends.
func (d *Dispatcher) Start(ctx context.Context) {
	d.mu.Lock()
	d.runCtx = ctx
	d.mu.Unlock()
}

// Close stops the opening of relay sockets (the SIP server is stopping).
func (d *Dispatcher) Close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
}

// Wait waits for the relay sockets' goroutines, once Start's context has
// ended and Close has been called.
func (d *Dispatcher) Wait() { d.wg.Wait() }

// SetProcessors tells the dispatcher which nodes may process messages
// now (this node included when it is one). The node calls it whenever
// the cluster's health view changes; until the first call every datagram
// is processed where it arrives.
func (d *Dispatcher) SetProcessors(ps []Processor) {
	r := newRing(ps)
	old := d.ring.Swap(r)
	if old == nil || !equalRings(old, r) {
		d.log.Info("dispatch: processing nodes", "nodes", r.ids(), "draining", r.draining())
	}
}

func equalRings(a, b *ring) bool {
	if len(a.nodes) != len(b.nodes) {
		return false
	}
	for i := range a.nodes {
		if a.nodes[i].id != b.nodes[i].id || a.nodes[i].draining != b.nodes[i].draining {
			return false
		}
	}
	return true
}

func (r *ring) draining() []string {
	var out []string
	for _, n := range r.nodes {
		if n.draining {
			out = append(out, n.id)
		}
	}
	return out
}

// route picks the node that processes msg; remote is false for this node.
func (d *Dispatcher) route(msg []byte) (node string, remote bool) {
	r := d.ring.Load()
	if r == nil || len(r.nodes) == 0 {
		return d.self, false
	}
	info, ok := scanMessage(msg)
	if !ok {
		return d.self, false
	}
	// A fresh request (no To tag) starts a transaction a draining node
	// must not take: an INVITE, a REGISTER, and a CANCEL, which goes
	// where its INVITE went (a CANCEL of a call on another node is passed
	// on there: forwardToCallNode).
	fresh := !info.response && !info.toTag && string(info.method) != "ACK"
	var key uint64
	if n, k, ok := parseMarker(info.callID); ok {
		if r.serves(n, fresh) {
			return string(n), string(n) != d.self
		}
		key = k
	} else {
		key = callIDKey(info.callID)
	}
	id, ok := r.pick(key, fresh)
	if !ok {
		return d.self, false
	}
	return id, id != d.self
}

// Owns reports whether this node is where a Call-ID's messages go now:
// false when no processors are known.
func (d *Dispatcher) Owns(callID string) (mine, known bool) {
	r := d.ring.Load()
	if r == nil || len(r.nodes) == 0 {
		return false, false
	}
	if n, _, ok := parseMarker([]byte(callID)); ok && r.has(n) {
		return string(n) == d.self, true
	}
	id, _ := r.pick(callIDKey([]byte(callID)), false)
	return id == d.self, true
}

// ForwardToCallNode passes a request of a dialog this node does not run
// (an in-dialog request, an ACK or a CANCEL that matched nothing here) to
// node, which the cluster state says runs its call, when that is another
// live processor: after a membership change the Call-ID hashes elsewhere,
// but the call's node still runs it. true when it was passed on (the
// caller ends its transaction without answering).
func (d *Dispatcher) ForwardToCallNode(sock *transport.Socket, node string, req *sip.Request) bool {
	r := d.ring.Load()
	if r == nil || node == d.self || !r.has([]byte(node)) {
		return false
	}
	if !d.Forward(sock, node, req.Source(), []byte(req.String())) {
		return false
	}
	d.m.callForwarded.Inc()
	d.log.Debug("dispatch: passed a request to the node running its call", "method", string(req.Method),
		"call_id", req.CallID().Value(), "node", node)
	return true
}

// ForwardFresh passes a request this node cannot match, while it drains,
// to the node that takes the fresh requests of its Call-ID: the INVITE
// of a non-2xx ACK went there.
func (d *Dispatcher) ForwardFresh(sock *transport.Socket, req *sip.Request) bool {
	r := d.ring.Load()
	cid := req.CallID()
	if r == nil || cid == nil || r.serves([]byte(d.self), true) || !r.has([]byte(d.self)) {
		return false // not draining
	}
	key := callIDKey([]byte(cid.Value()))
	if _, k, ok := parseMarker([]byte(cid.Value())); ok {
		key = k
	}
	node, ok := r.pick(key, true)
	if !ok || node == d.self {
		return false
	}
	return d.Forward(sock, node, req.Source(), []byte(req.String()))
}

// NewCallID makes the Call-ID of a dialog the switch starts: it names
// this node, with the key of the Call-ID the dialog belongs with (the
// caller's, for a callee leg; "" for none). A node id that cannot go into
// a Call-ID gets a random one.
func (d *Dispatcher) NewCallID(with string) string {
	if !validMarkerNode(d.self) {
		return randomCallID()
	}
	var key uint64
	if with != "" {
		key = callIDKey([]byte(with))
	} else {
		key = callIDKey([]byte(randomCallID()))
	}
	return markedCallID(d.self, key)
}

// randomCallID is a Call-ID that names no node.
func randomCallID() string { return sip.GenerateTagN(24) }

// validMarkerNode reports whether a node id can go into a Call-ID: the
// cluster's node id syntax (letters, digits, _ . -; at most 64).
func validMarkerNode(id string) bool {
	return len(id) <= 64 && sipmsg.AlnumOr(id, "_.-")
}

// OpenReal opens a real UDP socket for dispatching: its datagrams are
// read by serve, and this node's relay socket of the same name is its
// local stack. It returns the socket's name.
func (d *Dispatcher) OpenReal(pc net.PacketConn) (string, func(context.Context) error, error) {
	ap, ok := transport.AddrPort(pc.LocalAddr())
	if !ok || ap.Addr().IsUnspecified() {
		return "", nil, fmt.Errorf("local address %v: a SIP socket needs a specific IP (it is recorded as the phone's ingress)", pc.LocalAddr())
	}
	name := transport.SocketName("udp", ap)
	local, err := d.relayOf(name, true)
	if err != nil {
		return "", nil, err
	}
	rs := &realSocket{name: name, pc: pc, local: local}
	d.mu.Lock()
	if _, dup := d.real[name]; dup {
		d.mu.Unlock()
		return "", nil, fmt.Errorf("socket %s is already served", name)
	}
	d.real[name] = rs
	d.mu.Unlock()
	d.m.realSockets.Inc()
	serve := func(ctx context.Context) error {
		defer func() {
			d.mu.Lock()
			if d.real[name] == rs {
				delete(d.real, name)
			}
			d.mu.Unlock()
			d.m.realSockets.Dec()
		}()
		stop := context.AfterFunc(ctx, func() { pc.Close() })
		defer stop()
		defer pc.Close()
		return d.readLoop(rs)
	}
	return name, serve, nil
}

// readLoop reads a real socket until it is closed.
func (d *Dispatcher) readLoop(rs *realSocket) error {
	buf := make([]byte, readBuffer)
	backoff := readRetry.New()
	for {
		n, from, err := rs.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			d.log.Warn("dispatch: read error; retrying", "socket", rs.name, "error", err, "retry_in", backoff.Next())
			backoff.Wait(nil)
			continue
		}
		backoff.Reset()
		if n == 0 {
			continue
		}
		d.dispatch(rs, buf[:n], from)
	}
}

// dispatch hands one datagram received on rs to its processing node.
// msg is only valid during the call.
func (d *Dispatcher) dispatch(rs *realSocket, msg []byte, from net.Addr) {
	if len(msg) > maxDispatchDatagram {
		d.m.drop(dropOversized)
		return
	}
	node, remote := d.route(msg)
	if remote {
		if ap, ok := transport.AddrPort(from); ok {
			f := dispatchFrame{kind: frameIn, stamp: d.now(), socket: rs.name, peer: ap, payload: msg}
			if d.cfg.Peers.Send(node, appendFrame(make([]byte, 0, frameSize(f)), f)) {
				d.m.datagramsRemote.Inc()
				return
			}
			d.m.linkRefused.Inc() // processed here instead
		}
	}
	d.m.datagramsLocal.Inc()
	p := append([]byte(nil), msg...)
	local := rs.local
	if err := local.rc.Deliver(p, from); err != nil {
		if errors.Is(err, net.ErrClosed) {
			// The local stack ended (it is restarted): try once more.
			if local, err = d.relayOf(rs.name, true); err == nil {
				rs.local = local
				err = local.rc.Deliver(p, from)
			}
		}
		if err != nil {
			d.m.drop(dropRelayQueue)
		}
	}
}

// HandleFrame takes a frame another node sent over the cluster link: a
// datagram to process here, or one to send out of a socket this node
// holds. from is the sending node. frame belongs to the Server from now
// on. It never blocks.
func (d *Dispatcher) HandleFrame(from string, frame []byte) {
	f, err := decodeFrame(frame)
	if err != nil {
		d.m.drop(dropBadFrame)
		return
	}
	switch f.kind {
	case frameIn:
		d.m.latency(latIn, f.stamp)
		d.learn(f.socket, from)
		rs, err := d.relay(f.socket)
		if err != nil {
			d.m.drop(dropNoRelay)
			d.log.Debug("dispatch: no relay socket for a frame", "socket", f.socket, "from", from, "error", err)
			return
		}
		if err := rs.rc.Deliver(f.payload, net.UDPAddrFromAddrPort(f.peer)); err != nil {
			d.m.drop(dropRelayQueue)
		}
	case frameOut:
		d.m.latency(latOut, f.stamp)
		if transport.IsStream(transport.TransportOf(f.socket)) {
			d.sendStream(f)
			return
		}
		d.mu.RLock()
		rs := d.real[f.socket]
		d.mu.RUnlock()
		if rs == nil {
			d.m.drop(dropNoSocket)
			return
		}
		if _, err := rs.pc.WriteTo(f.payload, net.UDPAddrFromAddrPort(f.peer)); err != nil {
			d.m.drop(dropWriteError)
			d.log.Debug("dispatch: sending a relayed datagram failed", "socket", f.socket, "to", f.peer, "error", err)
			return
		}
		d.m.sentRelayed.Inc()
	}
}

// HasReal reports whether the real socket called name is open here.
func (d *Dispatcher) HasReal(name string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	_, ok := d.real[name]
	return ok
}
