package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	fwdDialTimeout = 3 * time.Second
	fwdSendQueue   = 1024
	fwdBufSize     = 64 << 10
	// fwdWriteTimeout bounds one write to the socket: a peer that stops
	// reading for this long is treated as gone.
	fwdWriteTimeout = 10 * time.Second
)

// errClientClosed is returned by a forwarding client after close.
var errClientClosed = errors.New("forwarding client closed")

// linkError reports a forwarding connection that failed. sent says whether
// the request may have reached the other side.
type linkError struct {
	addr string
	sent bool
	err  error
}

func (e *linkError) Error() string {
	if e.sent {
		return fmt.Sprintf("connection to %s lost after sending (the request may or may not have been applied): %v", e.addr, e.err)
	}
	return fmt.Sprintf("connection to %s: %v", e.addr, e.err)
}

func (e *linkError) Unwrap() error { return e.err }

// fwdClient keeps one persistent, pipelined connection per remote node.
type fwdClient struct {
	dial dialFunc
	log  *slog.Logger

	mu      sync.Mutex
	conns   map[string]*fwdConn
	dialing map[string]*dialAttempt
	closed  bool
	wg      sync.WaitGroup
}

type dialAttempt struct {
	done chan struct{}
	err  error
}

func newFwdClient(dial dialFunc, log *slog.Logger) *fwdClient {
	return &fwdClient{dial: dial, log: log, conns: map[string]*fwdConn{}, dialing: map[string]*dialAttempt{}}
}

// call sends one request to addr and waits for its response frame.
func (c *fwdClient) call(ctx context.Context, addr string, op byte, body []byte) (frame, error) {
	fc, err := c.conn(ctx, addr)
	if err != nil {
		return frame{}, err
	}
	return fc.call(ctx, op, body)
}

// conn returns the connection to addr, dialing it if needed. Concurrent
// callers share one dial.
func (c *fwdClient) conn(ctx context.Context, addr string) (*fwdConn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, errClientClosed
		}
		if fc := c.conns[addr]; fc != nil {
			c.mu.Unlock()
			return fc, nil
		}
		if d := c.dialing[addr]; d != nil {
			c.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if d.err != nil {
				return nil, &linkError{addr: addr, err: d.err}
			}
			continue
		}
		d := &dialAttempt{done: make(chan struct{})}
		c.dialing[addr] = d
		c.mu.Unlock()

		timeout := fwdDialTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = max(min(timeout, time.Until(dl)), 10*time.Millisecond)
		}
		conn, err := c.dial(addr, connForward, timeout)

		c.mu.Lock()
		delete(c.dialing, addr)
		d.err = err
		close(d.done)
		if err != nil {
			c.mu.Unlock()
			return nil, &linkError{addr: addr, err: err}
		}
		if c.closed {
			c.mu.Unlock()
			_ = conn.Close()
			return nil, errClientClosed
		}
		fc := &fwdConn{
			client:  c,
			addr:    addr,
			conn:    conn,
			sendq:   make(chan *fwdCall, fwdSendQueue),
			done:    make(chan struct{}),
			pending: map[uint64]*fwdCall{},
		}
		c.conns[addr] = fc
		c.wg.Add(2)
		c.mu.Unlock()
		go func() { defer c.wg.Done(); fc.writeLoop() }()
		go func() { defer c.wg.Done(); fc.readLoop() }()
		c.log.Debug("forwarding link up", "peer", addr)
		return fc, nil
	}
}

func (c *fwdClient) forget(fc *fwdConn) {
	c.mu.Lock()
	if c.conns[fc.addr] == fc {
		delete(c.conns, fc.addr)
	}
	c.mu.Unlock()
}

// closeExcept closes the connections to every address but keep (the new
// leader): requests waiting on a node that no longer leads, maybe behind
// a partition that TCP has not noticed yet, fail now and are retried.
func (c *fwdClient) closeExcept(keep string) {
	c.mu.Lock()
	var stale []*fwdConn
	for addr, fc := range c.conns {
		if addr != keep {
			stale = append(stale, fc)
		}
	}
	c.mu.Unlock()
	for _, fc := range stale {
		fc.fail(fmt.Errorf("the leader is now %s", keep))
	}
}

