package sipstack

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/internal/logthrottle"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// REGISTERs over UDP, answered without a sipgo transaction.
//
// A REGISTER needs nothing of a transaction but to have its
// retransmissions absorbed while it is being processed: its answer is the
// same whenever it is asked again (a fresh challenge, or the 200 the
// registrar reads back from the state: registrar.isRetransmission), and
// every transaction already ended with its response (sipmsg.Respond). So
// the screen, which has parsed the datagram anyway, hands a REGISTER
// received over UDP straight to a pool of workers instead of to sipgo:
// no second parse, no transaction, no goroutine per message. Kamailio
// answers REGISTERs statelessly the same way.
//
// The pool is also where the node sheds what it cannot take: a REGISTER
// that waited in its queue longer than ShedAfter (without credentials;
// with credentials, the second half of a registration already begun, five
// times as long) is answered 503 with Retry-After unread, so that what is
// accepted keeps its response time, and the load sheds itself as soon as
// the queue is short again.

// udpRegister is a REGISTER received over UDP, waiting for a worker.
type udpRegister struct {
	sock    *transport.Socket
	w       net.PacketConn // the socket it came in on, for the answer
	req     *sip.Request
	key     string    // its server transaction key
	arrived time.Time // when the screen took it
}

// regPool answers the REGISTERs received over UDP. Its workers are
// started as the queue needs them, up to max (a worker waits for the
// cluster while it writes a binding, so there are as many as writes in
// flight), and end after a while without work.
type regPool struct {
	s       *Server
	queue   chan udpRegister
	max     int32
	workers atomic.Int32 // running
	idle    atomic.Int32 // waiting for work
	ctx     context.Context
	shed    shedder
	now     func() time.Time // of queue waits (tests replace it)

	mu       sync.Mutex
	inflight map[string]struct{} // transaction keys queued or being answered

	shedLog *logthrottle.Gate
	bufs    sync.Pool // *bytes.Buffer: the responses being written
}

const (
	// udpRegisterQueue bounds the REGISTERs waiting for a worker; more
	// are shed at once.
	udpRegisterQueue = 8192
	// workerIdle: a worker without work for this long ends.
	workerIdle = 30 * time.Second
)

func newRegPool(s *Server) *regPool {
	return &regPool{s: s, queue: make(chan udpRegister, udpRegisterQueue), max: int32(s.cfg.Registrar.MaxInFlight),
		shed: shedder{target: s.cfg.Registrar.ShedAfter, interval: shedInterval}, now: time.Now,
		inflight: map[string]struct{}{}, shedLog: logthrottle.New(10*time.Second, 1)}
}

// start lets workers run until ctx ends; what is still queued then is
// never answered (the phones retry elsewhere).
func (p *regPool) start(ctx context.Context) { p.ctx = ctx }

// spawn starts a worker if none is idle and there is room for one.
func (p *regPool) spawn() {
	if p.ctx == nil || p.idle.Load() > 0 {
		return
	}
	if n := p.workers.Add(1); n > p.max {
		p.workers.Add(-1)
		return
	}
	p.s.wg.Add(1)
	go p.work()
}

func (p *regPool) work() {
	defer p.s.wg.Done()
	defer p.workers.Add(-1)
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		p.idle.Add(1)
		select {
		case r := <-p.queue:
			p.idle.Add(-1)
			p.answer(r)
			idle.Reset(workerIdle)
		case <-idle.C:
			p.idle.Add(-1)
			return
		case <-p.ctx.Done():
			p.idle.Add(-1)
			return
		}
	}
}

// take queues a REGISTER the screen parsed (req, with its transaction key)
// from src on sock, whose answer goes out through w. It runs on the
// socket's reader: it never blocks.
func (p *regPool) take(sock *transport.Socket, w net.PacketConn, req *sip.Request, key string, src net.Addr) {
	s := p.s
	req.SetTransport("UDP")
	req.SetSource(src.String())
	s.m.request(string(req.Method))
	if !sipmsg.EchoSafe(req) {
		s.m.parseErrors.Inc()
		s.log.Debug("dropped request with control characters in its headers", "socket", sock.Name, "source", req.Source())
		return
	}
	p.mu.Lock()
	_, busy := p.inflight[key]
	if !busy {
		p.inflight[key] = struct{}{}
	}
	p.mu.Unlock()
	if busy {
		return // a retransmission of a request in hand: its answer is coming
	}
	r := udpRegister{sock: sock, w: w, req: req, key: key, arrived: p.now()}
	select {
	case p.queue <- r:
		p.spawn()
	default:
		p.shedOne(r, "queue full")
		p.done(r)
	}
}

