package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troika-sip/troika/internal/retry"
)

const (
	// maxHandshakes bounds connections that have not authenticated yet,
	// so a flood of idle connections cannot pile up goroutines.
	maxHandshakes = 256

	acceptFirstBackoff = 5 * time.Millisecond
	acceptMaxBackoff   = time.Second
)

// mux accepts connections on the node's one internal port, authenticates
// them (port.go) and hands each to raft, the forwarding server or the
// link.
type mux struct {
	ln        net.Listener
	auth      *portAuth
	log       *slog.Logger
	raft      *raftLayer
	onForward func(net.Conn) // runs in its own goroutine, owns the conn
	// onLink serves link connections (link.go), like onForward; set once
	// a Link is started, so it may still be nil: the conn is then closed.
	onLink atomic.Pointer[func(net.Conn)]

	handshakes chan struct{}
	closing    chan struct{}
	wg         sync.WaitGroup

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func newMux(ln net.Listener, auth *portAuth, advertise string, log *slog.Logger) *mux {
	m := &mux{
		ln:         ln,
		auth:       auth,
		log:        log,
		handshakes: make(chan struct{}, maxHandshakes),
		closing:    make(chan struct{}),
		conns:      map[*trackedConn]struct{}{},
	}
	m.raft = &raftLayer{
		addr:   stringAddr(advertise),
		dial:   auth.dial,
		conns:  make(chan net.Conn),
		closed: make(chan struct{}),
	}
	return m
}

// serve runs the accept loop in a goroutine.
func (m *mux) serve() {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.acceptLoop()
	}()
}

// acceptLoop accepts connections until the mux closes. After a failed
// Accept (out of file descriptors, say) it waits acceptFirstBackoff,
// doubling up to acceptMaxBackoff while Accept keeps failing.
func (m *mux) acceptLoop() {
	wait := retry.Policy{Initial: acceptFirstBackoff, Max: acceptMaxBackoff}.New()
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closing:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Warn("cluster port: accept failed", "error", err, "retry_in", wait.Next())
			if !wait.Wait(m.closing) {
				return
			}
			continue
		}
		wait.Reset()
		m.dispatch(conn)
	}
}

// dispatch hands an accepted connection to its own goroutine for the
// handshake, unless too many are already waiting for theirs.
func (m *mux) dispatch(conn net.Conn) {
	select {
	case m.handshakes <- struct{}{}:
	default:
		m.auth.refused(conn.RemoteAddr().String(), &refusal{reason: RefusedBusy, err: fmt.Errorf("too many connections in their handshake (%d): dropped this one", maxHandshakes)})
		_ = conn.Close()
		return
	}
	tc := m.track(conn)
	if tc == nil {
		<-m.handshakes
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.handle(tc)
	}()
}

func (m *mux) handle(tc *trackedConn) {
	conn, typ, err := m.auth.accept(tc)
	<-m.handshakes
	if err != nil {
		var r *refusal
		if !errors.As(err, &r) {
			r = &refusal{reason: RefusedHandshake, err: err}
		}
		select {
		case <-m.closing: // the mux closed it
		default:
			m.auth.refused(tc.RemoteAddr().String(), r)
		}
		_ = tc.Close()
		return
	}
	switch typ {
	case connRaft:
		select {
		case m.raft.conns <- conn:
		case <-m.raft.closed:
			_ = conn.Close()
		case <-m.closing:
			_ = conn.Close()
		}
	case connForward:
		m.onForward(conn)
	case connLink:
		if h := m.onLink.Load(); h != nil {
			(*h)(conn)
		} else {
			_ = conn.Close()
		}
	}
}

// track registers conn so close can reach it; nil when already closed.
func (m *mux) track(conn net.Conn) *trackedConn {
	tc := &trackedConn{Conn: conn}
	tc.untrack = func() {
		m.mu.Lock()
		delete(m.conns, tc)
		m.mu.Unlock()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		_ = conn.Close()
		return nil
	}
	m.conns[tc] = struct{}{}
	return tc
}

// close stops accepting and closes every accepted connection, then waits
// for the mux's goroutines. Forwarding handlers must watch their conn.
func (m *mux) close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.closing)
	conns := make([]*trackedConn, 0, len(m.conns))
	for c := range m.conns {
		conns = append(conns, c)
	}
	m.mu.Unlock()
	err := m.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	for _, c := range conns {
		_ = c.Close()
	}
	m.wg.Wait()
	return err
}

type trackedConn struct {
	net.Conn
	once    sync.Once
	untrack func()
}

func (c *trackedConn) Close() error {
	c.once.Do(c.untrack)
	return c.Conn.Close()
}

// NetConn is the accepted connection.
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

// raftLayer is the raft.StreamLayer of the node's port: Accept yields the
// authenticated raft connections the mux hands over; Dial authenticates.
type raftLayer struct {
	addr      stringAddr
	dial      dialFunc
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

var _ raft.StreamLayer = (*raftLayer)(nil)

func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *raftLayer) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

// Addr is the advertised address: raft uses it as this node's address.
func (l *raftLayer) Addr() net.Addr { return l.addr }

func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.dial(string(address), connRaft, timeout)
}

// dialFunc opens an authenticated connection of a type to a cluster port
// (portAuth.dial).
type dialFunc func(addr string, typ byte, timeout time.Duration) (net.Conn, error)

type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }
