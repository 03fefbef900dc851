package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/cluster"
)

// A planned stop (`troika drain`, POST /v1/cluster/drain: docs/API.md).
// This file starts a drain and runs its steps in order; the preflight is
// in drain_preflight.go, the waiting steps (2 to 4) in drain_steps.go and
// the progress stream in drain_run.go. The steps, each reported as
// progress lines:
//
//  1. Preflight (skipped with force): a leader is known; without this
//     node a quorum of the voters stays in service; every address this
//     node holds has another healthy node that can take it. Otherwise the
//     drain is refused before anything changes.
//  2. Addresses: the node gives up its virtual and alias addresses, then
//     says "draining" in gossip (and to its own placement loop, should it
//     lead). The leader moves the addresses to healthy nodes
//     (cluster/placement.go); each new holder takes its address after the
//     handover wait (about 1.4 s with the default lease), so the address is
//     unheld for about that long: phones retransmit meanwhile. The drain
//     waits until another node holds each address and answers SIP OPTIONS
//     on it from here, bounded by addressWaitMax.
//  3. Leadership: if the node leads, raft leadership goes to another voter.
//  4. Calls: new INVITEs get 503 with Retry-After (if any still arrive,
//     e.g. on the node's own address); the drain waits for the calls still
//     ringing here to be answered or to fail. Answered calls are not
//     waited for: they are in the replicated state, and once this node
//     says it is leaving, the node now processing each caller's Call-ID
//     adopts it (sipstack/b2bua_adopt.go), so the caller's BYE still ends
//     and bills it.
//  5. Leaving: the node stops (SIP sockets, address owner), leaves gossip
//     (the others see it "left" at once) and shuts raft down; Wait returns
//     nil, the process exits 0.
//
// Steps 2 to 4 are bounded together by the request's timeout. A step that
// fails or times out stops the drain and puts the node back in service
// (health ok, new calls taken; addresses that moved stay where they are),
// unless force is set: then it is reported and the drain goes on.

// Drain step bounds within the request's timeout.
const (
	addressWaitMax    = 30 * time.Second
	leadershipWaitMax = 15 * time.Second
	leaveWaitMax      = 15 * time.Second
	drainPoll         = 50 * time.Millisecond
	drainNoteEvery    = 2 * time.Second
	callsNoteEvery    = 5 * time.Second
	// probeGrace: after an address's handover wait, how long SIP OPTIONS
	// may go unanswered before the drain accepts the new assignment as
	// the proof (a firewall may drop the probe).
	probeGrace = 3 * time.Second
)

// drainer is a node's drain state.
type drainer struct {
	ctx      context.Context    // the node's run context
	stopNode context.CancelFunc // ends it: the node stops cleanly
	leftCh   chan struct{}      // closed once the node has left gossip
	leftOnce sync.Once
	on       atomic.Bool // health "draining"
	leaving  atomic.Bool // health "leaving": the node is stopping
	metaMu   sync.Mutex  // orders gossip metadata updates

	mu  sync.Mutex
	run *drainRun // the drain in progress, or the last one
}

// init makes the node's run context, which a drain ends.
func (d *drainer) init(parent context.Context) context.Context {
	d.ctx, d.stopNode = context.WithCancel(parent)
	d.leftCh = make(chan struct{})
	return d.ctx
}

// left records that the node has left gossip (stop calls it).
func (d *drainer) left() { d.leftOnce.Do(func() { close(d.leftCh) }) }

// health is this node's gossip health while it runs.
func (d *drainer) health() string {
	if d.leaving.Load() {
		return cluster.HealthLeaving
	}
	if d.on.Load() {
		return cluster.HealthDraining
	}
	return cluster.HealthOK
}

// setDraining announces the node as draining (or back in service). A
// draining node first gives up its addresses (they are then unheld until
// the leader has moved them and the new holder's handover wait is over),
// then says so in gossip.
func (n *Node) setDraining(on bool) {
	if !on && n.drain.leaving.Load() {
		return // stopping: its addresses stay given up
	}
	n.drain.on.Store(on)
	if n.owner != nil {
		n.owner.SetDraining(on, 2*time.Second)
	}
	if err := n.publishMeta(); err != nil {
		n.log.Warn("gossip: announcing this node's health failed; it is gossiped again within 2 s", "draining", on, "error", err)
	}
}

