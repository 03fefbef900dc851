package dispatch

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/troika-sip/troika/sipstack/transport"
)

// Relay sockets: the processing role's sipgo stacks of the cluster's
// ingress sockets, fed by dispatchers through RelayPacketConns, and the
// way back out of the real socket (directly, or through the node holding
// it).

// relaySocket is a sipgo stack fed through a RelayPacketConn.
type relaySocket struct {
	name string
	rc   *transport.RelayPacketConn
	sock *transport.Socket
	done chan struct{}
}

// learn records that from dispatched a frame for socket: it holds it,
// unless the ownership map says otherwise.
func (d *Dispatcher) learn(socket, from string) {
	d.mu.RLock()
	known := d.origin[socket] == from
	d.mu.RUnlock()
	if known {
		return
	}
	d.mu.Lock()
	if _, ok := d.origin[socket]; ok || len(d.origin) < d.cfg.MaxRelaySockets {
		d.origin[socket] = from
	}
	d.mu.Unlock()
}

// send writes a datagram of a relay socket's stack: out of the real
// socket when this node holds it, else to the node holding its IP. A
// frame the link will not take is lost, like a datagram a full socket
// buffer drops: the transaction layer retransmits.
func (d *Dispatcher) send(rs *relaySocket, p []byte, to net.Addr) error {
	d.mu.RLock()
	real := d.real[rs.name]
	d.mu.RUnlock()
	if real != nil {
		if _, err := real.pc.WriteTo(p, to); err != nil {
			return err
		}
		d.m.sentLocal.Inc()
		return nil
	}
	holder, ok := d.holder(rs.name)
	if !ok || d.cfg.Peers == nil {
		d.m.drop(dropNoHolder)
		return fmt.Errorf("%s: %w", rs.name, errNoHolder)
	}
	ap, ok := transport.AddrPort(to)
	if !ok {
		return fmt.Errorf("send to %v: not an IP address and port", to)
	}
	f := dispatchFrame{kind: frameOut, stamp: d.now(), socket: rs.name, peer: ap, payload: p}
	if !d.cfg.Peers.Send(holder, appendFrame(make([]byte, 0, frameSize(f)), f)) {
		d.m.linkRefused.Inc()
		return nil
	}
	d.m.sentRemote.Inc()
	return nil
}

// holder returns the node holding the real socket called name (not this
// node: its real sockets are in d.real): the one the cluster names, else
// the one that last dispatched a frame for it.
func (d *Dispatcher) holder(name string) (string, bool) {
	if d.cfg.Peers != nil {
		if n, ok := d.cfg.Peers.Holder(name); ok && n != d.self {
			return n, true
		}
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	n, ok := d.origin[name]
	return n, ok && n != d.self
}

// CanRelay reports whether a relay socket called name can reach its real
// socket: one another node holds that takes frames (a node of an older
// version, without the dispatch link, does not).
func (d *Dispatcher) CanRelay(name string) bool {
	if _, err := transport.ParseSocketName(name); err != nil {
		return false
	}
	node, ok := d.holder(name)
	return ok && d.cfg.Peers != nil && d.cfg.Peers.Dispatches(node)
}

// relay returns the relay socket called name, creating it (with its
// sipgo stack, served until Run ends) when there is none and there are
// fewer than MaxRelaySockets.
func (d *Dispatcher) relay(name string) (*relaySocket, error) { return d.relayOf(name, false) }

// Relay returns the stack of the relay socket called name, opening it
// when there is none and there are fewer than MaxRelaySockets: the B2BUA
// sends from it a leg whose socket another node holds.
func (d *Dispatcher) Relay(name string) (*transport.Socket, error) {
	rs, err := d.relay(name)
	if err != nil {
		return nil, err
	}
	return rs.sock, nil
}

// relayOf is relay; held: the stack of a real socket this node opens,
// which the bound does not refuse (an address this node must serve).
func (d *Dispatcher) relayOf(name string, held bool) (*relaySocket, error) {
	d.mu.RLock()
	rs := d.relays[name]
	d.mu.RUnlock()
	if rs != nil {
		return rs, nil
	}
	ap, err := transport.ParseSocketName(name)
	if err != nil {
		return nil, fmt.Errorf("relay socket %q: %w", name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if rs := d.relays[name]; rs != nil {
		return rs, nil
	}
	if d.runCtx == nil || d.runCtx.Err() != nil {
		return nil, errors.New("the SIP server is not running")
	}
	if d.closed {
		return nil, errors.New("the SIP server is stopping")
	}
	if len(d.relays) >= d.cfg.MaxRelaySockets && !held {
		return nil, errTooManyRelays
	}
	rs = &relaySocket{name: name, done: make(chan struct{})}
	rs.rc = transport.NewRelayPacketConn(net.UDPAddrFromAddrPort(ap), d.cfg.RelayQueue, func(p []byte, to net.Addr) error {
		return d.send(rs, p, to)
	})
	sock, serve, err := d.stacks.OpenRelay(name, rs.rc) // for a stream socket, a stream relay (stream.go)
	if err != nil {
		return nil, err
	}
	rs.sock = sock
	d.relays[name] = rs
	d.m.relaySockets.Inc()
	ctx, cancel := context.WithCancel(d.runCtx)
	d.wg.Add(1) // under d.mu, before Close sets closed and Wait waits
	go func() {
		defer d.wg.Done()
		defer close(rs.done)
		defer cancel()
		if err := serve(ctx); err != nil {
			d.log.Error("relay socket stopped", "socket", name, "error", err)
		}
		d.mu.Lock()
		if d.relays[name] == rs {
			delete(d.relays, name)
		}
		d.mu.Unlock()
		d.m.relaySockets.Dec()
	}()
	d.log.Debug("relay socket open", "socket", name)
	return rs, nil
}
