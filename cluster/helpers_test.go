package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// testLogWriter sends log lines to t.Log until the test ends.
type testLogWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// testLogger logs at Info (TROIKA_TEST_LOG=debug or warn to change) into
// the test's log, shown on failure or with -v.
func testLogger(t testing.TB) *slog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	level := slog.LevelInfo
	switch os.Getenv("TROIKA_TEST_LOG") {
	case "debug":
		level = slog.LevelDebug
	case "trace":
		level = levelTrace
	case "warn":
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// fastTimers makes elections quick but not so quick that -race on a small
// machine flaps.
func fastTimers(c *Config) {
	c.HeartbeatTimeout = 300 * time.Millisecond
	c.ElectionTimeout = 300 * time.Millisecond
	c.LeaderLeaseTimeout = 150 * time.Millisecond
}

type testNode struct {
	cfg   Config
	state *fsm.State
	node  *Node
}

type testCluster struct {
	t     testing.TB
	key   []byte
	log   *slog.Logger
	nodes []*testNode
}

// plainDial dials the plaintext handshake with key, as a node without
// [cluster.tls] does.
func plainDial(key []byte) dialFunc {
	return func(addr string, typ byte, timeout time.Duration) (net.Conn, error) {
		return dialAuth(addr, key, typ, timeout)
	}
}

func newKey(t testing.TB) []byte {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

// newCluster starts n nodes on loopback with a static peer list.
func newCluster(t testing.TB, n int, tune func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, key: newKey(t), log: testLogger(t)}
	var peers []Peer
	lns := make([]net.Listener, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		peers = append(peers, Peer{ID: fmt.Sprintf("n%d", i+1), Addr: ln.Addr().String()})
	}
	for i := range n {
		cfg := Config{
			NodeID:   peers[i].ID,
			DataDir:  t.TempDir(),
			BindAddr: peers[i].Addr,
			Listener: lns[i],
			Key:      c.key,
			Peers:    peers,
			Logger:   c.log,
		}
		fastTimers(&cfg)
		if tune != nil {
			tune(&cfg)
		}
		c.nodes = append(c.nodes, &testNode{cfg: cfg})
	}
	t.Cleanup(c.stopAll)
	for i := range n {
		c.start(i)
	}
	return c
}

// addNode starts one more node with cfg filled in by the cluster's
// defaults (key, logger, data dir, a loopback port).
func (c *testCluster) addNode(id string, tune func(*Config)) int {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := Config{NodeID: id, DataDir: c.t.TempDir(), BindAddr: ln.Addr().String(), Listener: ln, Key: c.key, Logger: c.log}
	fastTimers(&cfg)
	if tune != nil {
		tune(&cfg)
	}
	c.nodes = append(c.nodes, &testNode{cfg: cfg})
	i := len(c.nodes) - 1
	c.start(i)
	return i
}

// start (re)starts node i with a fresh fsm state from its data dir.
func (c *testCluster) start(i int) {
	c.t.Helper()
	tn := c.nodes[i]
	tn.state = fsm.New()
	n, err := Start(context.Background(), tn.cfg, tn.state)
	if err != nil {
		c.t.Fatalf("start %s: %v", tn.cfg.NodeID, err)
	}
	tn.node = n
	tn.cfg.Listener = nil // a restart listens on BindAddr again
}

func (c *testCluster) stop(i int) {
	c.t.Helper()
	tn := c.nodes[i]
	if tn.node == nil {
		return
	}
	if err := tn.node.Shutdown(); err != nil {
		c.t.Errorf("shutdown %s: %v", tn.cfg.NodeID, err)
	}
	tn.node = nil
}

func (c *testCluster) stopAll() {
	var wg sync.WaitGroup
	for _, tn := range c.nodes {
		if tn.node == nil {
			continue
		}
		wg.Add(1)
		go func(n *Node) {
			defer wg.Done()
			_ = n.Shutdown()
		}(tn.node)
		tn.node = nil
	}
	wg.Wait()
}

// waitLeader returns the index of the running node that leads.
func (c *testCluster) waitLeader() int {
	c.t.Helper()
	leader := -1
	testkit.WaitFor(c.t, 15*time.Second, "a leader", func() bool {
		for i, tn := range c.nodes {
			if tn.node != nil && tn.node.IsLeader() {
				leader = i
				return true
			}
		}
		return false
	})
	return leader
}

// newLedCluster starts a 3-node cluster (tuned by tune, as newCluster)
// and waits for its leader; ctx ends after timeout, or with the test.
func newLedCluster(t testing.TB, tune func(*Config), timeout time.Duration) (c *testCluster, ctx context.Context, leader int) {
	t.Helper()
	c = newCluster(t, 3, tune)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return c, ctx, c.waitLeader()
}

// follower returns a running node other than the leader.
func (c *testCluster) follower(leader int) int {
	for i, tn := range c.nodes {
		if i != leader && tn.node != nil {
			return i
		}
	}
	c.t.Fatal("no running follower")
	return -1
}

func nowMS() int64 { return time.Now().UnixMilli() }

func createAccount(ctx context.Context, n *Node, id string) error {
	res, err := n.Propose(ctx, &fsm.CreateAccount{
		Account: fsm.Account{ID: id, Credentials: testkit.Creds(id, "secret-"+id), Billing: fsm.Prepaid, Balance: 10_000_000},
		Now:     nowMS(),
	})
	if err != nil {
		return err
	}
	if res.Err != nil {
		return fmt.Errorf("create account %s refused: %v", id, res.Err)
	}
	return nil
}

// createAccounts creates the accounts prefix0 to prefix<count-1> through
// n, concurrently, and returns their ids.
func createAccounts(ctx context.Context, t testing.TB, n *Node, prefix string, count int) []string {
	t.Helper()
	ids := make([]string, count)
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%d", prefix, i)
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			if err := createAccount(ctx, n, id); err != nil {
				t.Error(err)
			}
		}(ids[i])
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return ids
}

