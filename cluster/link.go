package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troika-sip/troika/internal/retry"
)

// Link carries the SIP dispatcher's messages between nodes (sipstack's
// dispatch frames; docs/ARCHITECTURE.md). It rides the node's cluster port, so it
// is authenticated like raft and forwarding (a handshake proving the
// cluster key, connection type 'L'; with TLS, certificates too, and a
// hello must name the node the certificate names) and belongs on the
// same private network, never on the customer side.
//
// Every node keeps one persistent connection to each other raft server
// (addresses from the raft configuration, looked at every couple of
// seconds) and writes its messages to that peer on it; it reads the
// messages of each peer on the connection that peer dialed. A dialer
// first sends a hello naming itself, with data of the caller's choosing
// (the node's own SIP addresses).
//
// Send never blocks: each peer has a bounded queue, written by one
// goroutine that batches whatever is queued into as few writes as it can.
// A message for a peer that is not connected, or whose queue is full, is
// refused (Send returns false; counted as dropped), and what is queued
// when a connection breaks is dropped: the messages are datagrams, which
// their transactions retransmit.
type Link struct {
	n   *Node
	cfg LinkConfig
	log *slog.Logger

	peers atomic.Pointer[map[string]*linkPeer] // copy on write, under mu

	mu      sync.Mutex
	inbound map[net.Conn]struct{}
	closed  bool

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	sent, received, dropped atomic.Uint64
}

// LinkConfig configures a Link. Zero values take the defaults in
// parentheses.
type LinkConfig struct {
	// OnMessage receives each message from a peer; from is its node id.
	// It runs on that peer's reader goroutine and must not block; msg is
	// the callee's to keep.
	OnMessage func(from string, msg []byte)
	// Hello is sent to every peer when connecting (at most 4 KiB), and
	// OnHello receives each peer's.
	Hello   []byte
	OnHello func(from string, hello []byte)
	// QueueLen bounds the messages waiting for one peer (4096).
	QueueLen int
	// Refresh is how often the raft configuration is read for peers to
	// connect to (2s).
	Refresh time.Duration
	Logger  *slog.Logger
}

// LinkStats counts a Link's messages since it started.
type LinkStats struct {
	Sent      uint64 // written to a peer's connection
	Received  uint64
	Dropped   uint64 // refused by Send, or queued when a connection broke
	Connected int    // peers with a connection up
}

const (
	defaultLinkQueue   = 4096
	defaultLinkRefresh = 2 * time.Second
	maxLinkHello       = 4 << 10
	linkWriteBuffer    = 64 << 10
	linkWriteTimeout   = 5 * time.Second
	// linkBatchMax frames are written between flushes: each batch gets
	// its own write deadline, so a queue that never empties under load
	// does not run into one deadline.
	linkBatchMax    = 256
	linkDialTimeout = 2 * time.Second
	// A peer is dialed again linkFirstBackoff after a failure, then
	// twice as long after each further one, up to linkMaxBackoff.
	linkFirstBackoff = 50 * time.Millisecond
	linkMaxBackoff   = 2 * time.Second
)

type linkPeer struct {
	id   string
	addr atomic.Pointer[string]
	q    chan []byte
	up   atomic.Bool
	stop chan struct{} // closed when the peer leaves the configuration
}

// StartLink starts this node's link: it accepts the link connections of
// the other nodes and connects to each of them. One link per node.
func (n *Node) StartLink(cfg LinkConfig) (*Link, error) {
	if err := n.alive(); err != nil {
		return nil, err
	}
	if cfg.OnMessage == nil {
		return nil, errors.New("cluster: link: OnMessage is required")
	}
	if len(cfg.Hello) > maxLinkHello {
		return nil, fmt.Errorf("cluster: link: hello of %d bytes is over %d", len(cfg.Hello), maxLinkHello)
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = defaultLinkQueue
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = defaultLinkRefresh
	}
	if cfg.Logger == nil {
		cfg.Logger = n.log
	}
	l := &Link{n: n, cfg: cfg, log: cfg.Logger.With("component", "link"), inbound: map[net.Conn]struct{}{}, stop: make(chan struct{})}
	empty := map[string]*linkPeer{}
	l.peers.Store(&empty)
	h := l.serveConn
	if !n.mux.onLink.CompareAndSwap(nil, &h) {
		return nil, errors.New("cluster: link: already started on this node")
	}
	stopWithNode := context.AfterFunc(n.ctx, l.halt)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer stopWithNode()
		l.refreshLoop()
	}()
	return l, nil
}

