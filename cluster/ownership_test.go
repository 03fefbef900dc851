package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// fakeNet is the test's network segment: the addresses on every node's
// interface, with kernel lifetimes, and a checker for two holders at once.
type fakeNet struct {
	mu         sync.Mutex
	addrs      map[string]map[netip.Addr]fakeAddr // node -> its addresses
	crashed    map[string]bool                    // the node's process is gone: its addresses stay until they expire
	announced  map[string]int                     // node/ip -> announcements
	violations []string
}

type fakeAddr struct {
	prefix  netip.Prefix
	expires time.Time // zero: forever
}

func newFakeNet() *fakeNet {
	return &fakeNet{addrs: map[string]map[netip.Addr]fakeAddr{}, crashed: map[string]bool{}, announced: map[string]int{}}
}

// holders returns the nodes holding ip now (unexpired).
func (f *fakeNet) holders(ip netip.Addr) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holdersLocked(ip, time.Now())
}

func (f *fakeNet) holdersLocked(ip netip.Addr, now time.Time) []string {
	var out []string
	for node, m := range f.addrs {
		if a, ok := m[ip]; ok && (a.expires.IsZero() || now.Before(a.expires)) {
			out = append(out, node)
		}
	}
	slices.Sort(out)
	return out
}

// check records every address held by two nodes at once.
func (f *fakeNet) check() {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	seen := map[netip.Addr]bool{}
	for _, m := range f.addrs {
		for ip := range m {
			if seen[ip] {
				continue
			}
			seen[ip] = true
			if h := f.holdersLocked(ip, now); len(h) > 1 {
				f.violations = append(f.violations, fmt.Sprintf("%s held by %v at %s", ip, h, now.Format("15:04:05.000")))
			}
		}
	}
}

func (f *fakeNet) crash(node string) {
	f.mu.Lock()
	f.crashed[node] = true
	f.mu.Unlock()
}

type fakeOps struct {
	f    *fakeNet
	node string
}

var errCrashed = fmt.Errorf("process crashed")

func (o fakeOps) Add(p netip.Prefix, lifetime time.Duration) error {
	f := o.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.crashed[o.node] {
		return errCrashed
	}
	if f.addrs[o.node] == nil {
		f.addrs[o.node] = map[netip.Addr]fakeAddr{}
	}
	a := fakeAddr{prefix: p}
	if lifetime > 0 {
		a.expires = time.Now().Add(lifetime)
	}
	f.addrs[o.node][p.Addr()] = a
	if h := f.holdersLocked(p.Addr(), time.Now()); len(h) > 1 {
		f.violations = append(f.violations, fmt.Sprintf("%s added by %s while held by %v", p.Addr(), o.node, h))
	}
	return nil
}

func (o fakeOps) Del(p netip.Prefix) error {
	f := o.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.crashed[o.node] {
		return errCrashed
	}
	delete(f.addrs[o.node], p.Addr())
	return nil
}

func (o fakeOps) List() ([]netip.Prefix, error) {
	f := o.f
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Prefix
	now := time.Now()
	for ip, a := range f.addrs[o.node] {
		if a.expires.IsZero() || now.Before(a.expires) {
			out = append(out, a.prefix)
		} else {
			delete(f.addrs[o.node], ip)
		}
	}
	return out, nil
}

func (o fakeOps) Announce(ip netip.Addr) error {
	f := o.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.announced[o.node+"/"+ip.String()]++
	return nil
}

// fakeSockets records which addresses have their SIP sockets open, and
// refuses to open them on an address the node does not have.
type fakeSockets struct {
	f    *fakeNet
	node string
	mu   sync.Mutex
	open map[string]string // ip -> ports
}

func (s *fakeSockets) ServeAddress(ip string, extra *fsm.AliasPorts) error {
	if h := s.f.holders(netip.MustParseAddr(ip)); !slices.Contains(h, s.node) {
		return fmt.Errorf("bind %s: cannot assign requested address", ip)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open == nil {
		s.open = map[string]string{}
	}
	s.open[ip] = portsKey(extra)
	return nil
}

func (s *fakeSockets) CloseAddress(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, ip)
}

