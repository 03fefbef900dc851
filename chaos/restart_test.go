//go:build linux

package chaos

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/sipptest"
)

// A plain restart (SIGTERM, as `systemctl restart` sends, then start) of
// each node in turn under a steady REGISTER load through the virtual IP
// and the alias, without a drain: a stopping node gives up its addresses,
// says it is leaving before its SIP stack stops, and leaves gossip, so the
// others stop dispatching to it and move its addresses. SIPp counts no
// failed REGISTER (retransmissions cover the handovers), every user's
// binding is on every node afterwards, and no two namespaces ever hold
// one address. Logged per restart: how long the stop took, how long each
// address the node held was held by nobody, and the REGISTERs meanwhile.
func TestRestartUnderLoad(t *testing.T) {
	sipptest.Need(t)
	c, vip, alias, ids := setupVIP(t, 200)
	loads := []*Load{
		mustLoad(t, c, RegisterLoad{Name: "vip", Target: sipAddr(vip, SIPPort), Users: ids[:140], Rate: 50, Duration: drainLoadFor, StatEvery: 100 * time.Millisecond}),
		mustLoad(t, c, RegisterLoad{Name: "alias", Target: sipAddr(alias, aliasExtraPort), Users: ids[140:], Rate: 25, Duration: drainLoadFor, StatEvery: 100 * time.Millisecond}),
	}
	loadEnd := time.Now().Add(drainLoadFor)
	time.Sleep(2 * time.Second)

	type restart struct {
		node          string
		held          []netip.Addr
		from, stopped time.Time
		back          time.Duration // from the exit until caught up and healthy again
	}
	var recs []restart
	for _, n := range c.Nodes {
		r := restart{node: n.Name, from: time.Now()}
		for _, a := range []netip.Addr{vip, alias} {
			if slices.Contains(c.Holders(a), n.Name) {
				r.held = append(r.held, a)
			}
		}
		if err := n.Stop(15 * time.Second); err != nil {
			t.Fatal(err)
		}
		r.stopped = time.Now()
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitCaughtUp(n, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitHealthy(20 * time.Second); err != nil {
			t.Fatal(err)
		}
		r.back = time.Since(r.stopped)
		recs = append(recs, r)
		c.Mark(n.Name + " back after its restart")
		time.Sleep(time.Second)
	}
	if time.Now().After(loadEnd) {
		t.Errorf("the restarts outlasted the %s REGISTER load: raise drainLoadFor", drainLoadFor)
	}
	results := []*LoadResult{loads[0].Wait(), loads[1].Wait()}
	rounds := c.AddrTimeline()

	var report []string
	for i, r := range recs {
		var ok, retrans int
		for _, lr := range results {
			o, _, rt := lr.Between(r.from, r.stopped.Add(3*time.Second))
			ok += o
			retrans += rt
		}
		report = append(report, fmt.Sprintf("  restart %d: %s stopped %.2f s after SIGTERM; %s; REGISTERs meanwhile: %d ok, %d retransmissions; back (caught up, healthy) %.2f s after its exit",
			i+1, r.node, r.stopped.Sub(r.from).Seconds(), movesText(rounds, r.node, r.held, r.from, r.stopped.Add(5*time.Second)), ok, retrans, r.back.Seconds()))
	}
	t.Logf("plain restarts under a steady REGISTER load (%s; %s):\n%s", results[0].Summary(), results[1].Summary(), strings.Join(report, "\n"))
	for _, lr := range results {
		if lr.Err != nil || lr.Failed != 0 || lr.OK == 0 {
			t.Errorf("load %s: %d ok, %d failed, %v: want no failed REGISTER\n%s", lr.Name, lr.OK, lr.Failed, lr.Err, lr.Errors)
		}
	}
	everyBindingEverywhere(t, c, ids)
	if d := c.DoubleHolders(); len(d) != 0 {
		t.Errorf("double holders: %v", d)
	}
}
