package cluster

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/troika-sip/troika/fsm"
)

// The holder loop (ownership.go): on every node, it takes and gives up
// the addresses the ownership map assigns to the node, under the
// self-fencing rules of lease.go.

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

// holderPass is what one pass of the holder loop goes by.
type holderPass struct {
	now      time.Time
	leader   bool      // this node leads
	contact  time.Time // its last contact with a leader
	synced   bool      // its replica is known current (address barrier)
	draining bool
	aliases  map[string]fsm.Alias
}

// step is one pass of the holder loop: it follows the contact with a
// leader, then takes, keeps or gives up each address assigned here or
// held, and publishes why for AddressStatuses.
func (o *Owner) step(ctx context.Context, now time.Time) {
	pass := holderPass{now: now}
	pass.leader, pass.contact, pass.synced = o.followContact(ctx, now)
	pass.aliases = o.aliasMap()
	// A draining node holds nothing, whatever its replica says: it gives
	// its addresses up before the leader moves them (SetDraining), so a
	// new holder never overlaps with it, however late it applies the move.
	pass.draining = o.draining.Load()
	want := o.assignedHere(now, pass.draining)
	status := map[string]string{}
	for _, ip := range o.addressesInPlay(want) {
		a, assigned := want[ip]
		status[ip] = o.stepAddress(ctx, &pass, ip, a, assigned)
	}
	if now.Sub(o.lastClean) >= cleanEvery {
		o.cleanStale(now)
	}
	o.countUnheld(now, want)
	o.publish(status)
}

// countUnheld follows the addresses assigned here but not held after this
// pass: troika_address_unheld_seconds_total counts the time from one pass
// to the next for those that were so after the previous pass, and
// unheldSince (AddressStatuses, readiness) says since when.
func (o *Owner) countUnheld(now time.Time, want map[string]fsm.Assignment) {
	if dt := now.Sub(o.unheldAt); !o.unheldAt.IsZero() && dt > 0 {
		for ip := range o.unheldSince {
			o.node.metrics.unheld.WithLabelValues(ip).Add(dt.Seconds())
		}
	}
	o.unheldAt = now
	next := map[string]time.Time{}
	for ip := range want {
		if o.held[ip] != nil {
			continue
		}
		since, ok := o.unheldSince[ip]
		if !ok {
			since = now
		}
		next[ip] = since
	}
	o.unheldSince = next
}

// followContact follows this node's contact with a leader. A loss of
// contact makes the replica suspect until an address barrier has been
// applied (started here once contact is back). So does a pass that comes
// late: a loop that did not run for a while (the process was frozen, or
// starved of CPU) cannot know what happened meanwhile: its addresses may
// have moved (their kernel lifetime may have ended), and a heartbeat may
// have arrived just before this pass; it also gives every address up at
// once. It returns the contact and whether the replica is known current.
func (o *Owner) followContact(ctx context.Context, now time.Time) (leader bool, contact time.Time, synced bool) {
	t := o.cfg.Timing
	leader, contact = o.node.LeaderContact()
	fresh := t.ContactFresh(leader, contact, now)
	idle := now.Sub(o.lastStep)
	late := !o.lastStep.IsZero() && idle > t.Lease/2
	o.lastStep = now
	o.mu.Lock()
	switch {
	case late:
		o.suspectReplica()
		if len(o.held) > 0 {
			o.log.Warn("ownership: the holder loop did not run for a while (process frozen or starved): giving up every address until the replica is known current",
				"gap", idle.Round(time.Millisecond))
		}
	case !fresh && o.wasFresh:
		o.suspectReplica()
		o.log.Warn("ownership: lost contact with the leader: giving up every address", "last_contact", ago(contact, now), "lease", t.Lease)
	}
	o.wasFresh = fresh
	if fresh && !o.synced && !o.syncing {
		o.syncing = true
		go o.barrier(ctx, o.lossGen)
	}
	synced = o.synced
	o.mu.Unlock()
	if late {
		o.releaseAll("the holder loop did not run for a while")
	}
	return leader, contact, synced
}

// suspectReplica records a loss of contact: the replica is no longer
// known current, and an address barrier in flight no longer proves it
// is. o.mu is held.
func (o *Owner) suspectReplica() {
	o.lossGen++
	o.synced = false
}

// assignedHere returns the ownership map's entries for this node (none
// while it drains) and notes when each current assignment was first seen.
func (o *Owner) assignedHere(now time.Time, draining bool) map[string]fsm.Assignment {
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
	return want
}

