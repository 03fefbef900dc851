//go:build linux

package chaos

import (
	"context"
	"sync"
	"time"

	"github.com/troika-sip/troika/internal/tick"
)

// LeaderSample is who led at an instant, as the nodes said.
type LeaderSample struct {
	At     time.Time
	Leader string // "" when no running node said it led
	Term   uint64
}

// WatchLeader asks every running, unpaused node every period who it is
// (GET /v1/cluster), in the background until Close, and records the node
// that says it leads (the one of the highest term if two do: a deposed
// leader that has not noticed yet). LeaderTimeline returns the samples;
// the report draws them.
func (c *Cluster) WatchLeader(period time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	if c.closed || c.leaderWatch {
		c.mu.Unlock()
		cancel()
		return
	}
	c.leaderWatch = true
	c.mu.Unlock()
	c.bgWG.Add(1)
	go func() {
		defer c.bgWG.Done()
		defer cancel()
		tick.Every(c.bgDone(), period, func() {
			s := c.sampleLeader(ctx, min(period, 500*time.Millisecond))
			c.mu.Lock()
			c.leaders = append(c.leaders, s)
			c.mu.Unlock()
		})
	}()
}

func (c *Cluster) sampleLeader(ctx context.Context, timeout time.Duration) LeaderSample {
	s := LeaderSample{At: time.Now()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range c.Running() {
		if n.Paused() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			st, err := n.Status(ctx)
			if err != nil || st.Cluster.State != "leader" {
				return
			}
			mu.Lock()
			if st.Cluster.Term >= s.Term {
				s.Leader, s.Term = n.Name, st.Cluster.Term
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return s
}

// LeaderTimeline returns the samples of WatchLeader so far.
func (c *Cluster) LeaderTimeline() []LeaderSample {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]LeaderSample(nil), c.leaders...)
}
