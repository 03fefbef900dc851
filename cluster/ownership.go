package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troika-sip/troika/fsm"
)

// Ownership of the virtual and alias addresses (DESIGN.md §4).
//
// Every node runs an Owner. Its holder loop (Run) takes and gives up the
// addresses the replicated ownership map assigns to the node, under the
// self-fencing rules of lease.go: take = add the address to the interface
// (with a kernel lifetime), open its SIP sockets, announce it (gratuitous
// ARP or unsolicited NA, several times); give up = close the sockets,
// remove the address. While the node leads, Lead also runs the placement
// loop: it turns gossip health and raft reachability into changes of the
// map (placement.go), proposed as AssignAddresses. Gossip never changes
// the map by itself: only the leader writes it, through raft.

// AddrOps adds, removes, lists and announces the addresses of one
// interface (netlink on Linux; tests use a fake).
type AddrOps interface {
	// Add adds p, or renews its valid lifetime if it is there; a zero
	// lifetime means forever.
	Add(p netip.Prefix, lifetime time.Duration) error
	// Del removes p; an address already gone is not an error.
	Del(p netip.Prefix) error
	// List returns the interface's addresses.
	List() ([]netip.Prefix, error)
	// Announce sends one gratuitous ARP (IPv4) or unsolicited neighbour
	// advertisement (IPv6) for ip.
	Announce(ip netip.Addr) error
}

// Sockets opens and closes the SIP sockets of the addresses a node holds
// (sipstack.Server implements it).
type Sockets interface {
	// ServeAddress opens the sockets of ip: the main ports, plus extra
	// (an alias's own ports; nil for a virtual IP).
	ServeAddress(ip string, extra *fsm.AliasPorts) error
	// CloseAddress closes them.
	CloseAddress(ip string)
}

// OwnerConfig configures an Owner. Zero values take the defaults in
// parentheses.
type OwnerConfig struct {
	// VIPs are the main virtual addresses with their prefix length, e.g.
	// 10.0.0.100/24. Aliases come from the replicated state (a /32 or
	// /128 each).
	VIPs []netip.Prefix
	// Timing of the self-fencing rules; its LeaderLeaseTimeout must be
	// raft's.
	Timing LeaseTiming
	// Placement is PlacementSpread (default) or PlacementSingle.
	Placement string
	// Prefer maps an address to the node it goes to when placed.
	Prefer map[string]string
	// GARPCount announcements are sent when an address is taken,
	// GARPInterval apart (3, 500ms).
	GARPCount    int
	GARPInterval time.Duration
	// Settle is how long a new leader waits for every voter to show up
	// healthy before it places addresses nobody holds (5s).
	Settle time.Duration
	// Unreachable is how long the leader's heartbeats to a follower must
	// fail before its addresses move (the timing's LeaderLeaseTimeout).
	Unreachable time.Duration
	// Tick is the holder loop's period (25ms): part of Timing.Margin.
	Tick time.Duration

	Addrs   AddrOps
	Sockets Sockets
	Logger  *slog.Logger
}

// Owner takes and gives up this node's addresses, and places addresses
// while the node leads.
type Owner struct {
	cfg    OwnerConfig
	node   *Node
	state  *fsm.State
	gossip *Gossip
	log    *slog.Logger
	self   string
	vips   map[string]netip.Prefix

	started  atomic.Bool
	draining atomic.Bool // this node is draining (SetDraining): its addresses move
	wake     chan struct{}

	// holder loop state (its goroutine only)
	held      map[string]*holding
	seen      map[string]seen
	wasFresh  bool
	lastStep  time.Time
	lastClean time.Time
	backoff   map[string]time.Time // ip -> no new attempt before

	mu       sync.Mutex
	synced   bool   // an AddressBarrier applied since the last loss of contact
	syncing  bool   // one is in flight
	lossGen  uint64 // bumped at every loss of contact
	status   map[string]string
	heldView map[string]time.Time // ip -> held since, for Status
	lastLoss time.Time
}

type holding struct {
	prefix    netip.Prefix
	epoch     uint64
	since     time.Time
	ports     string // the alias ports the sockets were opened with
	refreshed time.Time
	stopGARP  context.CancelFunc
}

type seen struct {
	epoch uint64
	at    time.Time
}

