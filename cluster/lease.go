package cluster

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Self-fencing of virtual and alias addresses (docs/ARCHITECTURE.md).
//
// A node holds an address only while (1) the replicated ownership map, as
// its own replica has applied it, names the node, and (2) it has heard
// from a leader within the lease: a follower counts from raft's last
// contact (the last AppendEntries or snapshot RPC it accepted from the
// leader of its current term), a leader from now, because raft's
// LeaderLeaseTimeout makes a leader that has not reached a quorum within
// that time step down. The moment either stops being true the node removes
// the address (sockets closed, then AddrDel).
//
// Why two nodes never hold an address at once when it moves from H to N:
// the leader assigns an address to N only when H has failed (dead in
// memberlist, or unreachable over raft: see placement.go) or is draining
// or stopping, by committing an assignment entry e. A draining or
// stopping H gave up its addresses before it said so in gossip, and takes
// none afterwards (Owner.SetDraining): it holds nothing after e, whenever
// it applies e. For a
// failed H, let T be the last instant H heard from a leader that could
// reach a quorum. After T:
//   - if H is a follower, a deposed leader that still believes it leads
//     (at most LeaderLeaseTimeout after it lost its quorum) can still
//     refresh H's last contact, so H's contact is at most T +
//     LeaderLeaseTimeout, and H drops the address at most a lease after
//     that;
//   - if H is the leader, it steps down at most LeaderLeaseTimeout after T,
//     its "contact" ends there (raft stamps a last contact at step-down:
//     contactTracker ignores it), and it drops at once.
//
// Either way H holds nothing after T + LeaderLeaseTimeout + lease (plus
// the check period of the holder's loop, covered by the margin). N applies
// e after e was committed, hence after T, and takes the address only at
// its apply time + lease + LeaderLeaseTimeout + margin (HandoverWait), by
// which time H has let go. Only durations are compared, each measured on
// one machine's monotonic clock: no clock synchronisation is assumed.
//
// A node that was out of touch may hold a stale replica that still names
// it (the move to N committed while it was cut off, and the first
// heartbeats of the leader arrive before the log entries that it missed).
// So after a start, and after every loss of contact, a node proposes an
// AddressBarrier and waits until its own replica has applied it (Synced)
// before it takes or takes back any address.
//
// A holder that is frozen (SIGSTOP, a paused VM) or killed cannot remove
// the address itself: the kernel does. Addresses are added with a valid
// lifetime of KernelLifetime (whole seconds, at least 1) and renewed only
// while the last contact is recent (RefreshWindow), so the kernel deletes
// the address of a dead or frozen holder no later than last contact +
// RefreshWindow + KernelLifetime + the kernel's own check delay
// (kernelSlack) = contact + HandoverWait. A leader renews only if
// RefreshWindow covers LeaderLeaseTimeout: its real quorum contact may be
// that old (Validate insists).

// LeaseTiming is the timing of the self-fencing rules.
type LeaseTiming struct {
	// Lease: how long a node keeps its addresses without hearing from a
	// leader. It should outlast a leader election (a holder then keeps its
	// address while the cluster elects a new leader).
	Lease time.Duration
	// LeaderLeaseTimeout is raft's: a leader that could not reach a quorum
	// for this long steps down.
	LeaderLeaseTimeout time.Duration
	// Margin is added to the handover wait: the holder loop's check
	// period, scheduling delays.
	Margin time.Duration
}

// kernelSlack is how long after an address's valid lifetime ends the
// kernel may take to delete it (its lifetime check is rounded up to about
// a quarter second; measured: 0.99-1.16 s for a 1 s lifetime).
const kernelSlack = 250 * time.Millisecond

// HandoverWait is how long after applying an assignment a node waits
// before it takes the address: the previous holder has let go by then.
func (l LeaseTiming) HandoverWait() time.Duration {
	return l.Lease + l.LeaderLeaseTimeout + l.Margin
}

// KernelLifetime is the valid lifetime addresses are added with: the
// lease rounded down to whole seconds, at least one (the kernel counts in
// seconds).
func (l LeaseTiming) KernelLifetime() time.Duration {
	return max(l.Lease/time.Second, 1) * time.Second
}

// RefreshWindow is how recent the last contact must be for a holder to
// renew the kernel lifetime of its addresses: renewed at contact +
// RefreshWindow at the latest, the kernel removes them by contact +
// RefreshWindow + KernelLifetime + kernelSlack <= contact + HandoverWait.
func (l LeaseTiming) RefreshWindow() time.Duration {
	return max(l.HandoverWait()-l.KernelLifetime()-kernelSlack, 0)
}