// answer decides the answer to r on a worker and sends it.
func (p *regPool) answer(r udpRegister) {
	if !p.s.gate.enter() {
		p.done(r)
		return // shutting down: the phone retries elsewhere
	}
	defer p.s.gate.exit()
	if p.shed.shed(p.now(), p.now().Sub(r.arrived), sipmsg.HasHeader(r.req, "Authorization")) {
		p.done(r)
		p.shedOne(r, "queue wait")
		return
	}
	rep := p.decide(r)
	// Forgotten before it is answered: a retransmission sent as soon as
	// the phone has the answer is a new request again (the registrar
	// answers it from the state), never absorbed with no answer to come.
	p.done(r)
	p.send(r, rep)
}

// decide is the registrar's answer to r (500 if it panics).
func (p *regPool) decide(r udpRegister) (rep sipmsg.Reply) {
	defer func() {
		if e := recover(); e != nil {
			p.s.log.Error("SIP handler panicked", "socket", r.sock.Name, "method", string(r.req.Method), "panic", e, "stack", string(debug.Stack()))
			p.s.m.stackErrors.Inc()
			rep = sipmsg.Reply{Code: sip.StatusInternalServerError, Reason: "Server Internal Error"}
		}
	}()
	return p.s.reg.Handle(p.s.baseCtx, r.sock, r.req)
}

// shedOne answers r 503 unread.
func (p *regPool) shedOne(r udpRegister, why string) {
	p.send(r, p.s.reg.Shed())
	if ok, suppressed := p.shedLog.Allow(logthrottle.Key{}, time.Now()); ok {
		p.s.log.Warn("overloaded: REGISTERs answered 503 unread", "why", why, "waited", p.now().Sub(r.arrived).Round(time.Millisecond),
			"socket", r.sock.Name, "not_logged_since_last", suppressed)
	}
}

// done forgets r's transaction: a retransmission is a new request again.
func (p *regPool) done(r udpRegister) {
	p.mu.Lock()
	delete(p.inflight, r.key)
	p.mu.Unlock()
}

// send writes the answer rep to r where sipgo would: the source address,
// at the Via's port or (rport) the source port.
func (p *regPool) send(r udpRegister, rep sipmsg.Reply) {
	if rep.Bad != "" {
		p.s.m.badRequests.WithLabelValues(rep.Bad).Inc()
	}
	dest, err := netip.ParseAddrPort(sipmsg.ResponseDest(r.req, r.req.Source()))
	if err != nil {
		return
	}
	buf, _ := p.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer p.bufs.Put(buf)
	buf.Reset()
	sipmsg.Response(r.req, rep).StringWrite(buf)
	if _, err := r.w.WriteTo(buf.Bytes(), net.UDPAddrFromAddrPort(dest)); err != nil {
		p.s.log.Debug("could not send response", "code", rep.Code, "to", dest.String(), "error", err)
	}
}

// shedInterval is how long the queue wait must stay above the target
// before REGISTERs are shed.
const shedInterval = 100 * time.Millisecond

// shedder decides when to shed, as CoDel decides when to drop (RFC 8289):
// a burst that the workers catch up with is not shed, however long its
// wait; a queue that stays, with even its shortest wait above target for
// a whole interval, is. While it stays, a REGISTER without credentials
// that waited longer than target is answered 503 unread, and one with
// credentials (the second half of a registration already begun) only past
// five times target.
type shedder struct {
	target   time.Duration // negative: never shed
	interval time.Duration

	mu       sync.Mutex
	since    time.Time     // start of the current interval
	minWait  time.Duration // shortest wait seen in it
	shedding bool          // the last whole interval's shortest wait was above target
}

// shed reports whether a REGISTER picked up at now after waiting wait
// (with credentials: authed) is to be shed.
func (d *shedder) shed(now time.Time, wait time.Duration, authed bool) bool {
	if d.target < 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if now.Sub(d.since) >= d.interval {
		d.shedding = !d.since.IsZero() && d.minWait > d.target
		d.since, d.minWait = now, wait
	} else {
		d.minWait = min(d.minWait, wait)
	}
	limit := d.target
	if authed {
		limit *= 5
	}
	return d.shedding && wait > limit
}
