package cluster

import (
	"context"
	"time"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/retry"
)

// The placement loop (ownership.go): while this node leads, it keeps the
// ownership map in step with the managed addresses and the health of the
// voters. Gossip and raft reachability inform it; the decision is
// placement.go's (pure); the map changes only through raft.

// Lead runs the placement loop while this node leads (ctx ends with the
// leadership): it keeps the ownership map in step with the managed
// addresses and the health of the voters.
func (o *Owner) Lead(ctx context.Context) {
	start := time.Now()
	o.node.startReachObserver()
	o.log.Info("ownership: placing addresses (this node leads)", "policy", o.cfg.Placement, "settle", o.cfg.Settle)
	tick := time.NewTicker(placeEvery)
	defer tick.Stop()
	wait := retry.Policy{Initial: failedWritePause}.New()
	for {
		gossipCh, assignCh, aliasCh, reachCh := o.gossip.Changed(), o.state.AssignmentsChanged(), o.state.AliasesChanged(), o.node.ReachChanged()
		if err := o.place(ctx, start); err != nil && ctx.Err() == nil {
			o.log.Warn("ownership: proposing address assignments failed; retrying", "error", err)
			wait.Wait(ctx.Done())
		}
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

// health returns the leader's view of every voter, for placement, and
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

// place proposes the changes of the ownership map that placement
// (placement.go) asks for, if any.
func (o *Owner) place(ctx context.Context, start time.Time) error {
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
		return nil
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
		return err
	}
	for _, c := range changes {
		o.log.Info("ownership: assignment", "change", c.String(), "nodes", view)
		o.node.metrics.countFailover(c, nodes[c.From])
	}
	return nil
}
