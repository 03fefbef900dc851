package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/cluster"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

const drainTestToken = "drain-test-token-0123456789"

func freeAddr(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func portOf(t *testing.T, hostport string) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(hostport)
	var n int
	fmt.Sscan(p, &n)
	return n
}

// testCluster starts three nodes in this process on loopback: static
// peers, no address management.
type testCluster struct {
	nodes  []*Node
	cancel []context.CancelFunc
	cfgs   []Config
}

func startTestCluster(t *testing.T) *testCluster {
	t.Helper()
	var peers, gossip []string
	for i := range 3 {
		peers = append(peers, fmt.Sprintf("n%d=%s", i+1, freeAddr(t, "tcp")))
		gossip = append(gossip, freeAddr(t, "tcp"))
	}
	tc := &testCluster{}
	dir := t.TempDir()
	for i := range 3 {
		_, bind, _ := strings.Cut(peers[i], "=")
		sip := freeAddr(t, "udp")
		tc.cfgs = append(tc.cfgs, Config{
			NodeID: fmt.Sprintf("n%d", i+1), DataDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			Cluster: ClusterConfig{Bind: bind, Key: "drain-test-cluster-key-0123456789", Peers: peers,
				GossipBind: gossip[i], GossipJoin: gossip},
			SIP:   SIPConfig{Addresses: []string{"127.0.0.1"}, UDPPorts: []int{portOf(t, sip)}, TCPPorts: []int{}},
			Admin: AdminConfig{Listen: "127.0.0.1:0", Token: drainTestToken},
		})
	}
	tc.nodes, tc.cancel = startNodes(t, tc.cfgs)
	tc.waitLeader(t, tc.nodes...)
	// Every node healthy in every node's gossip.
	testkit.WaitFor(t, 15*time.Second, "every node healthy in gossip", func() bool {
		for _, n := range tc.nodes {
			ok := 0
			for _, m := range n.gossip.Members() {
				if m.State == cluster.MemberAlive && m.Meta.Health == cluster.HealthOK {
					ok++
				}
			}
			if ok != 3 {
				return false
			}
		}
		return true
	})
	return tc
}

