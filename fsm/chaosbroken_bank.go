//go:build chaosbroken_bank

package fsm

// A DELIBERATELY BROKEN BUILD (go build -tags chaosbroken_bank), made only
// to show that the chaos bank checker catches money moved twice
// (chaos/broken_test.go). Never ship it.
//
// reappliesTopup makes a top-up retried with an idempotency key already
// applied (a client whose answer was lost sends it again) move the
// money again: a debit (or credit) applied twice on retry.
func reappliesTopup() bool { return true }
