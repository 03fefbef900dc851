package chaos

import (
	"bytes"
	"strings"
	"testing"
)

// A Runner drives the harness outside tests: Fatalf ends the run where it
// is called and fails it, the cleanups run (last first) either way, and
// Do says what failed.
func TestRunner(t *testing.T) {
	var out bytes.Buffer
	r := NewRunner(&out)
	var order []string
	reached := false
	err := r.Do(func() {
		r.Cleanup(func() { order = append(order, "first") })
		r.Cleanup(func() { order = append(order, "second") })
		r.Logf("progress %d", 1)
		r.Errorf("a checker failed")
		r.Fatalf("setup: %s", "no leader")
		reached = true
	})
	if err == nil || !strings.Contains(err.Error(), "a checker failed") || !strings.Contains(err.Error(), "setup: no leader") {
		t.Fatalf("Do = %v, want both failures", err)
	}
	if reached {
		t.Error("the run went on after Fatalf")
	}
	if strings.Join(order, ",") != "second,first" {
		t.Errorf("cleanups ran %v, want second,first", order)
	}
	if !strings.Contains(out.String(), "progress 1") || !strings.Contains(out.String(), "FAIL: setup: no leader") {
		t.Errorf("printed:\n%s", out.String())
	}
	if !r.Failed() {
		t.Error("Failed() = false after failures")
	}
	if err := r.Do(func() { r.Logf("fine") }); err != nil {
		t.Errorf("a second run without failures: %v", err)
	}
}