func (s *fakeSockets) isOpen(ip string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.open[ip]
	return p, ok
}

// ownedCluster is a testCluster whose nodes each run gossip and an Owner
// on the fake network.
type ownedCluster struct {
	*testCluster
	net     *fakeNet
	gossips []*Gossip
	owners  []atomic.Pointer[Owner]
	sockets []*fakeSockets
	cancel  []context.CancelFunc
	timing  LeaseTiming
}

const testVIP = "10.0.0.100"

func newOwnedCluster(t *testing.T) *ownedCluster {
	oc := &ownedCluster{net: newFakeNet(), owners: make([]atomic.Pointer[Owner], 3)}
	// ready[i] is closed once node i's owner exists: it may lead before.
	ready := []chan struct{}{make(chan struct{}), make(chan struct{}), make(chan struct{})}
	oc.testCluster = newCluster(t, 3, func(c *Config) {
		i := int(c.NodeID[1] - '1')
		c.OnLeader = func(ctx context.Context) {
			select {
			case <-ready[i]:
				oc.owners[i].Load().Lead(ctx)
			case <-ctx.Done():
			}
		}
	})
	oc.timing = LeaseTiming{Lease: time.Second, LeaderLeaseTimeout: oc.nodes[0].cfg.LeaderLeaseTimeout, Margin: 250 * time.Millisecond}
	var addrs []string
	for i, tn := range oc.nodes {
		g, err := StartGossip(GossipConfig{NodeID: tn.cfg.NodeID, BindAddr: "127.0.0.1:0", Join: slices.Clone(addrs), Key: oc.key,
			Meta: NodeMeta{Version: "test", Health: HealthOK, Addrs: true}, Logger: oc.log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Shutdown)
		addrs = append(addrs, g.Addr())
		oc.gossips = append(oc.gossips, g)
		sock := &fakeSockets{f: oc.net, node: tn.cfg.NodeID}
		oc.sockets = append(oc.sockets, sock)
		o, err := NewOwner(OwnerConfig{
			VIPs: []netip.Prefix{netip.MustParsePrefix(testVIP + "/24")}, Timing: oc.timing, Settle: 3 * time.Second,
			GARPInterval: 50 * time.Millisecond, Addrs: fakeOps{f: oc.net, node: tn.cfg.NodeID}, Sockets: sock, Logger: oc.log,
		}, tn.node, tn.state, g)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); o.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		oc.cancel = append(oc.cancel, cancel)
		oc.owners[i].Store(o)
		close(ready[i])
	}
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				oc.net.check()
			}
		}
	}()
	t.Cleanup(func() { close(stop) })
	return oc
}

// waitHeld waits until ip is held by exactly one node (not in not) with
// its sockets open, and returns it.
func (oc *ownedCluster) waitHeld(t *testing.T, ip string, timeout time.Duration, not ...string) string {
	t.Helper()
	var holder string
	testkit.WaitFor(t, timeout, ip+" held by one node", func() bool {
		h := oc.net.holders(netip.MustParseAddr(ip))
		if len(h) != 1 || slices.Contains(not, h[0]) {
			return false
		}
		holder = h[0]
		_, open := oc.sockets[int(holder[1]-'1')].isOpen(ip)
		return open
	})
	return holder
}

// keptFrom checks that node does not hold ip at any time during d (the
// two-holder checker covers overlaps), and that ip is then held by want
// only.
func (oc *ownedCluster) keptFrom(t *testing.T, d time.Duration, ip, node, want, when string) {
	t.Helper()
	addr := netip.MustParseAddr(ip)
	testkit.Holds(t, d, when+", "+node+" not holding "+ip, func() bool {
		return !slices.Contains(oc.net.holders(addr), node)
	})
	if h := oc.net.holders(addr); len(h) != 1 || h[0] != want {
		t.Fatalf("%s, %s is held by %v, want %s only", when, ip, h, want)
	}
}

func (oc *ownedCluster) noViolations(t *testing.T) {
	t.Helper()
	oc.net.mu.Lock()
	defer oc.net.mu.Unlock()
	if len(oc.net.violations) > 0 {
		t.Fatalf("two holders at once: %v", oc.net.violations)
	}
}