// close fails every pending call and waits for the connections' goroutines.
func (c *fwdClient) close() {
	c.mu.Lock()
	c.closed = true
	conns := make([]*fwdConn, 0, len(c.conns))
	for _, fc := range c.conns {
		conns = append(conns, fc)
	}
	c.mu.Unlock()
	for _, fc := range conns {
		fc.fail(errClientClosed)
	}
	c.wg.Wait()
}

type fwdConn struct {
	client *fwdClient
	addr   string
	conn   net.Conn
	sendq  chan *fwdCall
	done   chan struct{}

	mu       sync.Mutex
	pending  map[uint64]*fwdCall
	nextID   uint64
	err      error
	failOnce sync.Once
}

type fwdCall struct {
	id   uint64
	op   byte
	body []byte
	sent atomic.Bool // handed to the socket: the server may have it
	resp chan frame
}

func (fc *fwdConn) call(ctx context.Context, op byte, body []byte) (frame, error) {
	if frameHeader+len(body) > maxFrameSize {
		return frame{}, fmt.Errorf("request of %d bytes is over the %d-byte frame limit", len(body), maxFrameSize-frameHeader)
	}
	call := &fwdCall{op: op, body: body, resp: make(chan frame, 1)}
	fc.mu.Lock()
	if fc.err != nil {
		err := fc.err
		fc.mu.Unlock()
		return frame{}, &linkError{addr: fc.addr, err: err}
	}
	fc.nextID++
	call.id = fc.nextID
	fc.pending[call.id] = call
	fc.mu.Unlock()

	select {
	case fc.sendq <- call:
	case <-fc.done:
		fc.drop(call.id)
		return frame{}, &linkError{addr: fc.addr, err: fc.failure()}
	case <-ctx.Done():
		fc.drop(call.id)
		return frame{}, ctx.Err()
	}
	select {
	case f := <-call.resp:
		return f, nil
	case <-fc.done:
		select {
		case f := <-call.resp:
			return f, nil
		default:
		}
		return frame{}, &linkError{addr: fc.addr, sent: call.sent.Load(), err: fc.failure()}
	case <-ctx.Done():
		fc.drop(call.id)
		if call.sent.Load() {
			return frame{}, fmt.Errorf("sent to %s, gave up waiting for the answer (the request may or may not be applied): %w", fc.addr, ctx.Err())
		}
		return frame{}, ctx.Err()
	}
}

func (fc *fwdConn) drop(id uint64) {
	fc.mu.Lock()
	delete(fc.pending, id)
	fc.mu.Unlock()
}

func (fc *fwdConn) failure() error {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.err
}

// fail closes the connection once; pending calls see done.
func (fc *fwdConn) fail(err error) {
	fc.failOnce.Do(func() {
		fc.mu.Lock()
		fc.err = err
		fc.pending = map[uint64]*fwdCall{}
		fc.mu.Unlock()
		close(fc.done)
		_ = fc.conn.Close()
		fc.client.forget(fc)
		if !errors.Is(err, errClientClosed) {
			fc.client.log.Debug("forwarding link down", "peer", fc.addr, "error", err)
		}
	})
}

func (fc *fwdConn) writeLoop() {
	w := bufio.NewWriterSize(fc.conn, fwdBufSize)
	idle := true
	for {
		select {
		case call := <-fc.sendq:
			if idle {
				_ = fc.conn.SetWriteDeadline(time.Now().Add(fwdWriteTimeout))
				idle = false
			}
			call.sent.Store(true)
			if err := writeFrame(w, frame{code: call.op, id: call.id, body: call.body}); err != nil {
				fc.fail(fmt.Errorf("write: %w", err))
				return
			}
			if len(fc.sendq) == 0 {
				if err := w.Flush(); err != nil {
					fc.fail(fmt.Errorf("write: %w", err))
					return
				}
				idle = true
			}
		case <-fc.done:
			return
		}
	}
}

func (fc *fwdConn) readLoop() {
	r := bufio.NewReaderSize(fc.conn, fwdBufSize)
	for {
		f, err := readFrame(r)
		if err != nil {
			fc.fail(fmt.Errorf("read: %w", err))
			return
		}
		if f.code != respOK && f.code != respErr {
			fc.fail(fmt.Errorf("read: %w: response code %#x", errBadFrame, f.code))
			return
		}
		fc.mu.Lock()
		call := fc.pending[f.id]
		delete(fc.pending, f.id)
		fc.mu.Unlock()
		if call != nil {
			call.resp <- f
		}
	}
}
