//go:build linux

package chaos

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/testkit"
)

// drainLoadFor is how long the steady REGISTER loads of the rolling
// tests run: three stops and restarts take about 10 s.
const drainLoadFor = 20 * time.Second

// rollingStop is how one node's stop went, for the report.
type rollingStop struct {
	node, leader string
	held         []netip.Addr
	from, exited time.Time     // the stop's start, the process's exit
	back         time.Duration // from the exit until caught up and healthy again
	summary      string
	detail       []string
}

// stopFunc stops a node (its process must have exited on return) and
// says how it went: a summary, and detail lines for the report.
type stopFunc func(n *Node) (summary string, detail []string, err error)

// versionBuild is a troika binary built to say it is version (node.Version).
func versionBuild(t *testing.T, version string) string {
	t.Helper()
	bin, err := testkit.Binary("-ldflags=-X github.com/troika-sip/troika/node.Version=" + version)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// rollingLoads starts the steady REGISTER loads of the rolling tests for
// d: 50/s through the virtual IP (users[:140]) and 25/s through the
// alias's extra port (the rest).
func rollingLoads(t *testing.T, c *Cluster, vip, alias netip.Addr, ids []string, d time.Duration) []*Load {
	t.Helper()
	return []*Load{
		mustLoad(t, c, RegisterLoad{Name: "vip", Target: sipAddr(vip, SIPPort), Users: ids[:140], Rate: 50, Duration: d, StatEvery: 100 * time.Millisecond}),
		mustLoad(t, c, RegisterLoad{Name: "alias", Target: sipAddr(alias, aliasExtraPort), Users: ids[140:], Rate: 25, Duration: d, StatEvery: 100 * time.Millisecond}),
	}
}

// rollUnderLoad stops each node in turn with stop (a node holding the
// virtual IP or the alias first, so its addresses move under the load),
// starts it again (from binary, when not ""), and waits until it has
// caught up and the cluster is healthy, all under a steady REGISTER load
// through the virtual IP (users[:140]) and the alias's extra port (the
// rest). It logs a report titled what, and fails the test on a failed
// REGISTER (retransmissions are allowed), a lost binding, or two
// namespaces holding one address at a sampled instant.
func rollUnderLoad(t *testing.T, c *Cluster, vip, alias netip.Addr, ids []string, what, binary string, stop stopFunc) {
	t.Helper()
	// Bindings of an earlier roll stay (its SIPp had other ports): the
	// loads add one per user.
	earlier := bindingCount(t, c.Nodes[0])
	loads := rollingLoads(t, c, vip, alias, ids, drainLoadFor)
	loadEnd := time.Now().Add(drainLoadFor)
	waitLoads(t, loads, 50) // steady before the first stop

	var recs []rollingStop
	done := map[string]bool{}
	for len(done) < len(c.Nodes) {
		var n *Node
		for _, a := range []netip.Addr{vip, alias} {
			if h := c.Holders(a); len(h) == 1 && !done[h[0]] && n == nil {
				n = c.Node(h[0])
			}
		}
		for _, cand := range c.Nodes {
			if n == nil && !done[cand.Name] {
				n = cand
			}
		}
		leader := mustLeader(t, c, 10*time.Second)
		r := rollingStop{node: n.Name, leader: leader.Name, from: time.Now()}
		for _, a := range []netip.Addr{vip, alias} {
			if slices.Contains(c.Holders(a), n.Name) {
				r.held = append(r.held, a)
			}
		}
		var err error
		r.summary, r.detail, err = stop(n)
		if err != nil {
			t.Fatalf("%s of %s: %v\n  %s", what, n.Name, err, strings.Join(r.detail, "\n  "))
		}
		r.exited = time.Now()
		done[n.Name] = true
		if binary != "" {
			n.Binary = binary
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitCaughtUp(n, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitHealthy(20 * time.Second); err != nil {
			t.Fatal(err)
		}
		r.back = time.Since(r.exited)
		recs = append(recs, r)
		c.Mark(n.Name + " back after its " + what)
		waitLoads(t, loads, 25) // the cluster serves again before the next stop
	}
	if time.Now().After(loadEnd) {
		t.Errorf("the %ss outlasted the %s REGISTER load: raise drainLoadFor", what, drainLoadFor)
	}
	results := []*LoadResult{loads[0].Wait(), loads[1].Wait()}
	rounds := c.AddrTimeline()

	var report []string
	for i, r := range recs {
		var ok, retrans int
		for _, lr := range results {
			o, _, rt := lr.Between(r.from, r.exited.Add(3*time.Second))
			ok += o
			retrans += rt
		}
		report = append(report, fmt.Sprintf("  %s %d: %s (leader %s): %s; %s; REGISTERs meanwhile: %d ok, %d retransmissions; back (caught up, healthy) %.2f s after its exit",
			what, i+1, r.node, r.leader, r.summary, movesText(rounds, r.node, r.held, r.from, r.exited.Add(5*time.Second)), ok, retrans, r.back.Seconds()))
		for _, l := range r.detail {
			report = append(report, "      "+l)
		}
	}
	t.Logf("%ss under a steady REGISTER load (%s; %s):\n%s", what, results[0].Summary(), results[1].Summary(), strings.Join(report, "\n"))
	for _, lr := range results {
		if lr.Err != nil || lr.Failed != 0 || lr.OK == 0 {
			t.Errorf("load %s: %d ok, %d failed, %v: want no failed REGISTER\n%s", lr.Name, lr.OK, lr.Failed, lr.Err, lr.Errors)
		}
	}
	everyBindingEverywhere(t, c, ids, earlier+len(ids))
	if d := c.DoubleHolders(); len(d) != 0 {
		t.Errorf("double holders: %v", d)
	}
}

// unheld returns how long address a was held by nobody after host gave it
// up within [from, to), and who took it: from the end of host's hold to
// the start of the next one, as the 50 ms sampler saw them.
func unheld(rounds []Round, a netip.Addr, host string, from, to time.Time) (time.Duration, string, bool) {
	holds := Ownership(rounds, a)
	slices.SortFunc(holds, func(x, y Hold) int { return x.From.Compare(y.From) })
	for i, h := range holds {
		if h.Host != host || h.Open || h.To.Before(from) || !h.To.Before(to) {
			continue
		}
		for _, next := range holds[i+1:] {
			if next.Host != host && !next.From.Before(h.From) {
				return next.From.Sub(h.To), next.Host, true
			}
		}
	}
	return 0, "", false
}

// movesText says, for each address host held when it stopped (between
// from and to), how long nobody held it and who took it.
func movesText(rounds []Round, host string, held []netip.Addr, from, to time.Time) string {
	var moves []string
	for _, a := range held {
		if gap, next, found := unheld(rounds, a, host, from, to); found {
			moves = append(moves, fmt.Sprintf("%s unheld %.2f s, then %s", a, gap.Seconds(), next))
		} else {
			moves = append(moves, fmt.Sprintf("%s: handover not seen by the sampler", a))
		}
	}
	if len(moves) == 0 {
		return "held no address"
	}
	return strings.Join(moves, "; ")
}

// bindingCount is how many bindings node n lists.
func bindingCount(t *testing.T, n *Node) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	regs, err := n.Admin().Registrations(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	return len(regs)
}

// everyBindingEverywhere checks that every user has a binding on every
// node, and that every node lists want bindings: none was lost.
func everyBindingEverywhere(t *testing.T, c *Cluster, ids []string, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		if _, err := n.WaitBindings(want, 10*time.Second); err != nil {
			t.Error(err)
			continue
		}
		regs, err := n.Admin().Registrations(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, r := range regs {
			have[r.Account] = true
		}
		for _, id := range ids {
			if !have[id] {
				t.Errorf("%s has no binding of %s", n.Name, id)
			}
		}
	}
}

// waitLoads waits until each load has counted n more successful
// REGISTERs than it has now.
func waitLoads(t *testing.T, loads []*Load, n int) {
	t.Helper()
	for _, l := range loads {
		if err := l.WaitOK(l.Progress()+n, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}