const (
	defaultGARPCount    = 3
	defaultGARPInterval = 500 * time.Millisecond
	defaultSettle       = 5 * time.Second
	defaultOwnerTick    = 25 * time.Millisecond
	refreshEvery        = 100 * time.Millisecond
	cleanEvery          = time.Second
	acquireBackoff      = time.Second
	barrierTimeout      = 2 * time.Second
	placeTimeout        = 2 * time.Second
	placeEvery          = 50 * time.Millisecond
	// staleDecision: a decision to take or renew an address older than
	// this (the loop was held up between deciding and acting) is not
	// acted on.
	staleDecision = 100 * time.Millisecond
)

// NewOwner prepares the owner of node's addresses; Run starts it.
func NewOwner(cfg OwnerConfig, node *Node, state *fsm.State, gossip *Gossip) (*Owner, error) {
	if node == nil || state == nil || gossip == nil || cfg.Addrs == nil || cfg.Sockets == nil {
		return nil, errors.New("ownership: node, state, gossip, address operations and sockets are required")
	}
	if err := cfg.Timing.Validate(); err != nil {
		return nil, fmt.Errorf("ownership: %w", err)
	}
	switch cfg.Placement {
	case "":
		cfg.Placement = PlacementSpread
	case PlacementSpread, PlacementSingle:
	default:
		return nil, fmt.Errorf("ownership: placement %q: must be %q or %q", cfg.Placement, PlacementSpread, PlacementSingle)
	}
	setDefault(&cfg.GARPCount, defaultGARPCount)
	setDefault(&cfg.GARPInterval, defaultGARPInterval)
	setDefault(&cfg.Settle, defaultSettle)
	setDefault(&cfg.Unreachable, cfg.Timing.LeaderLeaseTimeout)
	setDefault(&cfg.Tick, defaultOwnerTick)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	o := &Owner{
		cfg:      cfg,
		node:     node,
		state:    state,
		gossip:   gossip,
		log:      cfg.Logger.With("component", "ownership"),
		self:     node.ID(),
		vips:     map[string]netip.Prefix{},
		wake:     make(chan struct{}, 1),
		held:     map[string]*holding{},
		seen:     map[string]seen{},
		backoff:  map[string]time.Time{},
		status:   map[string]string{},
		heldView: map[string]time.Time{},
	}
	for _, p := range cfg.VIPs {
		ip := p.Addr().Unmap()
		if _, dup := o.vips[ip.String()]; dup {
			return nil, fmt.Errorf("ownership: virtual IP %s listed twice", ip)
		}
		o.vips[ip.String()] = netip.PrefixFrom(ip, p.Bits())
	}
	return o, nil
}

func (o *Owner) kick() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Run is the holder loop: it takes and gives up this node's addresses
// until ctx ends, then gives up every address it holds.
func (o *Owner) Run(ctx context.Context) {
	o.started.Store(true)
	defer o.started.Store(false)
	defer o.releaseAll("stopping")
	t := o.cfg.Timing
	o.log.Info("ownership: managing addresses", "vips", o.cfg.VIPs, "lease", t.Lease, "handover_wait", t.HandoverWait(),
		"kernel_lifetime", t.KernelLifetime(), "refresh_window", t.RefreshWindow(), "placement", o.cfg.Placement)
	o.cleanStale(time.Now())
	tick := time.NewTicker(o.cfg.Tick)
	defer tick.Stop()
	for {
		assignCh, aliasCh := o.state.AssignmentsChanged(), o.state.AliasesChanged()
		o.step(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-assignCh:
		case <-aliasCh:
		case <-o.wake:
		}
	}
}

// addressInfo returns what this node knows of a managed address: its
// prefix, the extra ports of an alias, and its kind.
func (o *Owner) addressInfo(ip string, aliases map[string]fsm.Alias) (netip.Prefix, *fsm.AliasPorts, string, bool) {
	if p, ok := o.vips[ip]; ok {
		return p, nil, "vip", true
	}
	if a, ok := aliases[ip]; ok {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			return netip.Prefix{}, nil, "", false
		}
		ports := a.Ports
		return netip.PrefixFrom(addr, addr.BitLen()), &ports, "alias", true
	}
	return netip.Prefix{}, nil, "", false
}

func (o *Owner) aliasMap() map[string]fsm.Alias {
	out := map[string]fsm.Alias{}
	for _, a := range o.state.Aliases() {
		out[a.IP] = a
	}
	return out
}

