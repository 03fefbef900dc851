package cluster

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/testkit"
)

func startGossips(t *testing.T, n int, key []byte) []*Gossip {
	t.Helper()
	log := testLogger(t)
	var gs []*Gossip
	var addrs []string
	for i := range n {
		g, err := StartGossip(GossipConfig{
			NodeID:   "n" + string(rune('1'+i)),
			BindAddr: "127.0.0.1:0",
			Join:     append([]string(nil), addrs...),
			Key:      key,
			Meta:     NodeMeta{Version: "test", Health: HealthOK, Addrs: true, Roles: []string{"dispatcher", "processor"}},
			Logger:   log,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Shutdown)
		gs = append(gs, g)
		addrs = append(addrs, g.Addr())
	}
	return gs
}

func stateOf(g *Gossip, id string) string {
	for _, m := range g.Members() {
		if m.ID == id {
			return m.State
		}
	}
	return ""
}

// waitMemberState waits until g sees member id in state, and returns when
// it saw the change (false: not within timeout).
func waitMemberState(g *Gossip, id, state string, timeout time.Duration) (time.Time, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		changed := g.Changed()
		if stateOf(g, id) == state {
			return time.Now(), true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return time.Time{}, false
		}
	}
}

// Three members find each other, see each other's metadata and its
// updates, and detect a crashed member (no leave) within a second or so:
// the time is logged.
func TestGossipDetectsFailureFast(t *testing.T) {
	gs := startGossips(t, 3, newKey(t))
	testkit.WaitFor(t, 5*time.Second, "three alive members everywhere", func() bool {
		for _, g := range gs {
			alive := 0
			for _, m := range g.Members() {
				if m.State == MemberAlive {
					alive++
				}
			}
			if alive != 3 {
				return false
			}
		}
		return true
	})
	if err := gs[1].SetMeta(NodeMeta{Version: "test", Health: HealthDraining, Load: 7}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "metadata update", func() bool {
		for _, m := range gs[0].Members() {
			if m.ID == "n2" {
				return m.Meta.Health == HealthDraining && m.Meta.Load == 7
			}
		}
		return false
	})

	crash := time.Now()
	gs[2].Shutdown() // no Leave: a crash to the others
	deadAt, ok := waitMemberState(gs[0], "n3", MemberDead, 10*time.Second)
	if !ok {
		t.Fatalf("n3 not dead to n1 within 10 s: %s", stateOf(gs[0], "n3"))
	}
	t.Logf("crash of n3 -> dead to n1 after %s", deadAt.Sub(crash).Round(time.Millisecond))
	if d := deadAt.Sub(crash); d > 3*time.Second {
		t.Errorf("failure detection took %s", d)
	}
	// A graceful leave is seen as "left" at once.
	left := time.Now()
	gs[1].Leave(time.Second)
	testkit.WaitFor(t, 3*time.Second, "n2 left", func() bool { return stateOf(gs[0], "n2") == MemberLeft })
	t.Logf("leave of n2 seen by n1 after %s", time.Since(left).Round(time.Millisecond))
}

