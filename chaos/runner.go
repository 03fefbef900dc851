package chaos

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"time"
)

// T is what the harness needs from whoever drives it: a *testing.T (or
// any testing.TB) in the tests, a Runner in the chaos command.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(f func())
	Failed() bool
}

// Runner is a T outside `go test`: for the chaos command. Logf prints a
// progress line to its writer at once; Errorf records a failure and goes
// on; Fatal and Fatalf record one and end the goroutine that called them
// (runtime.Goexit, as testing does), which must be the one Do runs.
// Cleanups run when Do returns, last registered first.
type Runner struct {
	out   io.Writer
	start time.Time

	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

// NewRunner returns a Runner printing to out.
func NewRunner(out io.Writer) *Runner { return &Runner{out: out, start: time.Now()} }

// Helper does nothing: a Runner prints no file and line.
func (r *Runner) Helper() {}

// Logf prints one line, stamped with the seconds since the Runner began.
func (r *Runner) Logf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, "[%6.1fs] %s\n", time.Since(r.start).Seconds(), msg)
}

// Errorf prints and records a failure.
func (r *Runner) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.Logf("FAIL: %s", msg)
	r.mu.Lock()
	r.errs = append(r.errs, msg)
	r.mu.Unlock()
}

// Fatal records a failure and ends the calling goroutine.
func (r *Runner) Fatal(args ...any) {
	r.Errorf("%s", strings.TrimSuffix(fmt.Sprintln(args...), "\n"))
	runtime.Goexit()
}

// Fatalf records a failure and ends the calling goroutine.
func (r *Runner) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

// Cleanup registers f to run when Do returns.
func (r *Runner) Cleanup(f func()) {
	r.mu.Lock()
	r.cleanups = append(r.cleanups, f)
	r.mu.Unlock()
}

// Failed reports whether a failure was recorded.
func (r *Runner) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errs) > 0
}

// Do runs f on a goroutine of its own (so that Fatal can end it), then
// the cleanups f registered. It returns the failures recorded meanwhile,
// joined, or nil.
func (r *Runner) Do(f func()) error {
	r.mu.Lock()
	before := len(r.errs)
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer r.runCleanups()
		f()
	}()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) == before {
		return nil
	}
	return errors.New(strings.Join(r.errs[before:], "; "))
}

func (r *Runner) runCleanups() {
	for {
		r.mu.Lock()
		if len(r.cleanups) == 0 {
			r.mu.Unlock()
			return
		}
		f := r.cleanups[len(r.cleanups)-1]
		r.cleanups = r.cleanups[:len(r.cleanups)-1]
		r.mu.Unlock()
		f()
	}
}