// step is one pass of the holder loop.
func (o *Owner) step(ctx context.Context, now time.Time) {
	t := o.cfg.Timing
	leader, contact := o.node.LeaderContact()
	fresh := t.ContactFresh(leader, contact, now)
	// A loop that did not run for a while (the process was frozen, or
	// starved of CPU) cannot know what happened meanwhile: its addresses
	// may have moved (their kernel lifetime may have ended), and a
	// heartbeat may have arrived just before this pass. It starts over as
	// after a loss of contact: everything given up until an address
	// barrier shows its replica is current.
	idle := now.Sub(o.lastStep)
	gap := !o.lastStep.IsZero() && idle > t.Lease/2
	o.lastStep = now
	o.mu.Lock()
	if gap {
		o.lossGen++
		o.synced = false
		o.lastLoss = now
		if len(o.held) > 0 {
			o.log.Warn("ownership: the holder loop did not run for a while (process frozen or starved): giving up every address until the replica is known current",
				"gap", idle.Round(time.Millisecond))
		}
	} else if !fresh && o.wasFresh {
		o.lossGen++
		o.synced = false
		o.lastLoss = now
		o.log.Warn("ownership: lost contact with the leader: giving up every address", "last_contact", ago(contact, now), "lease", t.Lease)
	}
	o.wasFresh = fresh
	if fresh && !o.synced && !o.syncing {
		o.syncing = true
		go o.barrier(ctx, o.lossGen)
	}
	synced := o.synced
	o.mu.Unlock()
	if gap {
		o.releaseAll("the holder loop did not run for a while")
	}

	aliases := o.aliasMap()
	// A draining node holds nothing, whatever its replica says: it gives
	// its addresses up before the leader moves them (SetDraining), so a
	// new holder never overlaps with it, however late it applies the move.
	draining := o.draining.Load()
	want := map[string]fsm.Assignment{}
	for _, a := range o.state.Assignments() {
		if a.Node == o.self && !draining {
			want[a.IP] = a
		}
	}
	for ip, a := range want {
		if s, ok := o.seen[ip]; !ok || s.epoch != a.Epoch {
			o.seen[ip] = seen{epoch: a.Epoch, at: now}
		}
	}
	for ip := range o.seen {
		if _, ok := want[ip]; !ok {
			delete(o.seen, ip)
		}
	}

	ips := make([]string, 0, len(want)+len(o.held))
	for ip := range want {
		ips = append(ips, ip)
	}
	for ip := range o.held {
		if _, ok := want[ip]; !ok {
			ips = append(ips, ip)
		}
	}
	slices.SortFunc(ips, fsm.CompareAddr)
	status := map[string]string{}
	for _, ip := range ips {
		a, assigned := want[ip]
		prefix, extra, _, known := o.addressInfo(ip, aliases)
		h := o.held[ip]
		if assigned && !known {
			status[ip] = "assigned here, but neither a configured virtual IP nor an alias of this node: not held"
			if h != nil {
				o.release(ip, "no longer a virtual IP or alias here")
			}
			continue
		}
		if h != nil && assigned && h.epoch != a.Epoch {
			// Reassigned in between (possibly to another node and back):
			// start over, with the handover wait.
			o.release(ip, fmt.Sprintf("reassigned (epoch %d -> %d)", h.epoch, a.Epoch))
			h = nil
		}
		d := t.Decide(HoldInput{
			Assigned: assigned, SeenAt: o.seen[ip].at, Leader: leader, Contact: contact,
			Synced: synced, Held: h != nil, Now: now,
		})
		if draining {
			d.Reason = "this node is draining: it holds no address"
		}
		status[ip] = d.Reason
		switch {
		case !d.Hold && h != nil:
			o.release(ip, d.Reason)
		case d.Hold && h == nil:
			if time.Since(now) > staleDecision {
				continue // this pass was held up: decide again
			}
			if until, ok := o.backoff[ip]; ok && now.Before(until) {
				status[ip] = "retrying after a failure to take it"
				continue
			}
			if err := o.acquire(ctx, ip, prefix, extra, a.Epoch, now); err != nil {
				o.backoff[ip] = now.Add(acquireBackoff)
				status[ip] = "failed to take it: " + err.Error()
				o.log.Error("ownership: could not take an address; retrying", "ip", ip, "error", err, "retry_in", acquireBackoff)
			} else {
				delete(o.backoff, ip)
			}
		case d.Hold && h != nil:
			if d.Refresh && now.Sub(h.refreshed) >= refreshEvery && time.Since(now) < staleDecision {
				if err := o.cfg.Addrs.Add(h.prefix, t.KernelLifetime()); err != nil {
					o.log.Warn("ownership: renewing an address's lifetime failed", "ip", ip, "error", err)
				} else {
					h.refreshed = now
				}
			}
			if fp := portsKey(extra); fp != h.ports {
				if err := o.cfg.Sockets.ServeAddress(ip, extra); err != nil {
					o.log.Error("ownership: reopening an alias's sockets after its ports changed failed", "ip", ip, "error", err)
				} else {
					h.ports = fp
					o.log.Info("ownership: alias ports changed; sockets updated", "ip", ip)
				}
			}
		}
	}
	if now.Sub(o.lastClean) >= cleanEvery {
		o.cleanStale(now)
	}
	o.mu.Lock()
	o.status = status
	o.heldView = map[string]time.Time{}
	for ip, h := range o.held {
		o.heldView[ip] = h.since
	}
	o.mu.Unlock()
}

