package keepalive

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
)

// removeTimeout bounds the replicated write that removes an unreachable
// binding.
const removeTimeout = 5 * time.Second

// deferredWarnEvery spaces the warnings about pings waiting for the cap.
const deferredWarnEvery = time.Minute

// Pinger pings the bindings registered through the sockets this node
// holds. Its state (when each binding was pinged, its failures) is this
// node's own.
type Pinger struct {
	cfg       Config
	sockets   Sockets
	state     State
	store     Store
	newCallID func() string // a Call-ID whose answers come back to this node
	log       *slog.Logger
	m         *metrics
	perTick   int
	maxOut    int

	wg sync.WaitGroup // pings and removals in progress

	mu          sync.Mutex
	runCtx      context.Context   // Run's: removals end with it
	entries     map[string]*entry // by bindingID
	lastRefresh time.Time
	outstanding int // pings waiting for an answer
	unreachable int // entries unreachable
	seq         uint64
	lastWarn    time.Time
}

// entry is one binding this node pings.
type entry struct {
	b        fsm.Binding
	phase    time.Duration
	last     int64 // slot of the last ping (or of when it was first seen)
	reach    reach
	lastSeen time.Time // last answer, or the REGISTER that made or refreshed it
	flight   *flight   // the ping waiting for an answer, if any
}

// flight is a ping waiting for an answer.
type flight struct {
	id       uint64
	deadline time.Time // on the Now clock
	cancel   context.CancelFunc
}

// New returns the keepalive of a node; with cfg.Interval zero it does
// nothing. newCallID makes Call-IDs whose answers the dispatcher brings
// back to this node.
func New(cfg Config, sockets Sockets, state State, store Store, newCallID func() string) (*Pinger, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	p := &Pinger{cfg: cfg, sockets: sockets, state: state, store: store, newCallID: newCallID, entries: map[string]*entry{}}
	if cfg.Interval == 0 {
		return p, nil
	}
	p.log = cfg.Logger
	p.m = newMetrics(cfg.Metrics)
	p.perTick = perTick(cfg.MaxPerSecond, cfg.Tick)
	p.maxOut = maxOutstanding(p.perTick, cfg.Timeout, cfg.Tick)
	return p, nil
}

// Enabled reports whether the keepalive pings at all.
func (p *Pinger) Enabled() bool { return p.cfg.Interval > 0 }

// Run pings until ctx ends, then waits for the pings in flight to end.
func (p *Pinger) Run(ctx context.Context) {
	if !p.Enabled() {
		return
	}
	p.log.Info("NAT keepalive: pinging the bindings of the sockets this node holds", "interval", p.cfg.Interval,
		"timeout", p.cfg.Timeout, "failures", p.cfg.Failures, "remove_unreachable", p.cfg.RemoveUnreachable)
	p.mu.Lock()
	p.runCtx = ctx
	p.mu.Unlock()
	t := time.NewTicker(p.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// The pings in flight end without an outcome: the node is
			// stopping, not the phones.
			p.mu.Lock()
			for _, e := range p.entries {
				if e.flight != nil {
					e.flight.cancel()
					e.flight = nil
					p.outstanding--
				}
			}
			p.m.pending.Set(float64(p.outstanding))
			p.mu.Unlock()
			p.wg.Wait()
			return
		case <-t.C:
			p.tick(ctx)
		}
	}
}

// Status is what this node's keepalive knows of a binding it pings.
type Status struct {
	Reachable bool
	// LastSeen is when the phone was last heard: its last answer to a
	// ping, or the REGISTER that made or refreshed the binding.
	LastSeen time.Time
	// Unanswered counts the failed pings since then.
	Unanswered int
}

// Status returns what this node knows of b; false when this node does
// not ping it (another node holds its socket, or it is not known yet).
func (p *Pinger) Status(b fsm.Binding) (Status, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[bindingID(b)]
	if !ok || e.b.Ingress != b.Ingress {
		return Status{}, false
	}
	return Status{Reachable: !e.reach.unreachable, LastSeen: e.lastSeen, Unanswered: e.reach.failures}, true
}

