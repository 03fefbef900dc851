package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/retry"
)

// The forwarded requests one connection may have in progress on the
// leader, by count and by size; the reader stops reading beyond either.
const (
	maxInflightPerConn      = 4096
	maxInflightBytesPerConn = 64 << 20
)

// A proposal that failed in a way another try may fix is tried again
// proposeFirstBackoff later, then twice as long after each further
// failure, up to proposeMaxBackoff (sooner when the leader changes).
const (
	proposeFirstBackoff = 5 * time.Millisecond
	proposeMaxBackoff   = 500 * time.Millisecond
)

// Propose replicates cmd and returns what applying it returned. A command
// that was applied but refused reports it in Result.Err with a nil error.
// From a follower the command is forwarded to the leader. Failures that
// another try may fix (no leader, leader change, lost connection) are
// retried until ctx ends; commands are idempotent, so retrying one whose
// outcome was unknown is safe.
func (n *Node) Propose(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return fsm.Result{}, fmt.Errorf("cluster: propose: %w", err)
	}
	return n.proposeTimed(ctx, opApplyTrusted, data)
}

// proposeTimed runs a proposal and records how long it took when it got a
// result (troika_raft_apply_seconds).
func (n *Node) proposeTimed(ctx context.Context, op byte, data []byte) (fsm.Result, error) {
	start := time.Now()
	res, err := n.do(ctx, fmt.Sprintf("propose command %#x", data[0]), op, data)
	if err == nil {
		n.metrics.apply.Observe(time.Since(start).Seconds())
	}
	return res, err
}

// ProposeEncoded is Propose for a command already encoded by fsm.Encode.
// The leader refuses data it cannot decode.
func (n *Node) ProposeEncoded(ctx context.Context, data []byte) (fsm.Result, error) {
	if len(data) == 0 {
		return fsm.Result{}, errors.New("cluster: propose: empty command")
	}
	return n.proposeTimed(ctx, opApply, data)
}

// AddVoter adds (or updates the address of) a voting member. It works from
// any node: followers forward it to the leader.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	if !nodeIDPattern.MatchString(id) {
		return fmt.Errorf("cluster: add voter: id %q: must be 1-64 letters, digits, '_', '.' or '-'", id)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("cluster: add voter %s: addr %q: %w", id, addr, err)
	}
	_, err := n.do(ctx, "add voter "+id, opAddVoter, idAddrBody(id, addr))
	return err
}

// RemoveServer removes a member. It works from any node. Nothing in this
// package ever removes a member by itself.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("cluster: remove server: empty id")
	}
	_, err := n.do(ctx, "remove server "+id, opRemoveServer, appendString(nil, id))
	return err
}

// do runs op on the leader, wherever it is, retrying until ctx ends.
func (n *Node) do(ctx context.Context, what string, op byte, body []byte) (fsm.Result, error) {
	start := time.Now()
	var last error
	hint := ""
	wait := retry.Policy{Initial: proposeFirstBackoff, Max: proposeMaxBackoff}.New()
	for attempt := 1; ; attempt++ {
		if err := n.alive(); err != nil {
			return fsm.Result{}, fmt.Errorf("cluster: %s: %w", what, err)
		}
		if err := ctx.Err(); err != nil {
			return fsm.Result{}, n.giveUp(what, start, attempt-1, last, err)
		}
		res, err := n.once(ctx, op, body, hint)
		if err == nil {
			return res, nil
		}
		hint = ""
		var re *remoteError
		if errors.As(err, &re) && re.kind == kindRetry && re.leader != "" && re.leader != n.advertise {
			hint = re.leader
		}
		if cerr := ctx.Err(); cerr != nil {
			if !errors.Is(err, cerr) {
				last, err = err, cerr
			}
			return fsm.Result{}, n.giveUp(what, start, attempt, last, err)
		}
		if !retryable(err) {
			return fsm.Result{}, fmt.Errorf("cluster: %s: %w", what, err)
		}
		last = err
		if attempt == 1 || attempt%20 == 0 {
			n.log.Debug("cluster: retrying", "what", what, "attempt", attempt, "error", err)
		}
		if err := n.pause(ctx, wait, attempt, hint != ""); err != nil {
			return fsm.Result{}, n.giveUp(what, start, attempt, last, err)
		}
	}
}

