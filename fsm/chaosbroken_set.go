//go:build chaosbroken_set

package fsm

import "hash/fnv"

// A DELIBERATELY BROKEN BUILD (go build -tags chaosbroken_set), made only
// to show that the chaos set checker catches a lost registration
// (chaos/broken_test.go). Never ship it.
//
// dropsBinding loses the bindings of about one account in 1000: those
// whose id hashes (FNV-1a, 32 bits) to 0 modulo 1000. Register
// acknowledges them and stores nothing. The choice depends on the
// command's content only, so every replica drops the same ones, and every
// refresh of such a binding is dropped again: it stays lost.
func dropsBinding(aor string) bool {
	h := fnv.New32a()
	h.Write([]byte(aor))
	return h.Sum32()%1000 == 0
}
