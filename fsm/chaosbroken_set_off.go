//go:build !chaosbroken_set

package fsm

// dropsBinding is a hook of a deliberately broken build
// (chaosbroken_set.go, for the chaos checkers' tests). In every normal
// build no binding is dropped, and the call compiles away.
func dropsBinding(string) bool { return false }
