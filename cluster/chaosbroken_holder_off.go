//go:build !chaosbroken_holder

package cluster

// ignoreLease is a hook of a deliberately broken build
// (chaosbroken_holder.go, for the chaos checkers' tests). In every normal
// build it returns the self-fencing decision as it is.
func ignoreLease(d HoldDecision, _, _ bool) HoldDecision { return d }
