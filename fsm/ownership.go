package fsm

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Ownership of the managed addresses (the main virtual IPs and the IP
// aliases): which node is to hold each one. Only the leader writes it
// (AssignAddresses), from its view of which nodes are healthy; a node
// holds an address only while this replicated map names it and it hears
// from the leader (see cluster/ownership.go for the self-fencing rules).

// Assignment says which node is to hold a managed address.
type Assignment struct {
	IP         string // canonical form, e.g. "10.0.0.100"
	Node       string // node id; "" when no node is to hold it
	Epoch      uint64 // the state's address epoch when this entry last changed
	AssignedAt int64  // unix ms, stamped by the leader (informative: no node times anything from it)
}

// AddressChange is one change of an AssignAddresses command. It applies
// only if the entry's epoch is still PrevEpoch (0: no entry), so a retried
// or stale command changes nothing: the proposer read the state, and the
// state has moved on since.
type AddressChange struct {
	IP        string
	Node      string // the node to hold IP; "" for nobody
	Remove    bool   // drop the entry: the address is no longer managed
	PrevEpoch uint64
}

// AssignAddresses changes the ownership map. Every change that applies
// (see AddressChange) gives its entry a new epoch from the state's address
// epoch, which increases by one per change, never reused. Assigning an
// address to the node that already has it changes nothing. The whole
// command is refused, with nothing applied, if a change is malformed.
type AssignAddresses struct {
	Changes []AddressChange
	Now     int64 // unix ms
}

func (*AssignAddresses) Type() Type { return TypeAssignAddresses }

func (c *AssignAddresses) validate() error {
	seen := map[string]bool{}
	for i, ch := range c.Changes {
		f := func(name string) string { return fmt.Sprintf("changes[%d].%s", i, name) }
		ip, err := netip.ParseAddr(ch.IP)
		if err != nil || ip.Zone() != "" || ip.IsUnspecified() || ip.IsMulticast() || ip.String() != ch.IP {
			return fieldErr(f("ip"), "must be a unicast IP address in canonical form (got %q)", ch.IP)
		}
		if seen[ch.IP] {
			return fieldErr(f("ip"), "%s is listed twice", ch.IP)
		}
		seen[ch.IP] = true
		if ch.Node != "" && !ValidID(ch.Node) {
			return fieldErr(f("node"), "is not a valid node id (got %q)", ch.Node)
		}
		if ch.Remove && ch.Node != "" {
			return fieldErr(f("node"), "must be empty when removing")
		}
	}
	return nil
}

func (c *AssignAddresses) apply(s *State) Result {
	if err := c.validate(); err != nil {
		return refuseInvalid(err)
	}
	o := &s.own
	changed := false
	for _, ch := range c.Changes {
		cur, ok := o.assignments[ch.IP]
		var curEpoch uint64
		if ok {
			curEpoch = cur.Epoch
		}
		if curEpoch != ch.PrevEpoch {
			continue // stale: decided on an older state
		}
		if ch.Remove {
			if ok {
				delete(o.assignments, ch.IP)
				changed = true
			}
			continue
		}
		if ok && cur.Node == ch.Node {
			continue
		}
		o.epoch++
		o.assignments[ch.IP] = &Assignment{IP: ch.IP, Node: ch.Node, Epoch: o.epoch, AssignedAt: c.Now}
		changed = true
	}
	if changed {
		o.changed()
	}
	return Result{}
}

// AddressBarrier changes nothing. A node proposes one, and waits until its
// own replica has applied it, to know that its view of the ownership map
// is at least as new as the leader's was when the barrier was committed:
// it does so before it takes (or takes back) an address after a start or
// after it lost touch with the leader.
type AddressBarrier struct {
	Node string
	Now  int64 // unix ms
}

func (*AddressBarrier) Type() Type { return TypeAddressBarrier }

func (c *AddressBarrier) apply(*State) Result {
	if !ValidID(c.Node) {
		return refuse(CodeInvalid, "node", "is not a valid node id (got %q)", c.Node)
	}
	return Result{}
}

// ownership is the State's part for address ownership.
type ownership struct {
	assignments map[string]*Assignment // by IP; stored records are never modified
	epoch       uint64                 // last epoch issued
	watch       chan struct{}          // closed and replaced at every change
}

func newOwnership() ownership {
	return ownership{assignments: map[string]*Assignment{}, watch: make(chan struct{})}
}

func (o *ownership) changed() {
	close(o.watch)
	o.watch = make(chan struct{})
}

// Assignments returns the ownership map, ordered by address.
func (s *State) Assignments() []Assignment {
	s.mu.RLock()
	out := make([]Assignment, 0, len(s.own.assignments))
	for _, a := range s.own.assignments {
		out = append(out, *a)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Assignment) int { return CompareAddr(a.IP, b.IP) })
	return out
}

// Assignment returns the entry of one address.
func (s *State) Assignment(ip string) (Assignment, bool) {
	return copyOf(s, &s.own.assignments, ip, func(a *Assignment) Assignment { return *a })
}

// AddressEpoch returns the last address epoch issued (0 before the first
// assignment).
func (s *State) AddressEpoch() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.own.epoch
}

// AssignmentsChanged returns a channel closed at the next change of the
// ownership map (or a snapshot restore).
func (s *State) AssignmentsChanged() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.own.watch
}

// CompareAddr orders addresses numerically (IPv4 before IPv6),
// unparsable ones last by text, for slices.SortFunc.
func CompareAddr(a, b string) int {
	x, errx := netip.ParseAddr(a)
	y, erry := netip.ParseAddr(b)
	switch {
	case errx == nil && erry == nil:
		return x.Compare(y)
	case errx == nil:
		return -1
	case erry == nil:
		return 1
	}
	return strings.Compare(a, b)
}