// The leader places the virtual IP and an alias on two different nodes;
// each holder adds the address, opens its sockets and announces it. When
// the virtual IP's holder crashes (its address stays on its interface
// until the kernel lifetime ends it), the address moves to another node,
// never held by two at once; the alias stays where it was.
func TestOwnershipPlacesAndFailsOver(t *testing.T) {
	oc := newOwnedCluster(t)
	li := oc.waitLeader()
	const alias = "10.0.0.150"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := oc.nodes[li].node.Propose(ctx, &fsm.PutAlias{Alias: fsm.Alias{IP: alias, Ports: fsm.AliasPorts{UDP: []int{5070}}}}); err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	vipHolder := oc.waitHeld(t, testVIP, 15*time.Second)
	aliasHolder := oc.waitHeld(t, alias, 15*time.Second)
	t.Logf("leader n%d; %s on %s, %s on %s", li+1, testVIP, vipHolder, alias, aliasHolder)
	if vipHolder == aliasHolder {
		t.Errorf("spread placement put the virtual IP and the alias on the same node %s", vipHolder)
	}
	if p, _ := oc.sockets[int(aliasHolder[1]-'1')].isOpen(alias); p != "[5070] [] []" {
		t.Errorf("alias sockets opened with ports %q", p)
	}
	oc.net.mu.Lock()
	if n := oc.net.announced[vipHolder+"/"+testVIP]; n < 1 {
		t.Errorf("%s announced %s %d times", vipHolder, testVIP, n)
	}
	oc.net.mu.Unlock()
	for i := range oc.nodes {
		st := AddressStatuses(oc.owners[i].Load(), oc.nodes[i].state)
		for _, s := range st {
			if s.HeldByMe != (s.Node == oc.nodes[i].cfg.NodeID) || s.Epoch == 0 {
				t.Errorf("n%d status: %+v", i+1, s)
			}
		}
	}

	// Crash the virtual IP's holder.
	vi := int(vipHolder[1] - '1')
	oc.net.crash(vipHolder)
	oc.cancel[vi]()
	oc.gossips[vi].Shutdown()
	crash := time.Now()
	oc.stop(vi)
	next := oc.waitHeld(t, testVIP, 15*time.Second, vipHolder)
	t.Logf("%s crashed; %s took %s after %s (handover wait %s)", vipHolder, next, testVIP, time.Since(crash).Round(time.Millisecond), oc.timing.HandoverWait())
	if h := oc.net.holders(netip.MustParseAddr(alias)); vipHolder != aliasHolder && (len(h) != 1 || h[0] != aliasHolder) {
		t.Errorf("the alias moved from the healthy %s: %v", aliasHolder, h)
	}
	oc.noViolations(t)
}

// A holder that hears from no leader gives its addresses up within its
// lease; the others move them only after the handover wait: never two
// holders.
func TestOwnershipFencesWithoutContact(t *testing.T) {
	oc := newOwnedCluster(t)
	oc.waitLeader()
	holder := oc.waitHeld(t, testVIP, 15*time.Second)
	hi := int(holder[1] - '1')
	// Its raft stops: no contact with any leader, as in a partition; its
	// holder loop keeps running and must fence itself.
	cut := time.Now()
	oc.gossips[hi].Shutdown()
	oc.stop(hi)
	testkit.WaitFor(t, 5*time.Second, holder+" gives up "+testVIP, func() bool {
		return !slices.Contains(oc.net.holders(netip.MustParseAddr(testVIP)), holder)
	})
	dropped := time.Since(cut)
	t.Logf("%s gave %s up %s after losing contact (lease %s)", holder, testVIP, dropped.Round(time.Millisecond), oc.timing.Lease)
	if dropped > oc.timing.Lease+500*time.Millisecond {
		t.Errorf("%s held on for %s without contact", holder, dropped)
	}
	next := oc.waitHeld(t, testVIP, 15*time.Second, holder)
	t.Logf("%s holds it %s after the cut", next, time.Since(cut).Round(time.Millisecond))
	oc.noViolations(t)
}