// Drain implements admin.Drainer: it starts a planned stop of this node,
// or returns the drain in progress (or the one that succeeded: the node is
// leaving).
func (n *Node) Drain(opts admin.DrainOptions) (admin.DrainRun, bool, error) {
	d := &n.drain
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.run; r != nil {
		if done, ok := r.ended(); !done || ok {
			return r, true, nil
		}
	}
	select {
	case <-n.ready:
	default:
		return nil, false, &admin.DrainRefused{Msg: "the node is still starting: drain it once it has started"}
	}
	if d.ctx.Err() != nil {
		return nil, false, &admin.DrainRefused{Msg: "the node is already stopping"}
	}
	if !opts.Force {
		if msg := n.drainPreflight(); msg != "" {
			n.log.Warn("drain refused", "why", msg)
			return nil, false, &admin.DrainRefused{Msg: msg}
		}
	}
	r := &drainRun{opts: opts, started: time.Now(), wake: make(chan struct{})}
	r.log = func(line string) {
		n.log.Info("drain: "+line, "node", n.cfg.NodeID, "elapsed", time.Since(r.started).Round(time.Millisecond))
	}
	d.run = r
	go n.runDrain(r)
	return r, false, nil
}

// runDrain runs the steps of a drain.
func (n *Node) runDrain(r *drainRun) {
	ctx := n.drain.ctx
	deadline := r.started.Add(r.opts.Timeout)
	force := ""
	if r.opts.Force {
		force = ", force"
	}
	r.say("drain of %s started (timeout %s%s)", n.cfg.NodeID, r.opts.Timeout, force)

	// The addresses to hand over, before the leader starts moving them.
	mine := n.myAddresses()
	n.setDraining(true)
	r.say("health: draining, announced in gossip")
	t := time.Now()
	if err := n.drainAddresses(ctx, r, mine, deadline); err != nil {
		n.abortDrain(r, err)
		return
	}
	tookAddrs := time.Since(t)

	t = time.Now()
	if err := n.drainLeadership(ctx, r, deadline); err != nil {
		n.abortDrain(r, err)
		return
	}
	tookLeader := time.Since(t)

	n.sip.Drain(true)
	r.say("calls: new INVITEs now get 503 Service Unavailable with Retry-After")
	t = time.Now()
	if err := n.drainCalls(ctx, r, deadline); err != nil {
		n.abortDrain(r, err)
		return
	}
	tookCalls := time.Since(t)

	// Leadership may have come back in an election meanwhile.
	if n.cluster.IsLeader() && n.otherVoters() {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.cluster.TransferLeadership(lctx)
		cancel()
		if err != nil {
			r.say("leadership: this node leads again and handing it over failed (%v): the others elect a leader once it is gone", err)
		} else {
			id, _ := n.cluster.Leader()
			r.say("leadership: this node led again; %s leads now", id)
		}
	}

	t = time.Now()
	r.say("leaving: closing the SIP sockets, leaving gossip, stopping raft")
	n.drain.stopNode()
	_, answered := n.callsHere()
	select {
	case <-n.drain.leftCh:
		if answered > 0 {
			r.say("leaving: left gossip (%s): the nodes now processing the callers' Call-IDs adopt its %d answered call(s)", secs(time.Since(t)), answered)
		} else {
			r.say("leaving: left gossip (%s)", secs(time.Since(t)))
		}
	case <-time.After(leaveWaitMax):
		r.say("leaving: gossip leave not confirmed within %s; the process stops anyway (the others detect it within a second)", leaveWaitMax)
	}
	r.finish(fmt.Sprintf("%s left the cluster in %s (addresses %s, leadership %s, calls %s); its process exits with status 0",
		n.cfg.NodeID, secs(time.Since(r.started)), secs(tookAddrs), secs(tookLeader), secs(tookCalls)), nil)
}

// abortDrain ends a failed drain: the node goes back in service unless it
// is stopping anyway.
func (n *Node) abortDrain(r *drainRun, err error) {
	if n.drain.ctx.Err() != nil {
		r.finish("", errors.New("the node was told to stop (a signal) before the drain finished: it stops without the remaining steps"))
		return
	}
	n.sip.Drain(false)
	n.setDraining(false)
	n.log.Warn("drain stopped; the node is back in service", "error", err)
	r.finish("", fmt.Errorf("%v; the node is back in service", err))
}
