package transport

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// RelayPacketConn is a net.PacketConn whose datagrams do not come from a
// socket of this process: a dispatcher that holds the real socket hands
// them in with Deliver, and everything written to it goes to Send, which
// takes it back to that dispatcher to leave from the real socket. sipgo
// serves it like any UDP socket (Server.ServeUDP), so the SIP stack sees
// the phone's real address and the socket's real local address wherever
// the socket actually lives.
type RelayPacketConn struct {
	local net.Addr
	send  func(payload []byte, to net.Addr) error

	in     chan datagram
	closed chan struct{}
	once   sync.Once

	mu           sync.Mutex
	readDeadline time.Time
	wake         chan struct{} // closed when the read deadline changes
}

type datagram struct {
	payload []byte
	from    net.Addr
}

// ErrRelayFull is returned by Deliver when the stack is not keeping up:
// the datagram is dropped, as a kernel socket buffer would drop it.
var ErrRelayFull = errors.New("relay connection queue is full")

// NewRelayPacketConn returns a relay connection for the socket at local.
// queue bounds the datagrams waiting to be read.
func NewRelayPacketConn(local net.Addr, queue int, send func(payload []byte, to net.Addr) error) *RelayPacketConn {
	return &RelayPacketConn{local: local, send: send, in: make(chan datagram, queue), closed: make(chan struct{}), wake: make(chan struct{})}
}

// Deliver hands in a datagram received by the dispatcher from from. It
// never blocks; the payload must not be modified afterwards.
func (c *RelayPacketConn) Deliver(payload []byte, from net.Addr) error {
	select {
	case <-c.closed:
		return net.ErrClosed
	default:
	}
	select {
	case c.in <- datagram{payload: payload, from: from}:
		return nil
	default:
		return ErrRelayFull
	}
}

// ReadFrom implements net.PacketConn.
func (c *RelayPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		deadline, wake := c.readDeadline, c.wake
		c.mu.Unlock()
		var timer *time.Timer
		var timeout <-chan time.Time
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(d)
			timeout = timer.C
		}
		var (
			n    int
			from net.Addr
			err  error
			done = true
		)
		select {
		case d := <-c.in:
			n, from = copy(p, d.payload), d.from
		case <-c.closed:
			err = net.ErrClosed
		case <-timeout:
			err = os.ErrDeadlineExceeded
		case <-wake:
			done = false // the deadline changed: wait again with the new one
		}
		if timer != nil {
			timer.Stop()
		}
		if done {
			return n, from, err
		}
	}
}

// WriteTo implements net.PacketConn: the datagram goes to the dispatcher
// holding the real socket.
func (c *RelayPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if err := c.send(append([]byte(nil), p...), addr); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close implements net.PacketConn.
func (c *RelayPacketConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// LocalAddr is the real socket's address.
func (c *RelayPacketConn) LocalAddr() net.Addr { return c.local }

// SetDeadline implements net.PacketConn (writes never block).
func (c *RelayPacketConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (c *RelayPacketConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
	return nil
}

// SetWriteDeadline implements net.PacketConn (writes never block).
func (c *RelayPacketConn) SetWriteDeadline(time.Time) error { return nil }
