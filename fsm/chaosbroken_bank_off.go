//go:build !chaosbroken_bank

package fsm

// reappliesTopup is a hook of a deliberately broken build
// (chaosbroken_bank.go, for the chaos checkers' tests). In every normal
// build a retried top-up applies nothing, and the call compiles away.
func reappliesTopup() bool { return false }