// seedAccount creates account id through n and registers count bindings
// to it through n with workers goroutines: the acknowledged ones are in
// the log it returns.
func seedAccount(ctx context.Context, t testing.TB, n *Node, id string, count, workers int) *ackLog {
	t.Helper()
	if err := createAccount(ctx, n, id); err != nil {
		t.Fatal(err)
	}
	acks := &ackLog{}
	registerMany(ctx, t, n, []string{id}, 0, count, workers, acks)
	return acks
}

// ackedBinding is a binding whose Register was acknowledged.
type ackedBinding struct{ aor, contact string }

// register adds one binding to aor and checks the fsm's answer.
func register(ctx context.Context, n *Node, aor string, seq int) (ackedBinding, error) {
	return registerSlot(ctx, n, aor, seq, seq)
}

// registerSlot registers contact number slot of aor with a REGISTER of its
// own Call-ID (seq): a new binding, or a refresh of slot's binding.
func registerSlot(ctx context.Context, n *Node, aor string, slot, seq int) (ackedBinding, error) {
	now := nowMS()
	contact := fmt.Sprintf("sip:%s-%d@10.1.%d.%d:5060", aor, slot, (slot/250)%250, slot%250)
	res, err := n.Propose(ctx, &fsm.Register{
		AOR:    aor,
		CallID: fmt.Sprintf("call-%s-%d", aor, seq),
		CSeq:   1,
		Now:    now,
		Bindings: []fsm.Binding{{
			Contact:   contact,
			Source:    "192.0.2.10:5060",
			Transport: "udp",
			Ingress:   "udp:127.0.0.2:5060",
			ExpiresAt: now + 3_600_000,
			Q:         -1,
			UserAgent: "cluster-test",
		}},
	})
	if err != nil {
		return ackedBinding{}, err
	}
	if res.Err != nil {
		return ackedBinding{}, fmt.Errorf("register %s refused: %v", contact, res.Err)
	}
	for _, b := range res.Bindings {
		if b.Contact == contact {
			return ackedBinding{aor, contact}, nil
		}
	}
	return ackedBinding{}, fmt.Errorf("register %s: result does not list the new binding", contact)
}

func hasBinding(s *fsm.State, b ackedBinding) bool {
	for _, x := range s.Bindings(b.aor, nowMS()) {
		if x.Contact == b.contact {
			return true
		}
	}
	return false
}

func missing(s *fsm.State, acked []ackedBinding) int {
	m := 0
	for _, b := range acked {
		if !hasBinding(s, b) {
			m++
		}
	}
	return m
}

// ackLog collects acknowledged bindings from many goroutines.
type ackLog struct {
	mu    sync.Mutex
	acked []ackedBinding
}

func (a *ackLog) add(b ackedBinding) {
	a.mu.Lock()
	a.acked = append(a.acked, b)
	a.mu.Unlock()
}

func (a *ackLog) all() []ackedBinding {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]ackedBinding(nil), a.acked...)
}

// registerMany proposes count registers through n with workers goroutines.
func registerMany(ctx context.Context, t testing.TB, n *Node, aors []string, first, count, workers int, log *ackLog) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, count)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range next {
				b, err := register(ctx, n, aors[seq%len(aors)], seq)
				if err != nil {
					errs <- err
					continue
				}
				log.add(b)
			}
		}()
	}
	for seq := first; seq < first+count; seq++ {
		next <- seq
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("register: %v", err)
	}
}
