//go:build linux

package chaos

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
)

// troikaBin is the binary under test (as root only: the tests skip
// otherwise): the one build of this checkout that every test package of a
// `go test` run shares (testkit.Binary). Without the race detector, so
// that the failover figures are a production binary's; CHAOS_RACE=1
// builds one with -race.
var troikaBin string

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		var flags []string
		if os.Getenv("CHAOS_RACE") == "1" {
			flags = append(flags, "-race")
		}
		var err error
		if troikaBin, err = testkit.Binary(flags...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

func newCluster(t *testing.T, o Options) *Cluster {
	t.Helper()
	NeedRoot(t)
	o.Binary = troikaBin
	return New(t, o)
}

// userIDs returns n account ids.
func userIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%04d", i)
	}
	return ids
}

// importUsers creates the accounts through node n's admin API, password
// sipptest.APIPassword(id) (sipptest.APIUsers).
func importUsers(t *testing.T, n *Node, ids []string) {
	t.Helper()
	accounts := make([]admin.Account, len(ids))
	for i, id := range ids {
		accounts[i] = admin.Account{ID: id, Password: sipptest.APIPassword(id)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Admin().ImportAccounts(ctx, accounts); err != nil {
		t.Fatalf("import accounts through %s: %v", n.Name, err)
	}
	// A follower that has not applied the import yet answers 403 (no such
	// account): wait until every running node has.
	for _, m := range n.c.Running() {
		if err := n.c.WaitCaughtUp(m, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

func followerOf(c *Cluster, leader *Node) *Node {
	for _, n := range c.Nodes {
		if n != leader {
			return n
		}
	}
	return nil
}

// Three nodes in their namespaces form one raft cluster; a hundred phones
// in the client namespace register through node 2's address, over the
// bridge; every node lists every binding, with the client's address as
// source. The cluster ports run TLS (the harness's certificates).
func TestClusterInNamespaces(t *testing.T) {
	sipptest.Need(t)
	c := newCluster(t, Options{})
	leader := mustLeader(t, c, 10*time.Second)
	leaders := 0
	for _, n := range c.Nodes {
		s, err := n.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if s.Cluster.State == "leader" {
			leaders++
		}
		if v := s.Voters(); v != 3 {
			t.Errorf("%s sees %d voters, want 3: %+v", n.Name, v, s.Cluster.Servers)
		}
		if s.Cluster.LeaderID != leader.Name {
			t.Errorf("%s names %s the leader, want %s", n.Name, s.Cluster.LeaderID, leader.Name)
		}
	}
	if leaders != 1 {
		t.Errorf("%d nodes say they lead, want 1", leaders)
	}
	t.Logf("leader %s, %.2f s after setup", leader.Name, time.Since(c.started).Seconds())

	const users = 100
	ids := userIDs(users)
	importUsers(t, c.Nodes[0], ids)
	n2 := c.Nodes[1]
	res := mustLoad(t, c, RegisterLoad{Target: n2.SIPAddr(), Users: ids, Total: users, Rate: 100}).Wait()
	t.Log(res.Summary())
	if res.OK != users || res.Failed != 0 {
		t.Fatalf("registering through %s: %s\n%s", n2.Name, res.Summary(), res.Errors)
	}
	for _, n := range c.Nodes {
		if _, err := n.WaitBindings(users, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		regs, err := n.Admin().Registrations(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range regs {
			if src, _, _ := strings.Cut(r.Source, ":"); src != c.Client.Addr.String() || !strings.Contains(r.Ingress, n2.Addr.String()) {
				t.Fatalf("%s: binding %+v: want source %s, ingress on %s", n.Name, r, c.Client.Addr, n2.Addr)
			}
		}
	}
	if d := c.DoubleHolders(); len(d) != 0 {
		t.Errorf("double holders: %v", d)
	}
	// The harness's certificates: the cluster ports ran TLS only.
	for _, n := range c.Nodes {
		tlsConns := nodeMetric(t, n, `troika_cluster_conns_accepted_total{transport="tls"}`)
		plain := nodeMetric(t, n, `troika_cluster_conns_accepted_total{transport="plaintext"}`)
		if tlsConns == 0 || plain != 0 {
			t.Errorf("%s accepted %v TLS and %v plaintext cluster connections: want TLS only", n.Name, tlsConns, plain)
		}
	}
}

// mustLeader waits up to timeout for a leader among nodes (none: the
// running ones) and fails the test without one.
func mustLeader(t *testing.T, c *Cluster, timeout time.Duration, nodes ...*Node) *Node {
	t.Helper()
	leader, err := c.WaitLeader(timeout, nodes...)
	if err != nil {
		t.Fatal(err)
	}
	return leader
}

func mustLoad(t *testing.T, c *Cluster, l RegisterLoad) *Load {
	t.Helper()
	ld, err := c.StartRegisters(l)
	if err != nil {
		t.Fatal(err)
	}
	return ld
}

// cutWhenSteady waits until load is steady (60 successful REGISTERs),
// then cuts n off from the other nodes: the partition and when it began.
func cutWhenSteady(t *testing.T, c *Cluster, load *Load, n *Node) (*Partition, time.Time) {
	t.Helper()
	if err := load.WaitOK(60, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	p, err := c.Partition(n)
	if err != nil {
		t.Fatal(err)
	}
	return p, time.Now()
}

// The leader is SIGKILLed under a steady REGISTER load through a
// follower: the survivors elect a new leader and the follower keeps
// registering. The killed node is then started again, from its data
// directory, through the binary-swap hook with a copy of the binary at
// another path, and catches up. Then the new leader is frozen (SIGSTOP)
// and thawed, and a running follower is swapped to the other binary
// gracefully (SIGTERM): each time the cluster has a leader again and the
// node catches up.
func TestKillAndRestart(t *testing.T) {
	sipptest.Need(t)
	c := newCluster(t, Options{})
	leader := mustLeader(t, c, 10*time.Second)
	target := followerOf(c, leader)
	ids := userIDs(100)
	importUsers(t, target, ids)
	load := mustLoad(t, c, RegisterLoad{Name: "steady", Target: target.SIPAddr(), Users: ids, Rate: 50, Duration: 12 * time.Second})
	if err := load.WaitOK(200, 10*time.Second); err != nil { // steady before the kill
		t.Fatal(err)
	}

	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	survivors := c.Others(leader)
	newLeader := mustLeader(t, c, 20*time.Second, survivors...)
	t.Logf("leader %s killed; %s leads after %.3f s (as seen by polling every 50 ms)", leader.Name, newLeader.Name, time.Since(killed).Seconds())

	res := load.Wait()
	t.Log(res.Summary())
	if first, ok := res.FirstOKAfter(killed); ok {
		ok2, failed, _ := res.Between(killed, res.End)
		t.Logf("first successful REGISTER through %s %.3f s after the kill; after the kill: %d ok, %d failed", target.Name, first.Sub(killed).Seconds(), ok2, failed)
	}
	if ok, _, _ := res.Between(killed.Add(3*time.Second), res.End); ok == 0 {
		t.Fatalf("no successful REGISTER through %s from 3 s after the kill on: %s\n%s", target.Name, res.Summary(), res.Errors)
	}
	for _, n := range survivors {
		if _, err := n.WaitBindings(len(ids), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	// Restart the killed node with "another" binary: a copy at a new path.
	other := filepath.Join(t.TempDir(), "troika-next")
	copyFile(t, troikaBin, other)
	restart := time.Now()
	if err := leader.SwapBinary(other, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitCaughtUp(leader, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s restarted and caught up in %.3f s", leader.Name, time.Since(restart).Seconds())
	if _, err := leader.WaitBindings(len(ids), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if log, _ := os.ReadFile(leader.LogPath); !strings.Contains(string(log), other+" agent") {
		t.Errorf("%s's log does not show the swapped binary %s", leader.Name, other)
	}

	// SIGSTOP the current leader: the others elect one of them; SIGCONT:
	// it rejoins and catches up.
	frozen := mustLeader(t, c, 10*time.Second)
	if err := frozen.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	next := mustLeader(t, c, 20*time.Second, c.Others(frozen)...)
	t.Logf("leader %s frozen (SIGSTOP); %s leads after %.3f s", frozen.Name, next.Name, time.Since(paused).Seconds())
	if err := frozen.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitCaughtUp(frozen, 20*time.Second); err != nil {
		t.Fatal(err)
	}

	// A rolling-upgrade step on a running follower: SIGTERM, wait for the
	// exit, start the other binary.
	f := followerOf(c, next)
	if err := f.SwapBinary(other, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitCaughtUp(f, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	mustLeader(t, c, 10*time.Second)
}

// startBackground starts a command; the channel closes when it exits.
func startBackground(t *testing.T, name string, args ...string) chan struct{} {
	t.Helper()
	cmd := osexec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	return done
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// The leader is cut off from the other nodes (the client still reaches
// everyone): the majority elects a new leader and keeps registering; a
// REGISTER through the isolated node fails with 503; after the heal the
// isolated node catches up and registers again.
func TestPartition(t *testing.T) {
	sipptest.Need(t)
	c := newCluster(t, Options{})
	leader := mustLeader(t, c, 10*time.Second)
	majority := c.Others(leader)
	ids := userIDs(60)
	importUsers(t, leader, ids)
	steady := mustLoad(t, c, RegisterLoad{Name: "majority", Target: majority[0].SIPAddr(), Users: ids[:40], Rate: 20, Duration: 22 * time.Second})
	p, cut := cutWhenSteady(t, c, steady, leader)
	newLeader := mustLeader(t, c, 20*time.Second, majority...)
	t.Logf("%s isolated; the majority elected %s after %.3f s", leader.Name, newLeader.Name, time.Since(cut).Seconds())

	isolated := mustLoad(t, c, RegisterLoad{Name: "isolated", Target: leader.SIPAddr(), Users: ids[40:], Total: 10, Rate: 10}).Wait()
	t.Log(isolated.Summary())
	if isolated.OK != 0 || isolated.Failed != 10 || isolated.Failures["503"] != 10 {
		t.Errorf("REGISTERs through the isolated %s: %s; want 10 failed with 503\n%s", leader.Name, isolated.Summary(), isolated.Errors)
	}
	if s, err := leader.Status(context.Background()); err == nil {
		t.Logf("the isolated %s says: state %s, leader %q, term %d", leader.Name, s.Cluster.State, s.Cluster.LeaderID, s.Cluster.Term)
	}

	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	if err := c.WaitCaughtUp(leader, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s caught up %.3f s after the heal", leader.Name, time.Since(healed).Seconds())
	// Cut off, it said it was out of step (and took no dispatched SIP)
	// until it caught up after the heal.
	testkit.WaitFor(t, 10*time.Second, leader.Name+" in step again", func() bool {
		log, _ := os.ReadFile(leader.LogPath)
		out := strings.Index(string(log), "out of step: no raft leader")
		back := strings.LastIndex(string(log), "in step again")
		return out >= 0 && back > out
	})
	res := steady.Wait()
	t.Log(res.Summary())
	if first, ok := res.FirstOKAfter(cut); ok {
		_, failed, _ := res.Between(cut, healed)
		t.Logf("through %s: first success %.3f s after the partition, %d failed while it lasted", majority[0].Name, first.Sub(cut).Seconds(), failed)
	}
	if ok, _, _ := res.Between(cut, healed); ok == 0 {
		t.Errorf("no successful REGISTER through the majority while partitioned: %s", res.Summary())
	}
	if _, err := leader.WaitBindings(40, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	again := mustLoad(t, c, RegisterLoad{Name: "healed", Target: leader.SIPAddr(), Users: ids[40:], Total: 20, Rate: 20}).Wait()
	t.Log(again.Summary())
	if again.OK != 20 {
		t.Fatalf("REGISTERs through %s after the heal: %s\n%s", leader.Name, again.Summary(), again.Errors)
	}
	for _, n := range c.Nodes {
		if _, err := n.WaitBindings(60, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if d := c.DoubleHolders(); len(d) != 0 {
		t.Errorf("double holders: %v", d)
	}
}

// The double-holder checker, on real namespaces: an address moved by hand
// from n1 to n2 (delete, then add) is a clean handover; the same address
// then added in n1 again while n2 holds it is caught, at the right time,
// naming both holders. No troika process runs.
func TestAddressChecker(t *testing.T) {
	c := newCluster(t, Options{NoStart: true})
	vip := c.SpareAddr(0)
	n1, n2 := c.Nodes[0], c.Nodes[1]

	// The sampler sees what `ip -o addr` sees.
	out, err := n1.Exec(context.Background(), "ip", "-o", "addr")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHolders(n1.Addr, time.Second, n1.Name); err != nil {
		t.Fatal(err)
	}
	tl := c.AddrTimeline()
	for _, a := range tl[len(tl)-1].Held[n1.Name] {
		if !strings.Contains(out, " "+a.Prefix.String()+" ") {
			t.Errorf("the sampler lists %s in %s, ip -o addr does not:\n%s", a.Prefix, n1.NS, out)
		}
	}
	if got, want := len(tl[len(tl)-1].Held[n1.Name]), strings.Count(out, " inet"); got != want {
		t.Errorf("the sampler lists %d addresses in %s, ip -o addr %d:\n%s", got, n1.NS, want, out)
	}

	// Clean handover.
	if err := n1.AddAddr(vip); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHolders(vip, time.Second, n1.Name); err != nil {
		t.Fatal(err)
	}
	mustSamples(t, c, 4) // n1 holds it for a while
	if err := n1.DelAddr(vip); err != nil {
		t.Fatal(err)
	}
	mustSamples(t, c, 2) // then nobody
	if err := n2.AddAddr(vip); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHolders(vip, time.Second, n2.Name); err != nil {
		t.Fatal(err)
	}
	mustSamples(t, c, 4)
	if d := c.DoubleHolders(); len(d) != 0 {
		t.Fatalf("a clean handover reported as double holders: %v", d)
	}
	holds := Ownership(c.AddrTimeline(), vip)
	if len(holds) != 2 || holds[0].Host != n1.Name || holds[1].Host != n2.Name || holds[0].Open || !holds[1].Open || holds[1].From.Before(holds[0].To) {
		t.Fatalf("ownership of %s: %+v, want n1 then n2", vip, holds)
	}

	// Double holder.
	before := time.Now()
	if err := n1.AddAddr(vip); err != nil {
		t.Fatal(err)
	}
	mustSamples(t, c, 6) // two holders for about 300 ms
	if err := n1.DelAddr(vip); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	mustSamples(t, c, 3)
	d := c.DoubleHolders()
	if len(d) < 3 {
		t.Fatalf("300 ms of two holders gave %d double-holder samples, want about 6: %v", len(d), d)
	}
	for _, x := range d {
		if x.Addr != vip || len(x.Holders) != 2 || x.Holders[0] != n1.Name || x.Holders[1] != n2.Name || x.At.Before(before) || x.At.After(after) {
			t.Fatalf("unexpected double holder %v (window %s..%s)", x, before.Format("15:04:05.000"), after.Format("15:04:05.000"))
		}
	}
	t.Logf("caught %d double-holder samples, first %v", len(d), d[0])
	if err := c.WaitHolders(vip, time.Second, n2.Name); err != nil {
		t.Fatal(err)
	}
}

// The checker on hand-made rounds: loopback and link-local addresses are
// every namespace's own and never count.
func TestCheckSingleHolderRounds(t *testing.T) {
	a := func(s string) NSAddr { return NSAddr{Prefix: netip.MustParsePrefix(s)} }
	t0 := time.Unix(1000, 0)
	rounds := []Round{
		{At: t0, Held: map[string][]NSAddr{"n1": {a("127.0.0.1/8"), a("10.0.0.1/24"), a("10.0.0.100/32"), a("fe80::1/64")}, "n2": {a("127.0.0.1/8"), a("10.0.0.2/24"), a("fe80::1/64")}}},
		{At: t0.Add(50 * time.Millisecond), Held: map[string][]NSAddr{"n1": {a("10.0.0.1/24")}, "n2": {a("10.0.0.2/24")}}},
		{At: t0.Add(100 * time.Millisecond), Held: map[string][]NSAddr{"n1": {a("10.0.0.1/24")}, "n2": {a("10.0.0.2/24"), a("10.0.0.100/32")}}},
		{At: t0.Add(150 * time.Millisecond), Held: map[string][]NSAddr{"n1": {a("10.0.0.1/24"), a("10.0.0.100/32")}, "n2": {a("10.0.0.2/24"), a("10.0.0.100/32")}, "n3": {a("10.0.0.100/32")}}},
	}
	d := CheckSingleHolder(rounds)
	if len(d) != 1 || d[0].Addr != netip.MustParseAddr("10.0.0.100") || strings.Join(d[0].Holders, ",") != "n1,n2,n3" || !d[0].At.Equal(rounds[3].At) {
		t.Fatalf("CheckSingleHolder = %v", d)
	}
	if d := CheckSingleHolder(rounds[:3]); len(d) != 0 {
		t.Fatalf("clean handover: %v", d)
	}
	h := Ownership(rounds, netip.MustParseAddr("10.0.0.100"))
	if len(h) != 4 || h[0].Host != "n1" || !h[0].To.Equal(rounds[1].At) || h[0].Open || h[1].Host != "n2" || !h[1].Open {
		t.Fatalf("Ownership = %+v", h)
	}
}

// Close leaves no namespace, interface, process or lock file of the run
// behind; Sweep removes what a crashed run left (a namespace with a
// process in it and no live lock) and leaves live runs alone.
func TestTeardownLeavesNothing(t *testing.T) {
	NeedRoot(t)
	// A crashed run's leftovers: a namespace with a process in it and a
	// lock file nobody holds. (Made under the run's lock, released at the
	// end, so that a Sweep from a test binary running in parallel cannot
	// catch it half made.)
	fake := &Cluster{}
	if err := fake.lockRun(); err != nil {
		t.Fatal(err)
	}
	crashed := fake.ID
	if err := ip("netns", "add", crashed+"-n1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteNetns(crashed + "-n1") })
	sleeper := startBackground(t, "ip", "netns", "exec", crashed+"-n1", "sleep", "300")
	testkit.WaitFor(t, 5*time.Second, "the stand-in process to enter its namespace", func() bool {
		out, _ := run(context.Background(), "ip", "netns", "pids", crashed+"-n1")
		return strings.TrimSpace(out) != ""
	})
	fake.lock.Close() // the run "crashes"

	c := New(t, Options{Binary: troikaBin})
	id, dir := c.ID, c.Dir
	if nss, _ := netnsNames(); slicesHasPrefix(nss, crashed+"-") {
		t.Errorf("New's Sweep left the crashed run's namespace: %v", nss)
	}
	select {
	case <-sleeper:
	case <-time.After(5 * time.Second):
		t.Errorf("the process in the crashed run's namespace survived the sweep")
	}
	if _, err := os.Stat(filepath.Join(lockDir, crashed+".lock")); err == nil {
		t.Errorf("the crashed run's lock file remains")
	}
	// A live run is left alone by a Sweep from someone else.
	if err := Sweep(); err != nil {
		t.Fatal(err)
	}
	if nss, _ := netnsNames(); !slicesHasPrefix(nss, id+"-") {
		t.Fatalf("Sweep removed the live run %s: %v", id, nss)
	}
	var pids []int
	for _, n := range c.Nodes {
		pids = append(pids, n.PID())
	}
	c.Close()

	nss, err := run(context.Background(), "ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(nss, id) {
		t.Errorf("namespaces of run %s remain:\n%s", id, nss)
	}
	links, err := run(context.Background(), "ip", "-o", "link")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(links, id) {
		t.Errorf("interfaces of run %s remain in the root namespace:\n%s", id, links)
	}
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmdline), dir) {
				t.Errorf("node process %d survives: %q", pid, cmdline)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(lockDir, id+".lock")); err == nil {
		t.Errorf("the lock file of run %s remains", id)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("the run directory %s remains after a passing run", dir)
	}
}

// mustSamples waits until the address sampler has taken n more rounds.
func mustSamples(t *testing.T, c *Cluster, n int) {
	t.Helper()
	if err := c.WaitSamples(n); err != nil {
		t.Fatal(err)
	}
}
