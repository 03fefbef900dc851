package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/cluster"
)

// A planned stop (`troika drain`, POST /v1/cluster/drain; DESIGN.md §4,
// §7). The steps, each reported as progress lines:
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

// publishMeta gossips this node's current metadata.
func (n *Node) publishMeta() error {
	n.drain.metaMu.Lock()
	defer n.drain.metaMu.Unlock()
	return n.gossip.SetMeta(n.meta(n.drain.health()))
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

// drainRun is one drain: its progress lines and outcome.
type drainRun struct {
	log     func(line string)
	opts    admin.DrainOptions
	started time.Time

	mu      sync.Mutex
	lines   []string
	wake    chan struct{}
	done    bool
	summary string
	err     error
}

func (r *drainRun) say(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	r.log(line)
	r.mu.Lock()
	r.lines = append(r.lines, line)
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

func (r *drainRun) finish(summary string, err error) {
	r.mu.Lock()
	r.done, r.summary, r.err = true, summary, err
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

// ended reports whether the drain is over, and whether it succeeded.
func (r *drainRun) ended() (done, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done, r.done && r.err == nil
}

// Follow implements admin.DrainRun.
func (r *drainRun) Follow(ctx context.Context, line func(string)) (string, error) {
	next := 0
	for {
		r.mu.Lock()
		lines := r.lines[next:]
		done, summary, err, wake := r.done, r.summary, r.err, r.wake
		r.mu.Unlock()
		for _, l := range lines {
			line(l)
		}
		next += len(lines)
		if done {
			return summary, err
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-wake:
		}
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

// inService lists the other voters alive in gossip with health ok, and
// among them those that manage addresses.
func (n *Node) inService() (voters, up, takers []string) {
	members := map[string]cluster.Member{}
	for _, m := range n.gossip.Members() {
		members[m.ID] = m
	}
	voters = n.cluster.Voters()
	for _, v := range voters {
		m, ok := members[v]
		if v == n.cfg.NodeID || !ok || m.State != cluster.MemberAlive || m.Meta.Health != cluster.HealthOK {
			continue
		}
		up = append(up, v)
		if m.Meta.Addrs {
			takers = append(takers, v)
		}
	}
	return voters, up, takers
}

// myAddresses lists the addresses assigned to or held by this node.
func (n *Node) myAddresses() []string {
	set := map[string]bool{}
	for _, a := range n.state.Assignments() {
		if a.Node == n.cfg.NodeID {
			set[a.IP] = true
		}
	}
	if n.owner != nil {
		for _, ip := range n.owner.Held() {
			set[ip] = true
		}
	}
	out := make([]string, 0, len(set))
	for ip := range set {
		out = append(out, ip)
	}
	slices.Sort(out)
	return out
}

// drainPreflight returns why draining this node now would stop the
// service (and what to do), or "".
func (n *Node) drainPreflight() string {
	self := n.cfg.NodeID
	if id, _ := n.cluster.Leader(); id == "" {
		return "no raft leader is known: addresses cannot move and leadership cannot be handed over; " +
			"fix the cluster first (troika cluster status), or drain with --force"
	}
	voters, up, takers := n.inService()
	if n.owner != nil && len(takers) == 0 {
		if mine := n.myAddresses(); len(mine) > 0 {
			return fmt.Sprintf("no other healthy node to take %s: start another node or use --force", strings.Join(mine, ", "))
		}
	}
	if slices.Contains(voters, self) {
		need := len(voters)/2 + 1
		if len(voters) == 1 {
			return "this is the cluster's only node: draining it stops the switch; drain with --force to stop it anyway"
		}
		if len(up) < need {
			return fmt.Sprintf("without %s, %d of the %d voters would be in service (%s), fewer than the %d raft needs: "+
				"the cluster would stop taking writes and moving addresses; start the other nodes (and wait until they are healthy), "+
				"or drain with --force", self, len(up), len(voters), listOrNone(up), need)
		}
	}
	return ""
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s" }

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

var errStopping = errors.New("the node is stopping")

func sleepOrDone(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return errStopping
	case <-t.C:
		return nil
	}
}

// drainAddresses waits until the leader has moved mine, the addresses
// this node held when the drain began, to other nodes: this node holds
// none, and each answers SIP from here.
func (n *Node) drainAddresses(ctx context.Context, r *drainRun, mine []string, deadline time.Time) error {
	if n.owner == nil {
		r.say("addresses: none managed here ([vip] not configured): nothing to move")
		return nil
	}
	self := n.cfg.NodeID
	if len(mine) == 0 {
		r.say("addresses: this node holds none")
		return nil
	}
	if _, _, takers := n.inService(); len(takers) == 0 && r.opts.Force {
		r.say("addresses: no other healthy node can take %s; --force: nobody serves them until a node can take them", strings.Join(mine, ", "))
		return nil
	}
	leader, _ := n.cluster.Leader()
	r.say("addresses: %s given up here; waiting for the leader (%s) to move them", strings.Join(mine, ", "), leader)
	start := time.Now()
	limit := earliest(deadline, start.Add(addressWaitMax))
	handover := n.cfg.LeaseTiming().HandoverWait()
	moved := map[string]time.Time{} // ip -> when this node saw it assigned elsewhere
	pending := slices.Clone(mine)
	lastNote := start
	for len(pending) > 0 {
		now := time.Now()
		assigned := map[string]string{}
		for _, a := range n.state.Assignments() {
			assigned[a.IP] = a.Node
		}
		held := n.owner.Held()
		var still []string
		for _, ip := range pending {
			to := assigned[ip]
			if to == "" || to == self || slices.Contains(held, ip) {
				delete(moved, ip)
				still = append(still, ip)
				continue
			}
			if _, ok := moved[ip]; !ok {
				moved[ip] = now
				r.say("addresses: %s assigned to %s (%s)", ip, to, secs(now.Sub(start)))
			}
			since := now.Sub(moved[ip])
			if since < handover {
				still = append(still, ip) // the new holder takes it after its handover wait
				continue
			}
			if port, ok := n.probeAddress(ip); ok {
				r.say("addresses: %s now held by %s (answers SIP at %s, %s)", ip, to, net.JoinHostPort(ip, strconv.Itoa(port)), secs(time.Since(start)))
				continue
			} else if port == 0 || since >= handover+probeGrace {
				why := "no SIP UDP port to probe"
				if port != 0 {
					why = fmt.Sprintf("no answer to SIP OPTIONS at %s from here for %s: a filter?", net.JoinHostPort(ip, strconv.Itoa(port)), secs(since-handover))
				}
				r.say("addresses: %s now held by %s (assigned, past its handover wait of %s; %s; %s)", ip, to, secs(handover), why, secs(time.Since(start)))
				continue
			}
			still = append(still, ip)
		}
		pending = still
		if len(pending) == 0 {
			break
		}
		if time.Now().After(limit) { // not now: the probes above took time
			var desc []string
			for _, ip := range pending {
				desc = append(desc, fmt.Sprintf("%s (assigned to %s)", ip, orNobody(assigned[ip])))
			}
			err := fmt.Errorf("addresses: %s not handed over within %s: is the leader (%s) placing addresses? check `troika cluster status`; "+
				"drain again, or with --force", strings.Join(desc, ", "), secs(now.Sub(start)), leaderOrNone(n))
			if !r.opts.Force {
				return err
			}
			r.say("%v; --force: going on", err)
			return nil
		}
		if now.Sub(lastNote) >= drainNoteEvery {
			r.say("addresses: waiting for %s (%s)", strings.Join(pending, ", "), secs(now.Sub(start)))
			lastNote = now
		}
		if err := sleepOrDone(ctx, drainPoll); err != nil {
			return err
		}
	}
	r.say("addresses: none held here (%d moved in %s)", len(mine), secs(time.Since(start)))
	return nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func orNobody(s string) string {
	if s == "" {
		return "nobody"
	}
	return s
}

func leaderOrNone(n *Node) string {
	if id, _ := n.cluster.Leader(); id != "" {
		return id
	}
	return "none known"
}

// probeAddress sends one SIP OPTIONS to ip's first UDP port and waits
// briefly for any answer: once this node no longer holds ip, an answer
// comes from the node that does. It returns the port probed (0: no UDP
// port) and whether an answer came.
func (n *Node) probeAddress(ip string) (int, bool) {
	if len(n.cfg.SIP.UDPPorts) == 0 {
		return 0, false
	}
	port := n.cfg.SIP.UDPPorts[0]
	target := net.JoinHostPort(ip, strconv.Itoa(port))
	c, err := net.DialTimeout("udp", target, time.Second)
	if err != nil {
		return port, false
	}
	defer c.Close()
	b := make([]byte, 8)
	rand.Read(b)
	id := hex.EncodeToString(b)
	local := c.LocalAddr().String()
	msg := "OPTIONS sip:" + target + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-drain-" + id + ";rport\r\n" +
		"From: <sip:drain-probe@" + local + ">;tag=" + id + "\r\n" +
		"To: <sip:" + target + ">\r\n" +
		"Call-ID: drain-" + id + "@" + n.cfg.NodeID + "\r\n" +
		"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		return port, false
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 4096)
	k, err := c.Read(buf)
	return port, err == nil && strings.HasPrefix(string(buf[:k]), "SIP/2.0 ") && strings.Contains(string(buf[:k]), id)
}

// drainLeadership hands raft leadership to another voter if this node
// leads.
func (n *Node) drainLeadership(ctx context.Context, r *drainRun, deadline time.Time) error {
	if !n.cluster.IsLeader() {
		r.say("leadership: %s leads; nothing to hand over", leaderOrNone(n))
		return nil
	}
	if !n.otherVoters() {
		r.say("leadership: this node is the only voter: nothing to hand over; the cluster has no leader once it is gone")
		return nil
	}
	r.say("leadership: this node leads; handing it over")
	start := time.Now()
	lctx, cancel := context.WithDeadline(ctx, earliest(deadline, start.Add(leadershipWaitMax)))
	err := n.cluster.TransferLeadership(lctx)
	cancel()
	if ctx.Err() != nil {
		return errStopping
	}
	if err != nil {
		err = fmt.Errorf("leadership: handing it over failed after %s (%v): drain again, or with --force "+
			"(the others then elect a leader once this node is gone: about a second without writes)", secs(time.Since(start)), err)
		if !r.opts.Force {
			return err
		}
		r.say("%v; --force: going on", err)
		return nil
	}
	r.say("leadership: %s leads now (%.2f s)", leaderOrNone(n), time.Since(start).Seconds())
	return nil
}

// otherVoters reports whether the raft configuration has voters besides
// this node.
func (n *Node) otherVoters() bool {
	return slices.ContainsFunc(n.cluster.Voters(), func(v string) bool { return v != n.cfg.NodeID })
}

// callsHere counts this node's calls in the replicated state: ringing
// (not answered yet; running here, or set up since this process started:
// a record a previous process left is the leader's to reap) and answered.
func (n *Node) callsHere() (ringing, answered int) {
	for _, c := range n.state.Calls() {
		if c.Node != n.cfg.NodeID {
			continue
		}
		if c.ConnectAt == 0 {
			if n.sip.Runs(c.ID) || c.SetupAt >= n.startedAt.UnixMilli() {
				ringing++
			}
		} else {
			answered++
		}
	}
	return ringing, answered
}

// drainCalls waits until no call is ringing on this node.
func (n *Node) drainCalls(ctx context.Context, r *drainRun, deadline time.Time) error {
	start := time.Now()
	var lastNote time.Time
	for {
		ringing, answered := n.callsHere()
		now := time.Now()
		if ringing == 0 {
			r.say("calls: none ringing here (%s); %d answered call(s) of this node stay in the cluster state: "+
				"the nodes now processing their callers' Call-IDs adopt them once this node has left", secs(now.Sub(start)), answered)
			return nil
		}
		if now.After(deadline) {
			err := fmt.Errorf("calls: %d still ringing here after the %s timeout: drain again with a longer --timeout, "+
				"or with --force to cut them", ringing, r.opts.Timeout)
			if !r.opts.Force {
				return err
			}
			r.say("%v; --force: going on", err)
			return nil
		}
		if lastNote.IsZero() || now.Sub(lastNote) >= callsNoteEvery {
			r.say("calls: %d ringing, %d answered here; waiting up to %s for the ringing ones to be answered or to fail",
				ringing, answered, secs(deadline.Sub(now)))
			lastNote = now
		}
		if err := sleepOrDone(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}
