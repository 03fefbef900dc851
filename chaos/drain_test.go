//go:build linux

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/internal/sipptest"
)

// drainLoadFor is how long the steady REGISTER loads of
// TestDrainUnderLoad run: three drains and restarts take about 10 s.
const drainLoadFor = 20 * time.Second

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

// A rolling upgrade: each node is drained in turn (`POST
// /v1/cluster/drain`) under a steady REGISTER load through the virtual IP
// and through the alias's extra port, and started again from a build with
// a new version (caught up and healthy) before the next; at the end every
// node runs it and gossips it. SIPp counts
// no failed REGISTER over the whole run (retransmissions are allowed:
// they cover an address's handover), and at the end every user's binding
// is on every node. Logged per drain: its steps, how long it took, how
// long each address it held was held by nobody, and the load's
// retransmissions meanwhile. At no sampled instant do two namespaces hold
// one address.
func TestDrainUnderLoad(t *testing.T) {
	sipptest.Need(t)
	c, vip, alias, ids := setupVIP(t, 200)
	const nextVersion = "chaos-next"
	next, err := BuildTroika(t.TempDir(), "-ldflags=-X github.com/troika-sip/troika/node.Version="+nextVersion)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 85*time.Second)
	defer cancel()
	vipUsers, aliasUsers := ids[:140], ids[140:]
	loads := []*Load{
		mustLoad(t, c, RegisterLoad{Name: "vip", Target: sipAddr(vip, SIPPort), Users: vipUsers, Rate: 50, Duration: drainLoadFor, StatEvery: 100 * time.Millisecond}),
		mustLoad(t, c, RegisterLoad{Name: "alias", Target: sipAddr(alias, aliasExtraPort), Users: aliasUsers, Rate: 25, Duration: drainLoadFor, StatEvery: 100 * time.Millisecond}),
	}
	loadEnd := time.Now().Add(drainLoadFor)
	time.Sleep(2 * time.Second)

	type drainRec struct {
		node, leader string
		held         []netip.Addr
		from, to     time.Time // the drain request to the node's exit
		res          *DrainResult
		restarted    time.Duration // from the exit until caught up and healthy again
	}
	var recs []drainRec
	done := map[string]bool{}
	for len(done) < len(c.Nodes) {
		// Next: a node not drained yet, one holding the virtual IP or the
		// alias if any does (its addresses then move under the load).
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
		leader, err := c.WaitLeader(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		rec := drainRec{node: n.Name, leader: leader.Name, from: time.Now()}
		for _, a := range []netip.Addr{vip, alias} {
			if slices.Contains(c.Holders(a), n.Name) {
				rec.held = append(rec.held, a)
			}
		}
		res, err := n.Drain(ctx, admin.DrainRequest{Timeout: "60s"})
		if err != nil {
			t.Fatalf("drain of %s: %v\nprogress:\n  %s", n.Name, err, strings.Join(res.Lines, "\n  "))
		}
		rec.to, rec.res = time.Now(), res
		done[n.Name] = true
		n.Binary = next
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitCaughtUp(n, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitHealthy(20 * time.Second); err != nil {
			t.Fatal(err)
		}
		rec.restarted = time.Since(rec.to)
		recs = append(recs, rec)
		c.Mark(n.Name + " back after its drain")
		time.Sleep(time.Second)
	}
	if time.Now().After(loadEnd) {
		t.Errorf("the drains outlasted the %s REGISTER load: raise drainLoadFor", drainLoadFor)
	}
	results := []*LoadResult{loads[0].Wait(), loads[1].Wait()}
	rounds := c.AddrTimeline()

	var report []string
	for i, r := range recs {
		var retrans, ok int
		for _, lr := range results {
			o, _, rt := lr.Between(r.from, r.to.Add(2*time.Second))
			ok += o
			retrans += rt
		}
		moves := movesText(rounds, r.node, r.held, r.from, r.to)
		report = append(report, fmt.Sprintf("  drain %d: %s (leader %s): drained in %.2f s, process exited at %.2f s; %s; REGISTERs meanwhile: %d ok, %d retransmissions; back (caught up, healthy) %.2f s after its exit",
			i+1, r.node, r.leader, r.res.Took.Seconds(), r.res.Exited.Seconds(), moves, ok, retrans, r.restarted.Seconds()))
		for j, l := range r.res.Lines {
			report = append(report, fmt.Sprintf("      %+6.2fs %s", r.res.At[j].Sub(r.from).Seconds(), l))
		}
	}
	t.Logf("drains under a steady REGISTER load (%s; %s):\n%s", results[0].Summary(), results[1].Summary(), strings.Join(report, "\n"))
	for _, lr := range results {
		if lr.Err != nil || lr.Failed != 0 || lr.OK == 0 {
			t.Errorf("load %s: %d ok, %d failed, %v: want no failed REGISTER\n%s", lr.Name, lr.OK, lr.Failed, lr.Err, lr.Errors)
		}
	}
	everyBindingEverywhere(t, c, ids)
	if d := c.DoubleHolders(); len(d) != 0 {
		t.Errorf("double holders: %v", d)
	}
	// Every node runs the new build, and the others see it in gossip.
	for _, n := range c.Nodes {
		st, err := n.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var members struct {
			Members []struct {
				ID    string `json:"id"`
				State string `json:"state"`
				Meta  struct {
					Version string `json:"v"`
				} `json:"meta"`
			} `json:"members"`
		}
		if err := json.Unmarshal(st.Raw, &members); err != nil {
			t.Fatal(err)
		}
		if st.Version != nextVersion {
			t.Errorf("%s runs version %q after the upgrade, want %q", n.Name, st.Version, nextVersion)
		}
		for _, m := range members.Members {
			if m.State != "alive" || m.Meta.Version != nextVersion {
				t.Errorf("%s sees %s %s at version %q in gossip, want alive at %q", n.Name, m.ID, m.State, m.Meta.Version, nextVersion)
			}
		}
		if len(members.Members) != len(c.Nodes) {
			t.Errorf("%s sees %d members, want %d", n.Name, len(members.Members), len(c.Nodes))
		}
	}
}

// A node alone with the virtual IP is the last node able to hold it: its
// drain is refused before anything changes, saying what to do, and the
// node keeps serving; forced, it drains, the address is left to nobody,
// and the process exits 0.
func TestDrainLastNode(t *testing.T) {
	o := vipOptions()
	o.Nodes = 1
	c := newCluster(t, o)
	n := c.Nodes[0]
	vip := vipAddr(n.Addr)
	soleHolder(t, c, vip, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	_, err := n.Drain(ctx, admin.DrainRequest{})
	var ae *admin.APIError
	want := fmt.Sprintf("no other healthy node to take %s: start another node or use --force", vip)
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Msg, want) {
		t.Fatalf("drain of the last node: %v, want a 409 saying %q", err, want)
	}
	t.Logf("refused: %s", ae.Msg)
	if err := c.WaitHealthy(5 * time.Second); err != nil || !n.Running() {
		t.Fatalf("after the refused drain: running %v, %v", n.Running(), err)
	}
	if h := c.Holders(vip); len(h) != 1 || h[0] != n.Name {
		t.Fatalf("after the refused drain %s is held by %v", vip, h)
	}
	res, err := n.Drain(ctx, admin.DrainRequest{Force: true})
	if err != nil {
		t.Fatalf("forced drain: %v\n  %s", err, strings.Join(res.Lines, "\n  "))
	}
	t.Logf("forced drain:\n  %s\n  drained: %s", strings.Join(res.Lines, "\n  "), res.Summary)
	if !slices.ContainsFunc(res.Lines, func(l string) bool { return strings.Contains(l, "--force: nobody serves them") }) {
		t.Errorf("the forced drain did not say the address is left to nobody")
	}
	if err := c.WaitHolders(vip, 500*time.Millisecond); err != nil {
		t.Errorf("after the node left (the sampler looks every %v): %v", SampleEvery, err)
	}
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

// everyBindingEverywhere checks that every user has a binding on every
// node: none was lost.
func everyBindingEverywhere(t *testing.T, c *Cluster, ids []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		if _, err := n.WaitBindings(len(ids), 10*time.Second); err != nil {
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
