package cluster

import (
	"slices"
	"time"

	"github.com/troika-sip/troika/fsm"
)

// AddressStatus is one managed address as this node sees it.
type AddressStatus struct {
	IP         string     `json:"ip"`
	Kind       string     `json:"kind"`        // vip, alias (or "" for an address this node does not know)
	Node       string     `json:"node"`        // the node the ownership map assigns it to ("" nobody)
	Epoch      uint64     `json:"epoch"`       // the entry's epoch
	AssignedAt *time.Time `json:"assigned_at"` // when the leader assigned it
	HeldByMe   bool       `json:"held_by_me"`  // this node holds it now
	HeldSince  *time.Time `json:"held_since,omitempty"`
	// UnheldSince: assigned to this node but not held by it since then
	// (the handover wait after a move, no contact with a leader, a
	// failure to add it).
	UnheldSince *time.Time `json:"unheld_since,omitempty"`
	State       string     `json:"state,omitempty"` // this node's reason to hold it or not
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
		for ip, since := range o.unheldView {
			t := since.UTC()
			get(ip).UnheldSince = &t
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
