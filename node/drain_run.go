package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/troika-sip/troika/admin"
)

// The progress of one drain as POST /v1/cluster/drain streams it: the
// lines its steps say, kept so that a request that joins later gets them
// all, and its outcome.

// drainRun is one drain: its progress lines and outcome.
type drainRun struct {
	log     func(line string)
	opts    admin.DrainOptions
	started time.Time

	mu      sync.Mutex
	lines   []string
	wake    chan struct{}
	done    bool
	summary string
	err     error
}

func (r *drainRun) say(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	r.log(line)
	r.mu.Lock()
	r.lines = append(r.lines, line)
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

func (r *drainRun) finish(summary string, err error) {
	r.mu.Lock()
	r.done, r.summary, r.err = true, summary, err
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

// ended reports whether the drain is over, and whether it succeeded.
func (r *drainRun) ended() (done, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done, r.done && r.err == nil
}

// Follow implements admin.DrainRun.
func (r *drainRun) Follow(ctx context.Context, line func(string)) (string, error) {
	next := 0
	for {
		r.mu.Lock()
		lines := r.lines[next:]
		done, summary, err, wake := r.done, r.summary, r.err, r.wake
		r.mu.Unlock()
		for _, l := range lines {
			line(l)
		}
		next += len(lines)
		if done {
			return summary, err
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-wake:
		}
	}
}
