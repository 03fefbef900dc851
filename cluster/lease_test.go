package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/testkit"
)

func TestLeaseTiming(t *testing.T) {
	l := LeaseTiming{Lease: time.Second, LeaderLeaseTimeout: 250 * time.Millisecond, Margin: 250 * time.Millisecond}
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if l.HandoverWait() != 1500*time.Millisecond || l.KernelLifetime() != time.Second || l.RefreshWindow() != 250*time.Millisecond {
		t.Fatalf("wait %s lifetime %s window %s", l.HandoverWait(), l.KernelLifetime(), l.RefreshWindow())
	}
	// The kernel removes a frozen holder's address before a new holder
	// may take it: renewed at contact+window at the latest.
	if l.RefreshWindow()+l.KernelLifetime()+kernelSlack > l.HandoverWait() {
		t.Fatal("kernel lifetime outlasts the handover wait")
	}
	for _, bad := range []LeaseTiming{
		{Lease: 0, LeaderLeaseTimeout: 250 * time.Millisecond},
		{Lease: 400 * time.Millisecond, LeaderLeaseTimeout: 250 * time.Millisecond, Margin: time.Second}, // shorter than 2 × LLT
		{Lease: time.Second, LeaderLeaseTimeout: 250 * time.Millisecond, Margin: 100 * time.Millisecond}, // leader could not renew
		{Lease: time.Second, LeaderLeaseTimeout: 400 * time.Millisecond, Margin: 0},                      // window 0.15 < LLT 0.4
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
	}
	if err := (LeaseTiming{Lease: 1500 * time.Millisecond, LeaderLeaseTimeout: 500 * time.Millisecond, Margin: 250 * time.Millisecond}).Validate(); err != nil {
		t.Errorf("a 1.5 s lease rounds its kernel lifetime down to 1 s: %v", err)
	}
}

// The self-fencing decision, case by case.
func TestDecide(t *testing.T) {
	l := LeaseTiming{Lease: time.Second, LeaderLeaseTimeout: 250 * time.Millisecond, Margin: 250 * time.Millisecond}
	now := time.Unix(1000, 0)
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	seenLongAgo := now.Add(-time.Minute)
	cases := []struct {
		name    string
		in      HoldInput
		hold    bool
		refresh bool
		reason  string
		retry   time.Duration
	}{
		{"not assigned", HoldInput{Assigned: false, Leader: true, Synced: true, Held: true, Now: now}, false, false, "not assigned", 0},
		{"never heard from a leader", HoldInput{Assigned: true, SeenAt: seenLongAgo, Synced: true, Now: now}, false, false, "no contact", 0},
		{"follower, fresh contact, held", HoldInput{Assigned: true, SeenAt: seenLongAgo, Contact: now.Add(-ms(60)), Synced: true, Held: true, Now: now}, true, true, "held", 0},
		{"follower, contact 600 ms old: hold, no kernel renewal", HoldInput{Assigned: true, SeenAt: seenLongAgo, Contact: now.Add(-ms(600)), Synced: true, Held: true, Now: now}, true, false, "held", 0},
		{"follower, contact exactly a lease old", HoldInput{Assigned: true, SeenAt: seenLongAgo, Contact: now.Add(-time.Second), Synced: true, Held: true, Now: now}, true, false, "held", 0},
		{"follower, contact older than the lease: drop", HoldInput{Assigned: true, SeenAt: seenLongAgo, Contact: now.Add(-ms(1001)), Synced: true, Held: true, Now: now}, false, false, "no contact with a leader for 1.001s", 0},
		{"leader holds and renews", HoldInput{Assigned: true, SeenAt: seenLongAgo, Leader: true, Synced: true, Held: true, Now: now}, true, true, "held", 0},
		{"fresh contact but replica not synced yet", HoldInput{Assigned: true, SeenAt: seenLongAgo, Leader: true, Synced: false, Now: now}, false, false, "address barrier", 0},
		{"new assignment: wait the handover", HoldInput{Assigned: true, SeenAt: now.Add(-ms(500)), Leader: true, Synced: true, Now: now}, false, false, "handover", ms(1000)},
		{"new assignment: wait over", HoldInput{Assigned: true, SeenAt: now.Add(-ms(1500)), Contact: now.Add(-ms(10)), Synced: true, Now: now}, true, true, "held", 0},
		{"held address is not re-waited", HoldInput{Assigned: true, SeenAt: now.Add(-ms(10)), Leader: true, Synced: true, Held: true, Now: now}, true, true, "held", 0},
		{"contact lost beats the handover", HoldInput{Assigned: true, SeenAt: now.Add(-ms(500)), Contact: now.Add(-ms(2000)), Synced: true, Now: now}, false, false, "no contact", 0},
	}
	for _, c := range cases {
		d := l.Decide(c.in)
		if d.Hold != c.hold || (c.hold && d.Refresh != c.refresh) || !strings.Contains(d.Reason, c.reason) || d.Retry != c.retry {
			t.Errorf("%s: got %+v, want hold=%v refresh=%v reason~%q retry=%s", c.name, d, c.hold, c.refresh, c.reason, c.retry)
		}
	}
}

// After a leader steps down, raft's last-contact stamp from the step-down
// does not count as contact with a leader; the new leader's heartbeats do.
func TestLeaderContactIgnoresStepDownStamp(t *testing.T) {
	c := newCluster(t, 3, nil)
	li := c.waitLeader()
	old := c.nodes[li].node
	if leader, _ := old.LeaderContact(); !leader {
		t.Fatal("the leader does not say it leads")
	}
	f := c.nodes[c.follower(li)].node
	testkit.WaitFor(t, 5*time.Second, "follower contact", func() bool {
		leader, last := f.LeaderContact()
		return !leader && time.Since(last) < 200*time.Millisecond
	})
	// Cut the old leader off the others' heartbeats by stopping both
	// followers: it steps down (no quorum) and hears from nobody.
	for i := range c.nodes {
		if i != li {
			c.stop(i)
		}
	}
	testkit.WaitFor(t, 5*time.Second, `step down and raft's "not leader" notification`, func() bool {
		old.contact.mu.Lock()
		defer old.contact.mu.Unlock()
		return !old.IsLeader() && !old.contact.leading && !old.contact.stepDownAt.IsZero()
	})
	if leader, last := old.LeaderContact(); leader || !last.IsZero() {
		t.Fatalf("after stepping down: leader=%v last contact %v; want none (raft's step-down stamp is %v)", leader, last, old.raft.LastContact())
	}
}
