package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troika-sip/troika/internal/retry"
)

// Wrappers around the sockets handed to sipgo, bounding what sipgo keeps.

// Pauses after a read or accept error other than the socket being closed
// (out of file descriptors, a full buffer): sipgo's reader and accept loop
// would stop at the first error, so the wrappers wait and try again.
var (
	readRetry   = retry.Policy{Initial: 10 * time.Millisecond, Max: time.Second}
	acceptRetry = retry.Policy{Initial: 5 * time.Millisecond, Max: time.Second}
)

// errRecycle ends a sipgo UDP reader so that it is restarted. It wraps
// net.ErrClosed because that is what makes sipgo's reader return quietly
// (and clean its pool entries) instead of logging an error.
var errRecycle = fmt.Errorf("sipstack: restarting the UDP reader: %w", net.ErrClosed)

// UDPConn is the PacketConn sipgo reads. sipgo's UDP reader adds a
// connection-pool entry, and an entry in a map of its own, for every
// remote address it ever reads from, and never removes them while it runs.
// UDPConn counts distinct remote addresses; past maxPeers it ends the
// reader (returning errRecycle), which drops both, and ServeUDP starts a
// new reader on the same socket. The datagram that crossed the limit is
// kept and returned to the new reader first. Transactions in flight keep
// working: they hold the old sipgo connection, which writes to the same
// socket.
//
// Read errors other than the socket being closed are retried after a
// pause, since sipgo's reader stops at the first one.
type UDPConn struct {
	net.PacketConn
	maxPeers int
	recycles func()
	screen   ScreenFunc
	closed   atomic.Bool

	// Used by the single reader goroutine only; readers run one after the
	// other.
	peers    map[netip.AddrPort]struct{}
	pending  []byte
	pendAddr net.Addr
}

// NewUDPConn wraps pc for a sipgo reader, restarting it past maxPeers
// remote addresses (recycles hears of each restart).
func NewUDPConn(pc net.PacketConn, maxPeers int, recycles func()) *UDPConn {
	return &UDPConn{PacketConn: pc, maxPeers: maxPeers, recycles: recycles, peers: map[netip.AddrPort]struct{}{}}
}

// ScreenFunc decides about a datagram from from before sipgo reads it: it
// returns the bytes to hand to sipgo (nil: none) and a response to send
// back at once (nil: none) with its destination. It runs on the socket's
// reader goroutine.
type ScreenFunc func(data []byte, from net.Addr) (pass, reply []byte, to net.Addr)

// Screen makes every datagram pass f before sipgo reads it. Call it before
// the conn is served.
func (c *UDPConn) Screen(f ScreenFunc) { c.screen = f }

// ReadFrom implements net.PacketConn.
func (c *UDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if c.pending != nil {
		n := copy(b, c.pending)
		addr := c.pendAddr
		c.pending, c.pendAddr = nil, nil
		c.peers[peerKey(addr)] = struct{}{}
		return n, addr, nil
	}
	var backoff *retry.Backoff
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || c.closed.Load() {
				c.closed.Store(true)
				return 0, nil, err
			}
			if backoff == nil {
				backoff = readRetry.New()
			}
			backoff.Wait(nil)
			continue
		}
		if c.screen != nil {
			pass, reply, to := c.screen(b[:n], addr)
			if reply != nil && to != nil {
				c.PacketConn.WriteTo(reply, to) // stateless: a lost answer is asked for again
			}
			if pass == nil || len(pass) > len(b) {
				continue
			}
			n = copy(b, pass)
		}
		key := peerKey(addr)
		if _, ok := c.peers[key]; !ok && len(c.peers) >= c.maxPeers {
			c.pending = append([]byte(nil), b[:n]...)
			c.pendAddr = addr
			c.peers = map[netip.AddrPort]struct{}{}
			if c.recycles != nil {
				c.recycles()
			}
			return 0, nil, errRecycle
		}
		c.peers[key] = struct{}{}
		return n, addr, nil
	}
}

func peerKey(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		return u.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// Close implements net.PacketConn.
func (c *UDPConn) Close() error {
	c.closed.Store(true)
	return c.PacketConn.Close()
}

// tcpListener bounds the connections of one TCP/TLS socket and closes idle
// ones: sipgo keeps an accepted connection (and two pool entries) until the
// peer closes it, and has no idle timeout. Temporary accept errors (out of
// file descriptors) are retried after a pause, since sipgo's accept loop
// stops at the first error.
type tcpListener struct {
	net.Listener
	idle    time.Duration
	max     int
	refused func()

	mu     sync.Mutex
	open   int
	closed bool
}

func (l *tcpListener) Accept() (net.Conn, error) {
	var backoff *retry.Backoff
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			if backoff == nil {
				backoff = acceptRetry.New()
			}
			backoff.Wait(nil)
			continue
		}
		backoff = nil
		l.mu.Lock()
		if l.open >= l.max {
			l.mu.Unlock()
			c.Close()
			if l.refused != nil {
				l.refused()
			}
			continue
		}
		l.open++
		l.mu.Unlock()
		return &idleConn{Conn: c, idle: l.idle, release: l.release}, nil
	}
}

func (l *tcpListener) release() {
	l.mu.Lock()
	l.open--
	l.mu.Unlock()
}

func (l *tcpListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return l.Listener.Close()
}

// idleConn arms a read deadline before every read, so a connection that
// sends nothing for idle is closed by sipgo's reader.
type idleConn struct {
	net.Conn
	idle    time.Duration
	release func()
	once    sync.Once
}

func (c *idleConn) Read(b []byte) (int, error) {
	if c.idle > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	return c.Conn.Read(b)
}

func (c *idleConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