// The gossip key is derived from the cluster key; members with another
// cluster key cannot join.
func TestGossipKeyAndEncryption(t *testing.T) {
	t.Parallel() // mostly watches nothing happen
	k1, _ := GossipKey([]byte("0123456789abcdef0123456789abcdef"))
	k2, _ := GossipKey([]byte("0123456789abcdef0123456789abcdef"))
	k3, _ := GossipKey([]byte("another-cluster-key-0123456789ab"))
	if len(k1) != 32 || !bytes.Equal(k1, k2) || bytes.Equal(k1, k3) {
		t.Fatalf("keys %x %x %x", k1, k2, k3)
	}
	a := startGossips(t, 1, newKey(t))[0]
	b, err := StartGossip(GossipConfig{NodeID: "intruder", BindAddr: "127.0.0.1:0", Join: []string{a.Addr()}, Key: newKey(t), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	testkit.Holds(t, time.Second, "members with different keys apart", func() bool {
		if len(a.Members()) != 1 || len(b.Members()) != 1 {
			t.Logf("members with different keys joined: %v / %v", a.Members(), b.Members())
			return false
		}
		return true
	})
}

// A member that stops answering probes is shown suspect (alive to
// memberlist, but under suspicion) before memberlist declares it dead;
// members that answer never are. The suspicion timeout is raised here so
// the suspect phase lasts seconds instead of a fraction of one.
func TestGossipShowsSuspectBeforeDead(t *testing.T) {
	key := newKey(t)
	var gs []*Gossip
	var addrs []string
	for i := range 3 {
		g, err := StartGossip(GossipConfig{
			NodeID: "n" + string(rune('1'+i)), BindAddr: "127.0.0.1:0", Join: append([]string(nil), addrs...),
			Key: key, Meta: NodeMeta{Version: "test", Health: HealthOK}, Logger: testLogger(t),
			SuspicionMult: 40, // 6 s at least before a suspect is dead
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Shutdown)
		gs = append(gs, g)
		addrs = append(addrs, g.Addr())
	}
	status := func(g *Gossip, id string) string {
		for _, m := range g.Members() {
			if m.ID == id {
				return m.Status()
			}
		}
		return ""
	}
	testkit.WaitFor(t, 5*time.Second, "three members alive everywhere", func() bool {
		for _, g := range gs {
			for _, id := range []string{"n1", "n2", "n3"} {
				if status(g, id) != MemberAlive {
					return false
				}
			}
		}
		return true
	})
	testkit.Holds(t, 1500*time.Millisecond, "members answering probes are not suspect", func() bool {
		return status(gs[0], "n2") == MemberAlive && status(gs[0], "n3") == MemberAlive
	})
	crash := time.Now()
	gs[2].Shutdown()
	testkit.WaitFor(t, 3*time.Second, "n3 suspect to n1", func() bool { return status(gs[0], "n3") == MemberSuspect })
	t.Logf("n3 suspect to n1 %s after it stopped", time.Since(crash).Round(time.Millisecond))
	if st := stateOf(gs[0], "n3"); st != MemberAlive {
		t.Errorf("a suspect member's memberlist state is %q, want still alive", st)
	}
	if status(gs[0], "n2") != MemberAlive {
		t.Errorf("n2, which answers, is %s", status(gs[0], "n2"))
	}
	testkit.WaitFor(t, 30*time.Second, "n3 dead to n1", func() bool { return status(gs[0], "n3") == MemberDead })
	t.Logf("n3 dead to n1 %s after it stopped", time.Since(crash).Round(time.Millisecond))
}

func TestSuspectLine(t *testing.T) {
	for line, want := range map[string]string{
		"Suspect n2 has failed, no acks received": "n2",
		"Suspect sip-1.example has failed":        "sip-1.example",
		"Marking n2 as failed, suspect timeout":   "",
		"Suspect  has failed":                     "",
	} {
		if got, ok := suspectLine(line); got != want || ok != (want != "") {
			t.Errorf("suspectLine(%q) = %q, %v; want %q", line, got, ok, want)
		}
	}
}

// The held addresses fit in the metadata, cut short when there are too
// many, and the count still says how many there are.
func TestMetaHeldFits(t *testing.T) {
	var held []string
	for i := range 40 {
		held = append(held, fmt.Sprintf("2001:db8:1234:5678:9abc:def0:1234:%04x", i))
	}
	m := NodeMeta{Version: "v0.0.0-20261202022146-d32efec986f9+dirty", Commit: "d32efec986f9+modified", Health: HealthOK, Addrs: true,
		Roles: []string{"dispatcher", "processor", "adoptcall1", "credentials2", "quota1", "dispatch1"}, CommitIndex: 123456789, AppliedIndex: 123456789}
	m.SetHeld(held)
	if _, err := encodeMeta(m); err != nil {
		t.Fatal(err)
	}
	if m.HeldCount != 40 || len(m.Held) == 0 || len(m.Held) >= 40 {
		t.Fatalf("held %d listed of %d", len(m.Held), m.HeldCount)
	}
	if holds, known := m.Holds(held[0]); !holds || !known {
		t.Errorf("a listed address: holds %v, known %v", holds, known)
	}
	if holds, known := m.Holds(held[39]); holds || known {
		t.Errorf("an address cut off the list: holds %v, known %v", holds, known)
	}
	m.SetHeld(held[:2])
	if holds, known := m.Holds("192.0.2.1"); holds || !known || len(m.Held) != 2 {
		t.Errorf("a whole list: %v, holds %v, known %v", m.Held, holds, known)
	}
	// A member of a build that does not list what it holds.
	old := NodeMeta{Version: "old", Health: HealthOK, Addrs: true}
	if holds, known := old.Holds("192.0.2.1"); holds || known {
		t.Errorf("a member that lists nothing: holds %v, known %v", holds, known)
	}
	old.Addrs = false
	if holds, known := old.Holds("192.0.2.1"); holds || !known {
		t.Errorf("a member that manages no address: holds %v, known %v", holds, known)
	}
}