// addressesInPlay lists, in address order, the addresses assigned here
// and those held.
func (o *Owner) addressesInPlay(want map[string]fsm.Assignment) []string {
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
	return ips
}

// stepAddress takes, keeps or gives up ip as the self-fencing rules
// decide (a is its assignment when assigned), and returns why.
func (o *Owner) stepAddress(ctx context.Context, pass *holderPass, ip string, a fsm.Assignment, assigned bool) string {
	prefix, extra, _, known := o.addressInfo(ip, pass.aliases)
	h := o.held[ip]
	if assigned && !known {
		if h != nil {
			o.release(ip, "no longer a virtual IP or alias here")
		}
		return "assigned here, but neither a configured virtual IP nor an alias of this node: not held"
	}
	if h != nil && assigned && h.epoch != a.Epoch {
		// Reassigned in between (possibly to another node and back):
		// start over, with the handover wait.
		o.release(ip, fmt.Sprintf("reassigned (epoch %d -> %d)", h.epoch, a.Epoch))
		h = nil
	}
	d := o.cfg.Timing.Decide(HoldInput{
		Assigned: assigned, SeenAt: o.seen[ip].at, Leader: pass.leader, Contact: pass.contact,
		Synced: pass.synced, Held: h != nil, Now: pass.now,
	})
	d = ignoreLease(d, assigned, h != nil) // a deliberately broken build only: chaosbroken_holder.go
	if pass.draining {
		d.Reason = "this node is draining: it holds no address"
	}
	switch {
	case !d.Hold && h != nil:
		o.release(ip, d.Reason)
	case d.Hold && h == nil:
		if why := o.takeAddress(ctx, pass.now, ip, prefix, extra, a.Epoch); why != "" {
			return why
		}
	case d.Hold && h != nil:
		if d.Refresh {
			o.renewLifetime(pass.now, ip, h)
		}
		o.followAliasPorts(ip, h, extra)
	}
	return d.Reason
}

// takeAddress takes ip, unless the decision to is stale (this pass was
// held up: the next one decides again) or a failure to take it is still
// being waited out (acquireBackoff). It returns why it did not take it
// ("" when it did or decides again).
func (o *Owner) takeAddress(ctx context.Context, now time.Time, ip string, prefix netip.Prefix, extra *fsm.AliasPorts, epoch uint64) string {
	if time.Since(now) > staleDecision {
		return ""
	}
	if until, ok := o.backoff[ip]; ok && now.Before(until) {
		return "retrying after a failure to take it"
	}
	if err := o.acquire(ctx, ip, prefix, extra, epoch, now); err != nil {
		o.backoff[ip] = now.Add(acquireBackoff)
		o.log.Error("ownership: could not take an address; retrying", "ip", ip, "error", err, "retry_in", acquireBackoff)
		return "failed to take it: " + err.Error()
	}
	delete(o.backoff, ip)
	return ""
}

// renewLifetime renews the kernel lifetime of a held address, at most
// every refreshEvery, unless this pass's decision is stale.
func (o *Owner) renewLifetime(now time.Time, ip string, h *holding) {
	if now.Sub(h.refreshed) < refreshEvery || time.Since(now) >= staleDecision {
		return
	}
	if err := o.cfg.Addrs.Add(h.prefix, o.cfg.Timing.KernelLifetime()); err != nil {
		o.log.Warn("ownership: renewing an address's lifetime failed", "ip", ip, "error", err)
		return
	}
	h.refreshed = now
}

// followAliasPorts reopens a held alias's sockets when its ports changed.
func (o *Owner) followAliasPorts(ip string, h *holding, extra *fsm.AliasPorts) {
	fp := portsKey(extra)
	if fp == h.ports {
		return
	}
	if err := o.cfg.Sockets.ServeAddress(ip, extra); err != nil {
		o.log.Error("ownership: reopening an alias's sockets after its ports changed failed", "ip", ip, "error", err)
		return
	}
	h.ports = fp
	o.log.Info("ownership: alias ports changed; sockets updated", "ip", ip)
}

// publish makes this pass's reasons and held addresses what Status and
// Held report.
func (o *Owner) publish(status map[string]string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.status = status
	o.heldView = map[string]time.Time{}
	for ip, h := range o.held {
		o.heldView[ip] = h.since
	}
	o.unheldView = maps.Clone(o.unheldSince)
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
		o.barrierWait.Wait(ctx.Done()) // then the next pass tries again
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