// once tries op one time: locally when this node leads, else on the leader
// (or on hint, a leader named by the node last asked).
func (n *Node) once(ctx context.Context, op byte, body []byte, hint string) (fsm.Result, error) {
	if n.raft.State() == raft.Leader {
		res, _, err := n.leaderDo(ctx, op, body)
		return res, err
	}
	addr := hint
	if addr == "" {
		a, _ := n.raft.LeaderWithID()
		addr = string(a)
	}
	if addr == "" || addr == n.advertise {
		return fsm.Result{}, errNoLeader
	}
	if op == opApplyTrusted {
		op = opApply // the leader may run another version: it checks
	}
	return n.callRemote(ctx, addr, op, body)
}

// callRemote sends op to the node at addr over the forwarding link.
func (n *Node) callRemote(ctx context.Context, addr string, op byte, body []byte) (fsm.Result, error) {
	f, err := n.fwd.call(ctx, addr, op, body)
	if err != nil {
		return fsm.Result{}, err
	}
	if f.code == respErr {
		re, err := decodeErrBody(addr, f.body)
		if err != nil {
			return fsm.Result{}, &linkError{addr: addr, sent: true, err: fmt.Errorf("undecodable error response: %w", err)}
		}
		return fsm.Result{}, re
	}
	if op != opApply {
		return fsm.Result{}, nil
	}
	if len(f.body) < 8 {
		return fsm.Result{}, fmt.Errorf("result from %s: %d bytes is too short", addr, len(f.body))
	}
	index := binary.BigEndian.Uint64(f.body)
	res, err := fsm.DecodeResult(f.body[8:])
	if err != nil {
		return fsm.Result{}, fmt.Errorf("result from %s: %w", addr, err)
	}
	// Read your writes: answer once this node's replica has applied the
	// change, so a REGISTER right after an account was created here finds
	// it. The write is done either way; a slow replica only delays.
	n.fsm.waitApplied(ctx, index)
	return res, nil
}

// retryable reports whether another attempt may succeed.
func retryable(err error) bool {
	var re *remoteError
	if errors.As(err, &re) {
		return re.kind != kindPermanent
	}
	var le *linkError
	if errors.As(err, &le) {
		return true
	}
	return errors.Is(err, errNoLeader) ||
		errors.Is(err, raft.ErrNotLeader) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress) ||
		errors.Is(err, raft.ErrEnqueueTimeout) ||
		errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrAbortedByRestore)
}

// maybeApplied reports whether err leaves the outcome of a write unknown.
func maybeApplied(err error) bool {
	var re *remoteError
	if errors.As(err, &re) {
		return re.kind == kindUnknown
	}
	var le *linkError
	if errors.As(err, &le) {
		return le.sent
	}
	return errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrAbortedByRestore)
}

// pause waits before the next attempt: wait's next wait (proposeFirstBackoff
// doubling to proposeMaxBackoff), cut short when the leader changes.
func (n *Node) pause(ctx context.Context, wait *retry.Backoff, attempt int, haveHint bool) error {
	if haveHint && attempt < 3 {
		return nil // a node told us where the leader is: go there now
	}
	wake := make(chan struct{})
	quit := make(chan struct{})
	defer close(quit)
	watch := n.leaderChanged()
	go func() {
		select {
		case <-ctx.Done():
		case <-n.ctx.Done():
		case <-watch:
		case <-quit:
			return
		}
		close(wake)
	}()
	wait.Wait(wake)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case n.ctx.Err() != nil:
		return ErrShutdown
	}
	return nil
}