// barrier proposes an AddressBarrier and, once this node's replica has
// applied it, marks the node synced (unless contact was lost meanwhile).
func (o *Owner) barrier(ctx context.Context, gen uint64) {
	bctx, cancel := context.WithTimeout(ctx, barrierTimeout)
	defer cancel()
	start := time.Now()
	res, err := o.node.Propose(bctx, &fsm.AddressBarrier{Node: o.self, Now: start.UnixMilli()})
	if err == nil && res.Err != nil {
		err = res.Err
	}
	if err != nil && ctx.Err() == nil {
		o.log.Warn("ownership: address barrier failed; retrying", "error", err)
		sleepCtx(ctx, 100*time.Millisecond)
	}
	o.mu.Lock()
	o.syncing = false
	ok := err == nil && gen == o.lossGen
	if ok {
		o.synced = true
	}
	o.mu.Unlock()
	if ok {
		o.log.Info("ownership: replica caught up (address barrier applied)", "took", time.Since(start).Round(time.Millisecond))
	}
	o.kick()
}

// acquire takes an address: add it to the interface, open its sockets,
// announce it.
func (o *Owner) acquire(ctx context.Context, ip string, prefix netip.Prefix, extra *fsm.AliasPorts, epoch uint64, now time.Time) error {
	t := o.cfg.Timing
	if err := o.cfg.Addrs.Add(prefix, t.KernelLifetime()); err != nil {
		return err
	}
	if err := o.cfg.Sockets.ServeAddress(ip, extra); err != nil {
		o.cfg.Sockets.CloseAddress(ip)
		if derr := o.cfg.Addrs.Del(prefix); derr != nil {
			o.log.Error("ownership: removing an address after its sockets failed to open failed too", "ip", ip, "error", derr)
		}
		return fmt.Errorf("open SIP sockets: %w", err)
	}
	gctx, stop := context.WithCancel(ctx)
	h := &holding{prefix: prefix, epoch: epoch, since: now, ports: portsKey(extra), refreshed: now, stopGARP: stop}
	o.held[ip] = h
	addr := prefix.Addr()
	if err := o.cfg.Addrs.Announce(addr); err != nil {
		o.log.Warn("ownership: announcing an address failed", "ip", ip, "error", err)
	}
	if n := o.cfg.GARPCount - 1; n > 0 {
		go func() {
			for range n {
				if sleepCtx(gctx, o.cfg.GARPInterval) != nil {
					return
				}
				if err := o.cfg.Addrs.Announce(addr); err != nil {
					o.log.Warn("ownership: announcing an address failed", "ip", ip, "error", err)
				}
			}
		}()
	}
	waited := time.Duration(0)
	if s, ok := o.seen[ip]; ok {
		waited = now.Sub(s.at)
	}
	o.log.Info("ownership: took address", "ip", ip, "prefix", prefix.String(), "epoch", epoch,
		"since_assigned", waited.Round(time.Millisecond), "announcements", o.cfg.GARPCount)
	return nil
}

// release gives up an address: close its sockets, remove it.
func (o *Owner) release(ip, why string) {
	h := o.held[ip]
	if h == nil {
		return
	}
	delete(o.held, ip)
	h.stopGARP()
	start := time.Now()
	o.cfg.Sockets.CloseAddress(ip)
	err := o.cfg.Addrs.Del(h.prefix)
	if err != nil {
		o.log.Error("ownership: removing an address failed (its kernel lifetime ends it)", "ip", ip, "error", err)
	}
	o.log.Info("ownership: gave up address", "ip", ip, "why", why, "held_for", time.Since(h.since).Round(time.Millisecond),
		"took", time.Since(start).Round(time.Millisecond))
}

func (o *Owner) releaseAll(why string) {
	for ip := range o.held {
		o.release(ip, why)
	}
	o.mu.Lock()
	o.heldView = map[string]time.Time{}
	o.mu.Unlock()
}

