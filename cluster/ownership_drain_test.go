package cluster

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// A draining holder gives its address up at once (before anyone is told),
// the leader moves it to another node, which takes it after its handover
// wait, and the draining node takes nothing back while it drains, nor
// after it is back in service (a healthy holder keeps its address): never
// two holders.
func TestOwnershipDrainHandsOver(t *testing.T) {
	oc := newOwnedCluster(t)
	oc.waitLeader()
	holder := oc.waitHeld(t, testVIP, 15*time.Second)
	hi := int(holder[1] - '1')
	o := oc.owners[hi].Load()
	vip := netip.MustParseAddr(testVIP)

	start := time.Now()
	o.SetDraining(true, 2*time.Second)
	if h := oc.net.holders(vip); slices.Contains(h, holder) || len(o.Held()) != 0 {
		t.Fatalf("SetDraining(true) returned with %s still held (by %v; Held %v)", testVIP, h, o.Held())
	}
	released := time.Since(start)
	if err := oc.gossips[hi].SetMeta(NodeMeta{Version: "test", Health: HealthDraining, Addrs: true}); err != nil {
		t.Fatal(err)
	}
	next := oc.waitHeld(t, testVIP, 15*time.Second, holder)
	t.Logf("%s draining: gave %s up after %s; %s holds it %s after the drain began (handover wait %s)",
		holder, testVIP, released.Round(time.Millisecond), next, time.Since(start).Round(time.Millisecond), oc.timing.HandoverWait())
	if took := time.Since(start); took < oc.timing.HandoverWait() {
		t.Errorf("%s took %s %s after the drain began, before the handover wait %s", next, testVIP, took, oc.timing.HandoverWait())
	}

	oc.keptFrom(t, oc.timing.HandoverWait()+500*time.Millisecond, testVIP, holder, next, "while "+holder+" drains")
	o.SetDraining(false, 0)
	if err := oc.gossips[hi].SetMeta(NodeMeta{Version: "test", Health: HealthOK, Addrs: true}); err != nil {
		t.Fatal(err)
	}
	oc.keptFrom(t, oc.timing.HandoverWait()+500*time.Millisecond, testVIP, holder, next, "after "+holder+" is back in service (no failback)")
	oc.noViolations(t)
}
