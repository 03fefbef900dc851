//go:build chaosbroken_holder

package cluster

// A DELIBERATELY BROKEN BUILD (go build -tags chaosbroken_holder), made
// only to show that the chaos single-holder checker catches two holders
// of one address (chaos/broken_test.go). Never ship it.
//
// ignoreLease overrides the self-fencing rules for an address the node
// holds and its replica still assigns to it: it keeps holding it (and
// renewing its kernel lifetime) when its lease ran out. A holder cut off
// from the others then keeps the address the majority gives to another
// node.
func ignoreLease(d HoldDecision, assigned, held bool) HoldDecision {
	if assigned && held && !d.Hold {
		return HoldDecision{Hold: true, Refresh: true, Reason: "held: lease ignored (chaosbroken_holder build)"}
	}
	return d
}