// cleanStale removes managed addresses this node does not hold from the
// interface (left by a process that was killed, before their kernel
// lifetime ends), and gives up held addresses that vanished (removed by
// hand, or by the kernel): the next pass takes them again if it may.
func (o *Owner) cleanStale(now time.Time) {
	o.lastClean = now
	present, err := o.cfg.Addrs.List()
	if err != nil {
		o.log.Warn("ownership: listing the interface's addresses failed", "error", err)
		return
	}
	managed := map[string]bool{}
	for ip := range o.vips {
		managed[ip] = true
	}
	for _, a := range o.state.Aliases() {
		managed[a.IP] = true
	}
	for _, a := range o.state.Assignments() {
		managed[a.IP] = true
	}
	on := map[string]bool{}
	for _, p := range present {
		ip := p.Addr().String()
		on[ip] = true
		if managed[ip] && o.held[ip] == nil {
			if err := o.cfg.Addrs.Del(p); err != nil {
				o.log.Warn("ownership: removing a stale managed address failed", "address", p.String(), "error", err)
			} else {
				o.log.Warn("ownership: removed a managed address this node does not hold (left by an earlier process, or added by hand)", "address", p.String())
			}
		}
	}
	for ip := range o.held {
		if !on[ip] {
			o.release(ip, "the address vanished from the interface (removed by hand, or its kernel lifetime ran out)")
		}
	}
}

func portsKey(p *fsm.AliasPorts) string {
	if p == nil {
		return ""
	}
	return fmt.Sprint(p.UDP, p.TCP, p.TLS)
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Millisecond).String() + " ago"
}

// AddressStatus is one managed address as this node sees it.
type AddressStatus struct {
	IP         string     `json:"ip"`
	Kind       string     `json:"kind"`        // vip, alias (or "" for an address this node does not know)
	Node       string     `json:"node"`        // the node the ownership map assigns it to ("" nobody)
	Epoch      uint64     `json:"epoch"`       // the entry's epoch
	AssignedAt *time.Time `json:"assigned_at"` // when the leader assigned it
	HeldByMe   bool       `json:"held_by_me"`  // this node holds it now
	HeldSince  *time.Time `json:"held_since,omitempty"`
	State      string     `json:"state,omitempty"` // this node's reason to hold it or not
}

// AddressStatuses lists the managed addresses: the virtual IPs, the
// aliases and any other entry of the ownership map. o may be nil (address
// management off): then only the map is listed.
func AddressStatuses(o *Owner, state *fsm.State) []AddressStatus {
	all := map[string]*AddressStatus{}
	get := func(ip string) *AddressStatus {
		s := all[ip]
		if s == nil {
			s = &AddressStatus{IP: ip}
			all[ip] = s
		}
		return s
	}
	for _, a := range state.Aliases() {
		get(a.IP).Kind = "alias"
	}
	if o != nil {
		for ip := range o.vips {
			get(ip).Kind = "vip"
		}
	}
	for _, a := range state.Assignments() {
		s := get(a.IP)
		s.Node, s.Epoch = a.Node, a.Epoch
		at := time.UnixMilli(a.AssignedAt).UTC()
		s.AssignedAt = &at
	}
	if o != nil {
		o.mu.Lock()
		for ip, since := range o.heldView {
			s := get(ip)
			s.HeldByMe = true
			t := since.UTC()
			s.HeldSince = &t
		}
		for ip, why := range o.status {
			get(ip).State = why
		}
		o.mu.Unlock()
	}
	out := make([]AddressStatus, 0, len(all))
	for _, s := range all {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b AddressStatus) int { return fsm.CompareAddr(a.IP, b.IP) })
	return out
}

// Lead runs the placement loop while this node leads (ctx ends with the
// leadership): it keeps the ownership map in step with the managed
// addresses and the health of the voters.
func (o *Owner) Lead(ctx context.Context) {
	start := time.Now()
	o.node.startReachObserver()
	o.log.Info("ownership: placing addresses (this node leads)", "policy", o.cfg.Placement, "settle", o.cfg.Settle)
	tick := time.NewTicker(placeEvery)
	defer tick.Stop()
	for {
		gossipCh, assignCh, aliasCh, reachCh := o.gossip.Changed(), o.state.AssignmentsChanged(), o.state.AliasesChanged(), o.node.ReachChanged()
		o.place(ctx, start)
		select {
		case <-ctx.Done():
			return
		case <-gossipCh:
		case <-assignCh:
		case <-aliasCh:
		case <-reachCh:
		case <-tick.C: // heartbeat failures growing past Unreachable; settling
		}
	}
}