func (l *Link) halt() { l.stopOnce.Do(func() { close(l.stop) }) }

// Close stops the link: no more connections are made or accepted, the
// open ones are closed, queued messages are dropped.
func (l *Link) Close() {
	l.halt()
	l.n.mux.onLink.Store(nil)
	l.mu.Lock()
	l.closed = true
	for c := range l.inbound {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// Send queues msg for node; false when it was not queued (not connected,
// queue full, unknown node, or over MaxLinkMessage). It never blocks.
// msg must not be modified afterwards.
func (l *Link) Send(node string, msg []byte) bool {
	p := (*l.peers.Load())[node]
	if p == nil || !p.up.Load() || len(msg) > MaxLinkMessage {
		l.dropped.Add(1)
		return false
	}
	select {
	case p.q <- msg:
		return true
	default:
		l.dropped.Add(1)
		return false
	}
}

// Stats returns the link's counters.
func (l *Link) Stats() LinkStats {
	st := LinkStats{Sent: l.sent.Load(), Received: l.received.Load(), Dropped: l.dropped.Load()}
	for _, p := range *l.peers.Load() {
		if p.up.Load() {
			st.Connected++
		}
	}
	return st
}

// Connected reports whether the link to node is up.
func (l *Link) Connected(node string) bool {
	p := (*l.peers.Load())[node]
	return p != nil && p.up.Load()
}

// refreshLoop keeps one peer per other raft server.
func (l *Link) refreshLoop() {
	t := time.NewTicker(l.cfg.Refresh)
	defer t.Stop()
	for {
		l.refresh()
		select {
		case <-l.stop:
			l.mu.Lock()
			for _, p := range *l.peers.Load() {
				close(p.stop)
			}
			empty := map[string]*linkPeer{}
			l.peers.Store(&empty)
			l.mu.Unlock()
			return
		case <-t.C:
		}
	}
}

func (l *Link) refresh() {
	f := l.n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	want := map[string]string{}
	for _, s := range f.Configuration().Servers {
		if id := string(s.ID); id != l.n.cfg.NodeID {
			want[id] = string(s.Address)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	old := *l.peers.Load()
	next := make(map[string]*linkPeer, len(want))
	changed := false
	for id, addr := range want {
		p := old[id]
		if p == nil {
			p = &linkPeer{id: id, q: make(chan []byte, l.cfg.QueueLen), stop: make(chan struct{})}
			p.addr.Store(&addr)
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				l.runPeer(p)
			}()
			changed = true
		} else if *p.addr.Load() != addr {
			p.addr.Store(&addr) // used at the next connection
		}
		next[id] = p
	}
	for id, p := range old {
		if _, ok := want[id]; !ok {
			close(p.stop)
			changed = true
		}
	}
	if changed {
		l.peers.Store(&next)
	}
}

// runPeer keeps a connection to p and writes its queue to it, waiting
// between attempts (linkFirstBackoff doubling to linkMaxBackoff, from the
// start again after a connection that worked).
func (l *Link) runPeer(p *linkPeer) {
	wait := retry.Policy{Initial: linkFirstBackoff, Max: linkMaxBackoff}.New()
	failures := 0
	for {
		select {
		case <-l.stop:
			return
		case <-p.stop:
			return
		default:
		}
		addr := *p.addr.Load()
		connected, err := l.connectAndWrite(p, addr)
		if connected {
			failures = 0
			wait.Reset()
		}
		if err != nil {
			failures++
			lvl := slog.LevelDebug
			if failures == 10 {
				lvl = slog.LevelWarn // about 10 s: say so once per streak
			}
			l.log.Log(context.Background(), lvl, "link: cannot connect; retrying", "peer", p.id, "addr", addr, "error", err, "retry_in", wait.Next())
		}
		// p.stop is closed when the link stops too (refreshLoop).
		if !wait.Wait(p.stop) {
			return
		}
	}
}

// connectAndWrite dials p at addr, says hello and writes p's queue until
// the connection breaks or the peer or the link stops. connected reports
// whether the hello went through; err is why it ended.
func (l *Link) connectAndWrite(p *linkPeer, addr string) (connected bool, err error) {
	conn, err := l.n.port.dial(addr, connLink, linkDialTimeout)
	if err != nil {
		return false, err
	}
	setUserTimeout(conn, linkWriteTimeout)
	w := bufio.NewWriterSize(conn, linkWriteBuffer)
	_ = conn.SetWriteDeadline(time.Now().Add(linkWriteTimeout))
	if err = writeLinkFrame(w, linkHello, encodeHello(l.n.cfg.NodeID, l.cfg.Hello)); err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = conn.Close()
		return false, fmt.Errorf("hello to %s: %w", addr, err)
	}
	l.log.Info("link: connected", "peer", p.id, "addr", addr)
	p.up.Store(true)
	err = l.writeLoop(p, conn, w)
	p.up.Store(false)
	_ = conn.Close()
	if n := l.discard(p); n > 0 || err != nil {
		l.log.Warn("link: disconnected", "peer", p.id, "addr", addr, "error", err, "dropped", n)
	}
	return true, err
}

// discard drops what is queued for p.
func (l *Link) discard(p *linkPeer) int {
	n := 0
	for {
		select {
		case <-p.q:
			n++
		default:
			l.dropped.Add(uint64(n))
			return n
		}
	}
}

// writeLoop writes p's queue to conn until the link or the peer stops
// (nil) or the connection fails. The peer never writes on it: a read
// ending means it is gone.
func (l *Link) writeLoop(p *linkPeer, conn net.Conn, w *bufio.Writer) error {
	gone := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := conn.Read(b[:])
		if err == nil {
			err = errors.New("unexpected data from the peer")
		}
		gone <- err
	}()
	for {
		select {
		case <-l.stop:
			return nil
		case <-p.stop:
			return nil
		case err := <-gone:
			if errors.Is(err, io.EOF) {
				err = errors.New("closed by the peer")
			}
			return err
		case m := <-p.q:
			_ = conn.SetWriteDeadline(time.Now().Add(linkWriteTimeout))
			n := 0
			for {
				if err := writeLinkFrame(w, linkData, m); err != nil {
					return err
				}
				n++
				if n == linkBatchMax {
					break // flush; the next batch gets a fresh write deadline
				}
				var more bool
				select {
				case m, more = <-p.q:
				default:
				}
				if !more {
					break
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			l.sent.Add(uint64(n))
		}
	}
}

// serveConn reads the messages of a peer that connected to this node
// (called by the mux, on its own goroutine, once the handshake passed).
func (l *Link) serveConn(conn net.Conn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = conn.Close()
		return
	}
	l.inbound[conn] = struct{}{}
	l.mu.Unlock()
	setUserTimeout(conn, linkWriteTimeout)
	defer func() {
		l.mu.Lock()
		delete(l.inbound, conn)
		l.mu.Unlock()
		_ = conn.Close()
	}()
	r := bufio.NewReaderSize(conn, linkWriteBuffer)
	_ = conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	typ, body, err := readLinkFrame(r)
	if err == nil && typ != linkHello {
		err = fmt.Errorf("%w: link connection did not start with a hello", errBadFrame)
	}
	var from string
	var hello []byte
	if err == nil {
		from, hello, err = decodeHello(body)
	}
	if id, ok := peerNodeID(conn); err == nil && ok && id != from {
		err = fmt.Errorf("the hello says node %q, the peer's certificate names %q", from, id)
	}
	if err != nil {
		l.log.Warn("link: refused a connection", "remote", conn.RemoteAddr().String(), "error", err)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	l.log.Debug("link: peer connected", "peer", from, "remote", conn.RemoteAddr().String())
	if l.cfg.OnHello != nil {
		l.cfg.OnHello(from, hello)
	}
	for {
		typ, body, err := readLinkFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				l.log.Debug("link: peer connection ended", "peer", from, "error", err)
			}
			return
		}
		if typ == linkHello {
			if _, data, err := decodeHello(body); err == nil && l.cfg.OnHello != nil {
				l.cfg.OnHello(from, data)
			}
			continue
		}
		l.received.Add(1)
		l.cfg.OnMessage(from, body)
	}
}