// Validate reports a timing that cannot fence.
func (l LeaseTiming) Validate() error {
	switch {
	case l.Lease <= 0 || l.LeaderLeaseTimeout <= 0 || l.Margin < 0:
		return fmt.Errorf("lease %s, leader lease timeout %s, margin %s: must be positive", l.Lease, l.LeaderLeaseTimeout, l.Margin)
	case l.Lease < 2*l.LeaderLeaseTimeout:
		return fmt.Errorf("lease %s: must be at least twice raft's leader_lease_timeout (%s), or every leader election drops every address",
			l.Lease, l.LeaderLeaseTimeout)
	case l.RefreshWindow() < l.LeaderLeaseTimeout:
		return fmt.Errorf("lease %s + margin %s: too short for the kernel lifetime of %s (whole seconds) plus %s of kernel delay and raft's "+
			"leader_lease_timeout %s: raise the margin to at least %s",
			l.Lease, l.Margin, l.KernelLifetime(), kernelSlack, l.LeaderLeaseTimeout,
			l.KernelLifetime()+kernelSlack-l.Lease)
	}
	return nil
}

// HoldInput is what a node knows, at one instant, about one address it
// may hold.
type HoldInput struct {
	Assigned bool      // its replica's ownership map names this node
	SeenAt   time.Time // when it first saw the current assignment (epoch) in its replica
	Leader   bool      // it is the raft leader
	Contact  time.Time // last contact with a leader (zero: none since it started or stepped down)
	Synced   bool      // an AddressBarrier has been applied here since the last loss of contact
	Held     bool      // it holds the address now
	Now      time.Time
}

// HoldDecision is what to do with the address.
type HoldDecision struct {
	Hold    bool          // hold it (take it if not held); false: drop it (or keep not holding)
	Refresh bool          // renew its kernel lifetime now (meaningful when Hold)
	Reason  string        // why, for logs and status
	Retry   time.Duration // when not holding: how long until the answer may change (0: on the next event)
}

// ContactFresh reports whether a node that last heard from a leader at
// contact (or leads) is within the lease at now.
func (l LeaseTiming) ContactFresh(leader bool, contact, now time.Time) bool {
	return leader || (!contact.IsZero() && now.Sub(contact) <= l.Lease)
}

// Decide applies the self-fencing rules to one address. It is pure.
func (l LeaseTiming) Decide(in HoldInput) HoldDecision {
	if !in.Assigned {
		return HoldDecision{Reason: "not assigned to this node"}
	}
	if !l.ContactFresh(in.Leader, in.Contact, in.Now) {
		if in.Contact.IsZero() {
			return HoldDecision{Reason: "no contact with a leader"}
		}
		return HoldDecision{Reason: fmt.Sprintf("no contact with a leader for %s (lease %s)", in.Now.Sub(in.Contact).Round(time.Millisecond), l.Lease)}
	}
	if !in.Synced {
		return HoldDecision{Reason: "waiting for the replica to catch up (address barrier)"}
	}
	if !in.Held {
		if wait := in.SeenAt.Add(l.HandoverWait()).Sub(in.Now); wait > 0 {
			return HoldDecision{Reason: fmt.Sprintf("handover: waiting %s more for the previous holder to fence itself", wait.Round(time.Millisecond)), Retry: wait}
		}
	}
	// A leader's quorum contact may be LeaderLeaseTimeout old (Validate
	// makes the window cover it).
	refresh := in.Leader || in.Now.Sub(in.Contact) <= l.RefreshWindow()
	return HoldDecision{Hold: true, Refresh: refresh, Reason: "held"}
}

// contactTracker corrects raft's last-contact time for the lease: when a
// leader steps down raft stamps its last contact with the step-down time
// (so that a stale follower does not look stale to clients), which is not
// contact with any leader. Contacts up to the step-down are ignored.
type contactTracker struct {
	mu         sync.Mutex
	leading    bool      // between raft's "leader" and "not leader" notifications
	stepDownAt time.Time // when the last "not leader" notification arrived
}

// leadership records a leadership notification from raft's NotifyCh.
// raft sends "not leader" after it stamped the step-down contact, so that
// stamp is never after stepDownAt.
func (c *contactTracker) leadership(isLeader bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leading = isLeader
	if !isLeader {
		c.stepDownAt = time.Now()
	}
}

// LeaderContact reports whether this node leads and, if not, when it last
// heard from a leader (zero: not since it started or stepped down). The
// ownership code uses it for the lease.
func (n *Node) LeaderContact() (leader bool, contact time.Time) {
	if n.alive() != nil {
		return false, time.Time{}
	}
	switch n.raft.State() {
	case raft.Leader:
		return true, time.Now()
	case raft.Shutdown:
		return false, time.Time{}
	}
	c := &n.contact
	c.mu.Lock()
	leading, stepDown := c.leading, c.stepDownAt
	c.mu.Unlock()
	if leading {
		return false, time.Time{} // stepping down: raft's last contact is about to be stamped
	}
	last := n.raft.LastContact()
	if !last.After(stepDown) {
		return false, time.Time{}
	}
	return false, last
}