// waitLeader waits until the given nodes agree on a leader among them.
func (tc *testCluster) waitLeader(t *testing.T, nodes ...*Node) *Node {
	t.Helper()
	var leader *Node
	testkit.WaitFor(t, 15*time.Second, "an agreed leader", func() bool {
		id := ""
		for _, n := range nodes {
			l, _ := n.cluster.Leader()
			if l == "" || (id != "" && l != id) {
				return false
			}
			id = l
		}
		for _, n := range nodes {
			if n.cfg.NodeID == id && n.cluster.IsLeader() {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

func (tc *testCluster) others(not *Node) []*Node {
	var out []*Node
	for _, n := range tc.nodes {
		if n != not {
			out = append(out, n)
		}
	}
	return out
}

func drainOver(ctx context.Context, n *Node, req admin.DrainRequest) ([]string, string, error) {
	var lines []string
	var mu sync.Mutex
	summary, err := admin.NewClient(n.AdminAddr(), drainTestToken).Drain(ctx, req, func(l string) {
		mu.Lock()
		lines = append(lines, l)
		mu.Unlock()
	})
	mu.Lock()
	defer mu.Unlock()
	return lines, summary, err
}

func hasLine(lines []string, sub string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, sub) })
}

// Three nodes in one process. A drain of a follower with a call ringing
// there times out and puts the node back in service. The leader's drain,
// requested twice at once, hands leadership over, streams every step to
// both requests, and the node stops cleanly (Wait returns nil). A drain
// that would leave fewer voters than a quorum is refused, naming --force.
func TestDrain(t *testing.T) {
	tc := startTestCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader := tc.waitLeader(t, tc.nodes...)
	follower := tc.others(leader)[0]

	// A ringing call of the follower's, in the replicated state.
	res, err := leader.Propose(ctx, &fsm.StartCall{ID: "ringing-1", Direction: fsm.DirOutgoing, Account: "a", CLD: "1",
		MaxSeconds: 60, Now: time.Now().UnixMilli(), Node: follower.cfg.NodeID})
	if err != nil || res.Err != nil {
		t.Fatalf("StartCall: %v %v", err, res.Err)
	}
	testkit.WaitFor(t, 5*time.Second, "the call on the follower", func() bool { r, _ := follower.callsHere(); return r == 1 })
	lines, _, err := drainOver(ctx, follower, admin.DrainRequest{Timeout: "1s"})
	var de *admin.DrainError
	if !errors.As(err, &de) || !strings.Contains(de.Msg, "1 still ringing") || !strings.Contains(de.Msg, "back in service") ||
		!strings.Contains(de.Msg, "--force") {
		t.Fatalf("drain with a ringing call: %v, lines %q", err, lines)
	}
	if !hasLine(lines, "new INVITEs now get 503") || !hasLine(lines, "calls: 1 ringing") {
		t.Errorf("progress lines: %q", lines)
	}
	if follower.sip.Draining() || follower.drain.health() != cluster.HealthOK {
		t.Fatal("the follower is not back in service after the failed drain")
	}
	testkit.WaitFor(t, 5*time.Second, "the leader to see the follower ok again", func() bool {
		for _, m := range leader.gossip.Members() {
			if m.ID == follower.cfg.NodeID {
				return m.Meta.Health == cluster.HealthOK
			}
		}
		return false
	})
	if res, err := leader.Propose(ctx, &fsm.EndCall{ID: "ringing-1", DisconnectAt: time.Now().UnixMilli(), Cause: 487,
		DisconnectedBy: "caller"}); err != nil || res.Err != nil {
		t.Fatalf("EndCall: %v %v", err, res.Err)
	}

	// The leader's drain, requested twice.
	type result struct {
		lines   []string
		summary string
		err     error
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	request := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, s, err := drainOver(ctx, leader, admin.DrainRequest{})
			results[i] = result{l, s, err}
		}()
	}
	request(0)
	// The second request once the first one's drain runs: it follows it.
	testkit.WaitFor(t, 10*time.Second, "the first request's drain to run", func() bool {
		leader.drain.mu.Lock()
		defer leader.drain.mu.Unlock()
		return leader.drain.run != nil
	})
	request(1)
	wg.Wait()
	for i, r := range results {
		if r.err != nil || !strings.Contains(r.summary, "left the cluster") || !strings.Contains(r.summary, "exits with status 0") {
			t.Fatalf("drain request %d: %v; summary %q; lines %q", i+1, r.err, r.summary, r.lines)
		}
		for _, want := range []string{"started (timeout 2m0s)", "health: draining", "addresses: none managed here",
			"leadership: this node leads; handing it over", "leads now", "calls: none ringing here", "left gossip"} {
			if !hasLine(r.lines, want) {
				t.Errorf("drain request %d: no progress line with %q in %q", i+1, want, r.lines)
			}
		}
	}
	if !hasLine(results[0].lines, "already draining") && !hasLine(results[1].lines, "already draining") {
		t.Errorf("neither request was told a drain was already running: %q / %q", results[0].lines, results[1].lines)
	}
	t.Logf("drain of the leader %s:\n  %s\n  drained: %s", leader.cfg.NodeID, strings.Join(results[0].lines, "\n  "), results[0].summary)
	done := make(chan error, 1)
	go func() { done <- leader.Wait() }()
	testkit.WaitNoError(t, done, 20*time.Second, "the drained node's Wait")
	rest := tc.others(leader)
	next := tc.waitLeader(t, rest...)
	t.Logf("%s leads after the drain", next.cfg.NodeID)
	testkit.WaitFor(t, 5*time.Second, "the others to see the drained node as left", func() bool {
		for _, m := range next.gossip.Members() {
			if m.ID == leader.cfg.NodeID {
				return m.State == cluster.MemberLeft
			}
		}
		return false
	})

	// Two of three voters left: draining one more would lose the quorum.
	_, _, err = drainOver(ctx, rest[0], admin.DrainRequest{})
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Msg, "fewer than the 2 raft needs") || !strings.Contains(ae.Msg, "--force") {
		t.Fatalf("drain that loses the quorum: %v, want a 409 naming the quorum and --force", err)
	}
	if rest[0].sip.Draining() || rest[0].drain.health() != cluster.HealthOK {
		t.Fatal("a refused drain changed the node")
	}
	// A bad timeout names the field.
	_, _, err = drainOver(ctx, rest[0], admin.DrainRequest{Timeout: "soon"})
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Field != "timeout" {
		t.Fatalf("bad timeout: %v", err)
	}
}