// tick refreshes the bindings when it is time, ends the pings whose
// answer is overdue, and starts the pings that are due.
func (p *Pinger) tick(ctx context.Context) {
	now := p.cfg.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastRefresh.IsZero() || now.Sub(p.lastRefresh) >= p.cfg.Refresh || now.Before(p.lastRefresh) {
		p.refresh(now)
		p.lastRefresh = now
	}
	// Only due bindings become candidates: a tick looks at every entry
	// but allocates for the few it may ping. A binding whose socket this
	// node has stopped holding since the last refresh waits for it (and
	// is then forgotten): the new holder pings it.
	held := p.heldSockets()
	var ids []string
	var cs []candidate
	for id, e := range p.entries {
		if e.flight != nil && !now.Before(e.flight.deadline) {
			p.land(e, outcomeTimeout, now)
		}
		if due := dueAt(e.last, e.phase, p.cfg.Interval); e.flight == nil && !due.After(now) && held[e.b.Ingress] {
			ids = append(ids, id)
			cs = append(cs, candidate{due: due})
		}
	}
	picked, deferred := plan(cs, now, min(p.perTick, p.maxOut-p.outstanding))
	if deferred > 0 {
		p.m.deferred.Add(float64(deferred))
		if now.Sub(p.lastWarn) >= deferredWarnEvery || now.Before(p.lastWarn) {
			p.lastWarn = now
			p.log.Warn("NAT keepalive: more pings due than registrar.keepalive_max_per_second allows; the rest wait",
				"waiting", deferred, "max_per_second", p.cfg.MaxPerSecond, "bindings", len(p.entries))
		}
	}
	for _, i := range picked {
		p.start(ctx, ids[i], p.entries[ids[i]], now)
	}
}

// refresh reads the bindings this node pings from the replicated state:
// new ones get an entry (firstSlot says when they are first pinged),
// re-registered ones count as heard from, and those gone
// (expired, removed, or registered through a socket this node no longer
// holds) are forgotten.
func (p *Pinger) refresh(now time.Time) {
	held := p.heldSockets()
	ms := now.UnixMilli()
	seen := make(map[string]bool, len(p.entries))
	for _, b := range p.state.AllBindings(ms) {
		if !Pings(b, held, ms) {
			continue
		}
		id := bindingID(b)
		seen[id] = true
		e := p.entries[id]
		switch {
		case e == nil:
			e = &entry{b: b, phase: phaseOf(id, p.cfg.Interval), lastSeen: time.UnixMilli(b.UpdatedAt)}
			e.last = firstSlot(now, e.lastSeen, e.phase, p.cfg.Interval)
			p.entries[id] = e
		case b.UpdatedAt != e.b.UpdatedAt || b.Ingress != e.b.Ingress || b.Source != e.b.Source:
			e.b = b
			if t := time.UnixMilli(b.UpdatedAt); t.After(e.lastSeen) {
				e.lastSeen = t
			}
			p.apply(e, outcomeRegistered)
		}
	}
	for id, e := range p.entries {
		if seen[id] {
			continue
		}
		if e.flight != nil {
			e.flight.cancel()
			p.outstanding--
		}
		if e.reach.unreachable {
			p.unreachable--
		}
		delete(p.entries, id)
	}
	p.m.bindings.Set(float64(len(p.entries)))
	p.m.unreachable.Set(float64(p.unreachable))
	p.m.pending.Set(float64(p.outstanding))
}

// heldSockets is the set of the sockets this node holds now.
func (p *Pinger) heldSockets() map[string]bool {
	held := map[string]bool{}
	for _, name := range p.sockets.Sockets() {
		held[name] = true
	}
	return held
}

