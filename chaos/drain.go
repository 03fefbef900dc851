//go:build linux

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/troika-sip/troika/admin"
)

// DrainResult is what Node.Drain saw.
type DrainResult struct {
	Lines   []string      // the progress lines, as they came
	At      []time.Time   // when each line came
	Summary string        // the final "drained:" line's text
	Took    time.Duration // from the request to the summary
	Exited  time.Duration // from the request to the process's exit
}

// Drain asks node n for a planned stop (POST /v1/cluster/drain, what
// `troika drain` does), puts each progress line in the timeline as it
// arrives, and waits until the node's process has exited. It fails if the
// drain is refused or stops, or if the process does not exit with status 0
// within 20 s of the summary.
func (n *Node) Drain(ctx context.Context, req admin.DrainRequest) (*DrainResult, error) {
	n.mu.Lock()
	if n.cmd == nil {
		n.mu.Unlock()
		return nil, fmt.Errorf("%s: not running", n.Name)
	}
	cmd, done := n.cmd, n.done
	n.expect = true // the exit is the drain's
	n.mu.Unlock()
	start := time.Now()
	n.c.event(n.Name, "stop", fmt.Sprintf("drain requested (timeout %q, force %v)", req.Timeout, req.Force))
	res := &DrainResult{}
	summary, err := n.admin.Drain(ctx, req, func(line string) {
		res.Lines = append(res.Lines, line)
		res.At = append(res.At, time.Now())
		n.c.event(n.Name, "drain", line)
	})
	if err != nil {
		n.mu.Lock()
		if n.cmd == cmd {
			n.expect = false
		}
		n.mu.Unlock()
		return res, fmt.Errorf("%s: drain: %w", n.Name, err)
	}
	res.Summary, res.Took = summary, time.Since(start)
	n.c.event(n.Name, "drain", "drained: "+summary)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		return res, fmt.Errorf("%s: still running 20 s after its drain ended (log %s)", n.Name, n.LogPath)
	}
	res.Exited = time.Since(start)
	st := errOrStatus(nil, cmd)
	n.c.event(n.Name, "exit", "drained: "+st)
	if cmd.ProcessState == nil || !cmd.ProcessState.Success() {
		return res, fmt.Errorf("%s: drained, but its process exited with %s, want status 0 (log %s)", n.Name, st, n.LogPath)
	}
	return res, nil
}

// WaitHealthy waits until every running node's gossip sees every running
// node alive with health "ok".
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var why string
	for {
		why = c.unhealthy()
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not healthy within %v: %s", timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unhealthy says why the running nodes do not all see each other alive
// and ok, "" when they do.
func (c *Cluster) unhealthy() string {
	running := c.Running()
	for _, n := range running {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s, err := n.Status(ctx)
		cancel()
		if err != nil {
			return fmt.Sprintf("%s: %v", n.Name, err)
		}
		var v struct {
			Members []struct {
				ID    string `json:"id"`
				State string `json:"state"`
				Meta  struct {
					Health string `json:"h"`
				} `json:"meta"`
			} `json:"members"`
		}
		if err := json.Unmarshal(s.Raw, &v); err != nil {
			return fmt.Sprintf("%s: %v", n.Name, err)
		}
		for _, m := range running {
			found := false
			for _, mv := range v.Members {
				if mv.ID == m.Name {
					found = true
					if mv.State != "alive" || mv.Meta.Health != "ok" {
						return fmt.Sprintf("%s sees %s %s, health %q", n.Name, m.Name, mv.State, mv.Meta.Health)
					}
				}
			}
			if !found {
				return fmt.Sprintf("%s does not know %s", n.Name, m.Name)
			}
		}
	}
	return ""
}