func (n *Node) giveUp(what string, start time.Time, attempts int, last, cause error) error {
	elapsed := time.Since(start).Round(time.Millisecond)
	why := ""
	switch {
	case last == nil:
	case errors.Is(last, errNoLeader):
		why = fmt.Sprintf(": no leader for %s: is a majority of the voters up and reachable?", elapsed)
	case maybeApplied(last):
		why = fmt.Sprintf(": last error (the write may or may not have been applied): %v", last)
	default:
		why = fmt.Sprintf(": last error: %v", last)
	}
	return fmt.Errorf("cluster: %s: gave up after %s and %d attempt(s)%s: %w", what, elapsed, attempts, why, cause)
}

// leaderDo runs op on this node, which must lead. For a write it also
// returns the log index the command was applied at.
func (n *Node) leaderDo(ctx context.Context, op byte, body []byte) (fsm.Result, uint64, error) {
	if n.raft.State() != raft.Leader {
		return fsm.Result{}, 0, raft.ErrNotLeader
	}
	switch op {
	case opApply:
		if typ, _, err := fsm.Decode(body); err != nil {
			if !errors.Is(err, fsm.ErrUnknownType) || typ&fsm.IgnorableFlag == 0 {
				return fsm.Result{}, 0, fmt.Errorf("leader %s refuses the command: %w (a newer node proposed a command type this leader does not know? "+
					"New command types may only be used once every voter is upgraded)", n.cfg.NodeID, err)
			}
		}
		return n.applyLocal(ctx, body)
	case opApplyTrusted:
		return n.applyLocal(ctx, body)
	case opAddVoter:
		id, addr, err := readIDAddr(body)
		if err != nil {
			return fsm.Result{}, 0, errors.New("add voter: malformed request")
		}
		if !nodeIDPattern.MatchString(id) {
			return fsm.Result{}, 0, fmt.Errorf("add voter: bad id %q", id)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fsm.Result{}, 0, fmt.Errorf("add voter %s: bad addr %q", id, addr)
		}
		if err := waitFuture(ctx, n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, enqueueTimeout(ctx))); err != nil {
			return fsm.Result{}, 0, fmt.Errorf("add voter %s at %s: %w", id, addr, err)
		}
		n.log.Info("cluster: voter added", "id", id, "addr", addr)
		return fsm.Result{}, 0, nil
	case opRemoveServer:
		id, _, err := readString(body)
		if err != nil {
			return fsm.Result{}, 0, errors.New("remove server: malformed request")
		}
		if err := waitFuture(ctx, n.raft.RemoveServer(raft.ServerID(id), 0, enqueueTimeout(ctx))); err != nil {
			return fsm.Result{}, 0, fmt.Errorf("remove server %s: %w", id, err)
		}
		n.log.Info("cluster: server removed", "id", id)
		return fsm.Result{}, 0, nil
	case opTransferLeadership:
		id, addr, err := readIDAddr(body)
		if err != nil {
			return fsm.Result{}, 0, errors.New("transfer leadership: malformed request")
		}
		return fsm.Result{}, 0, n.transferTo(ctx, id, addr)
	default:
		return fsm.Result{}, 0, fmt.Errorf("unknown forwarded op %#x (is the sender a newer version?)", op)
	}
}

// applyLocal appends data to the log on this leader and returns what the
// fsm answered. leaderDo has refused, before they reach the log, commands
// this node cannot decode: committed, they would stop every replica that
// runs this version.
func (n *Node) applyLocal(ctx context.Context, data []byte) (fsm.Result, uint64, error) {
	f := n.raft.Apply(data, enqueueTimeout(ctx))
	if err := waitFuture(ctx, f); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return fsm.Result{}, 0, fmt.Errorf("gave up waiting for the commit (the write may or may not be applied): %w", err)
		}
		return fsm.Result{}, 0, err
	}
	switch r := f.Response().(type) {
	case fsm.Result:
		return r, f.Index(), nil
	case error:
		return fsm.Result{}, 0, r
	default:
		return fsm.Result{}, 0, fmt.Errorf("unexpected fsm response %T", r)
	}
}

func enqueueTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(min(time.Until(dl), maxApplyEnqueue), time.Millisecond)
	}
	return maxApplyEnqueue
}

// serveForward serves one authenticated forwarding connection: each
// request runs in its own goroutine, responses go back as they finish.
func (n *Node) serveForward(conn net.Conn) {
	remote := conn.RemoteAddr().String()
	out := make(chan frame, 256)
	writerDone := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(writerDone)
		w := bufio.NewWriterSize(conn, fwdBufSize)
		idle := true
		for {
			select {
			case f := <-out:
				if idle {
					_ = conn.SetWriteDeadline(time.Now().Add(fwdWriteTimeout))
					idle = false
				}
				if err := writeFrame(w, f); err != nil {
					_ = conn.Close()
					return
				}
				if len(out) == 0 {
					if err := w.Flush(); err != nil {
						_ = conn.Close()
						return
					}
					idle = true
				}
			case <-stop:
				return
			}
		}
	}()

	var handlers sync.WaitGroup
	sem := make(chan struct{}, maxInflightPerConn)
	budget := newByteBudget(maxInflightBytesPerConn)
	r := bufio.NewReaderSize(conn, fwdBufSize)
read:
	for {
		f, err := readFrame(r)
		if err != nil {
			if errors.Is(err, errBadFrame) {
				n.log.Warn("cluster: forwarding link: closing connection after a bad frame", "remote", remote, "error", err)
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && n.ctx.Err() == nil {
				n.log.Debug("cluster: forwarding link closed", "remote", remote, "error", err)
			}
			break
		}
		if f.code != opApply && f.code != opAddVoter && f.code != opRemoveServer && f.code != opTransferLeadership {
			n.log.Warn("cluster: forwarding link: closing connection after an unknown op", "remote", remote, "op", f.code)
			break
		}
		select {
		case sem <- struct{}{}:
		case <-n.ctx.Done():
			break read
		}
		cost := len(f.body) + 1024
		if err := budget.acquire(n.ctx, cost); err != nil {
			break
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			defer func() { <-sem; budget.release(cost) }()
			resp := n.handleForward(f)
			select {
			case out <- resp:
			case <-writerDone:
			}
		}()
	}
	_ = conn.Close()
	handlers.Wait()
	close(stop)
	<-writerDone
}

// handleForward runs one forwarded request and builds its response.
func (n *Node) handleForward(f frame) frame {
	res, index, err := n.leaderDo(n.ctx, f.code, f.body)
	if err == nil && f.code == opApply {
		var body []byte
		if body, err = fsm.EncodeResult(res); err == nil {
			return frame{code: respOK, id: f.id, body: append(binary.BigEndian.AppendUint64(nil, index), body...)}
		}
	}
	if err == nil {
		return frame{code: respOK, id: f.id}
	}
	kind := errKind(err)
	leader := ""
	if kind == kindRetry {
		if a, _ := n.raft.LeaderWithID(); string(a) != n.advertise {
			leader = string(a)
		}
	}
	return frame{code: respErr, id: f.id, body: encodeErrBody(kind, leader, err.Error())}
}

// errKind classifies an error of leaderDo for the node that forwarded it.
func errKind(err error) byte {
	switch {
	case errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, ErrShutdown):
		return kindRetry
	case errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrAbortedByRestore),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded):
		return kindUnknown
	default:
		return kindPermanent
	}
}

// byteBudget is a weighted semaphore. One request bigger than the whole
// budget still gets in when nothing else is in flight.
type byteBudget struct {
	mu   sync.Mutex
	used int
	max  int
	wake chan struct{}
}

func newByteBudget(max int) *byteBudget {
	return &byteBudget{max: max, wake: make(chan struct{})}
}

func (b *byteBudget) acquire(ctx context.Context, n int) error {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *byteBudget) release(n int) {
	b.mu.Lock()
	b.used -= n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}