// start sends one ping of e (under p.mu).
func (p *Pinger) start(ctx context.Context, id string, e *entry, now time.Time) {
	e.last = slotOf(now, e.phase, p.cfg.Interval)
	sock := p.sockets.Named(e.b.Ingress)
	if sock == nil {
		p.m.pings.WithLabelValues(resultError).Inc()
		p.log.Debug("NAT keepalive: the binding's socket is not open", "account", e.b.AOR, "ingress", e.b.Ingress)
		return
	}
	if !hasFlow(e.b, sock) {
		p.land(e, outcomeNoFlow, now)
		return
	}
	req, err := options(e.b, sock, p.newCallID())
	if err != nil {
		p.m.pings.WithLabelValues(resultError).Inc()
		p.log.Debug("NAT keepalive: cannot ping the binding", "account", e.b.AOR, "contact", e.b.Contact, "error", err)
		return
	}
	p.seq++
	fctx, cancel := context.WithTimeout(ctx, sip.Timer_F+sip.T1) // the transaction's own bound, in real time
	f := &flight{id: p.seq, deadline: now.Add(p.cfg.Timeout), cancel: cancel}
	e.flight = f
	p.outstanding++
	p.m.pending.Set(float64(p.outstanding))
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer cancel()
		o, err := send(fctx, sock, req)
		p.mu.Lock()
		defer p.mu.Unlock()
		cur := p.entries[id]
		if cur == nil || cur.flight != f || ctx.Err() != nil {
			return // timed out on the clock already, forgotten, or the node is stopping (Run clears it)
		}
		if err != nil && o != outcomeTimeout {
			p.log.Debug("NAT keepalive: ping failed", "account", cur.b.AOR, "contact", cur.b.Contact, "error", err)
		}
		p.land(cur, o, p.cfg.Now())
	}()
}

// land records the outcome of e's ping (under p.mu).
func (p *Pinger) land(e *entry, o outcome, now time.Time) {
	if e.flight != nil {
		e.flight.cancel()
		e.flight = nil
		p.outstanding--
		p.m.pending.Set(float64(p.outstanding))
	}
	p.m.pings.WithLabelValues(o.label()).Inc()
	if o == outcomeOK {
		e.lastSeen = now
	}
	p.apply(e, o)
}

// apply steps e's reachability (under p.mu): the gauge, the log line,
// and the removal of a binding that became unreachable.
func (p *Pinger) apply(e *entry, o outcome) {
	var ch change
	e.reach, ch = step(e.reach, o, p.cfg.Failures)
	b := e.b
	switch ch {
	case becameUnreachable:
		p.unreachable++
		p.log.Info("registered phone unreachable: it stopped answering the NAT keepalive", "account", b.AOR,
			"contact", b.Contact, "ingress", b.Ingress, "source", b.Source, "unanswered", e.reach.failures,
			"last_seen", e.lastSeen.UTC().Format(time.RFC3339))
		if p.cfg.RemoveUnreachable && p.runCtx != nil {
			ctx := p.runCtx
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.remove(ctx, b)
			}()
		}
	case becameReachable:
		p.unreachable--
		how := "it answered the NAT keepalive"
		if o == outcomeRegistered {
			how = "it registered again"
		}
		p.log.Info("registered phone reachable again: "+how, "account", b.AOR, "contact", b.Contact,
			"ingress", b.Ingress, "source", b.Source)
	}
	p.m.unreachable.Set(float64(p.unreachable))
}

// remove unregisters b through the cluster, as its phone's own
// unregistration would: the next CSeq of b's Call-ID with expiry now.
// A phone that registered again meanwhile keeps its binding: a refresh
// with that Call-ID has taken the CSeq (the state machine refuses this
// one as stale), and one with another Call-ID is seen here first.
func (p *Pinger) remove(ctx context.Context, b fsm.Binding) {
	now := p.cfg.Now().UnixMilli()
	id := bindingID(b)
	current := false
	for _, cur := range p.state.Bindings(b.AOR, now) {
		if bindingID(cur) == id {
			current = cur.CallID == b.CallID && cur.CSeq == b.CSeq && cur.UpdatedAt == b.UpdatedAt
		}
	}
	if !current {
		return
	}
	gone := b
	gone.ExpiresAt = now
	ctx, cancel := context.WithTimeout(ctx, removeTimeout)
	defer cancel()
	res, err := p.store.Propose(ctx, &fsm.Register{AOR: b.AOR, CallID: b.CallID, CSeq: b.CSeq + 1, Now: now, Bindings: []fsm.Binding{gone}})
	if err == nil && res.Err != nil {
		err = res.Err
	}
	if err != nil {
		p.log.Warn("NAT keepalive: removing an unreachable binding failed", "account", b.AOR, "contact", b.Contact, "error", err)
		return
	}
	p.m.removed.Inc()
	p.log.Info("removed an unreachable registration (registrar.keepalive_remove_unreachable)", "account", b.AOR,
		"contact", b.Contact, "ingress", b.Ingress, "source", b.Source)
}