// SetDraining marks this node as draining (a planned stop) or back in
// service. Draining, the holder loop gives up every address and takes
// none, and while the node leads its own addresses move like those of a
// member whose gossip health says draining. SetDraining(true) returns once
// the holder loop has given its addresses up (or after timeout): call it
// before telling the others (gossip) that the node drains.
func (o *Owner) SetDraining(on bool, timeout time.Duration) {
	o.draining.Store(on)
	o.kick()
	if !on || !o.started.Load() {
		return
	}
	deadline := time.Now().Add(timeout)
	for len(o.Held()) > 0 && time.Now().Before(deadline) {
		o.kick()
		time.Sleep(o.cfg.Tick / 2)
	}
}

// Held returns the addresses this node holds now.
func (o *Owner) Held() []string {
	o.mu.Lock()
	out := make([]string, 0, len(o.heldView))
	for ip := range o.heldView {
		out = append(out, ip)
	}
	o.mu.Unlock()
	slices.SortFunc(out, fsm.CompareAddr)
	return out
}

// Health returns the leader's view of every voter, for placement, and
// whether every voter is known (healthy, draining or failed).
func (o *Owner) health() (map[string]NodeHealth, bool) {
	members := map[string]Member{}
	for _, m := range o.gossip.Members() {
		members[m.ID] = m
	}
	unreach := o.node.Unreachable(o.cfg.Unreachable)
	nodes := map[string]NodeHealth{}
	known := true
	for _, v := range o.node.Voters() {
		m, seen := members[v]
		switch {
		case v == o.self:
			switch {
			case o.draining.Load():
				nodes[v] = Draining
			case o.started.Load():
				nodes[v] = Healthy
			default:
				nodes[v] = HealthUnknown
			}
		case unreach[v] > 0:
			nodes[v] = Failed
		case !seen:
			nodes[v] = HealthUnknown
		case m.State == MemberDead || m.State == MemberLeft:
			nodes[v] = Failed
		case m.Meta.Health == HealthDraining || m.Meta.Health == HealthLeaving:
			// A stopping node has given its addresses up: they move now,
			// not when it has left or comes back.
			nodes[v] = Draining
		case m.Meta.Health == HealthOK && m.Meta.Addrs:
			nodes[v] = Healthy
		default:
			nodes[v] = HealthUnknown
		}
		if nodes[v] == HealthUnknown {
			known = false
		}
	}
	return nodes, known
}

// managedAddresses lists the addresses to place: the virtual IPs in
// configuration order, then the aliases.
func (o *Owner) managedAddresses() []string {
	var out []string
	for _, p := range o.cfg.VIPs {
		out = append(out, p.Addr().Unmap().String())
	}
	for _, a := range o.state.Aliases() {
		if _, vip := o.vips[a.IP]; !vip {
			out = append(out, a.IP)
		}
	}
	return out
}

func (o *Owner) place(ctx context.Context, start time.Time) {
	nodes, known := o.health()
	current := map[string]fsm.Assignment{}
	for _, a := range o.state.Assignments() {
		current[a.IP] = a
	}
	in := PlacementInput{
		Addresses: o.managedAddresses(),
		Current:   current,
		Nodes:     nodes,
		Leader:    o.self,
		Prefer:    o.cfg.Prefer,
		Policy:    o.cfg.Placement,
		Settled:   known || time.Since(start) >= o.cfg.Settle,
	}
	changes := Place(in)
	if len(changes) == 0 {
		return
	}
	cmd := &fsm.AssignAddresses{Now: time.Now().UnixMilli()}
	for _, c := range changes {
		cmd.Changes = append(cmd.Changes, c.AddressChange)
	}
	pctx, cancel := context.WithTimeout(ctx, placeTimeout)
	defer cancel()
	res, err := o.node.Propose(pctx, cmd)
	if err == nil && res.Err != nil {
		err = res.Err
	}
	view := map[string]string{}
	for n, h := range nodes {
		view[n] = h.String()
	}
	if err != nil {
		if ctx.Err() == nil {
			o.log.Warn("ownership: proposing address assignments failed; retrying", "error", err)
			sleepCtx(ctx, 100*time.Millisecond)
		}
		return
	}
	for _, c := range changes {
		o.log.Info("ownership: assignment", "change", c.String(), "nodes", view)
	}
}
