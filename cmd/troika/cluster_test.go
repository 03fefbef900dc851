package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
)

const clusterToken = "cluster-test-token-0123456789"

type testNode struct {
	id, sipIP, api, config string
	cluster                string // the cluster port
	p                      *proc
}

func freeTCPPort(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// threeNodes writes the configuration of a static three-node cluster on
// loopback: cluster links on 127.0.0.1, SIP on 127.0.0.4N:5060, the admin
// API on 127.0.0.4N and a free port (not a fixed one, which another run of
// these tests on the same host could answer on).
func threeNodes(t *testing.T) []*testNode {
	var nodes []*testNode
	var peers []string
	ports, gossip := make([]int, 3), make([]string, 3)
	for i := range 3 {
		ports[i] = freeTCPPort(t, "127.0.0.1")
		peers = append(peers, fmt.Sprintf("%q", fmt.Sprintf("n%d=127.0.0.1:%d", i+1, ports[i])))
		// Gossip defaults to the cluster port + 1, which another node's
		// random port may hold: pick free ones.
		gossip[i] = fmt.Sprintf("%q", fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t, "127.0.0.1")))
	}
	dir := t.TempDir()
	for i := range 3 {
		n := &testNode{id: fmt.Sprintf("n%d", i+1), sipIP: fmt.Sprintf("127.0.0.4%d", i+1)}
		n.api = fmt.Sprintf("%s:%d", n.sipIP, freeTCPPort(t, n.sipIP))
		n.cluster = fmt.Sprintf("127.0.0.1:%d", ports[i])
		n.config = filepath.Join(dir, n.id+".toml")
		cfg := fmt.Sprintf(`node_id = %q
data_dir = %q
log_level = "warn"
[cluster]
bind = "127.0.0.1:%d"
key = "c2hhcmVkLWNsdXN0ZXIta2V5LWZvci10ZXN0cw=="
peers = [%s, %s, %s]
gossip_bind = %s
gossip_join = [%s, %s, %s]
[sip]
addresses = [%q]
[admin]
listen = %q
token = %q
`, n.id, filepath.Join(dir, n.id), ports[i], peers[0], peers[1], peers[2], gossip[i], gossip[0], gossip[1], gossip[2],
			n.sipIP, n.api, clusterToken)
		if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// start runs the node and waits until its admin API answers (it opens
// after the SIP sockets).
func (n *testNode) start(t *testing.T) {
	t.Helper()
	n.p = startProc(t, "agent", "--config", n.config)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := n.status(t); err == nil {
			return
		}
		select {
		case <-n.p.done:
			t.Fatalf("node %s exited: %v\n%s", n.id, n.p.cmd.ProcessState, n.p.output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("node %s: admin API not up within 30 s:\n%s", n.id, n.p.output())
}

func (n *testNode) client() *admin.Client { return admin.NewClient(n.api, clusterToken) }

// status is the part of GET /v1/cluster the test reads.
type status struct {
	Ready struct {
		Ready bool `json:"ready"`
	} `json:"ready"`
	Members []struct {
		ID   string `json:"id"`
		Meta struct {
			Health string `json:"h"`
		} `json:"meta"`
	} `json:"members"`
	Cluster struct {
		NodeID   string `json:"node_id"`
		State    string `json:"state"`
		LeaderID string `json:"leader_id"`
		Servers  []struct {
			ID string `json:"id"`
		} `json:"servers"`
	} `json:"cluster"`
}

func (n *testNode) status(t *testing.T) (status, error) {
	raw, err := n.client().ClusterStatus(context.Background())
	if err != nil {
		return status{}, err
	}
	var s status
	return s, json.Unmarshal(raw, &s)
}

// waitLeader waits until every given node names the same leader among
// them, is ready (caught up, in service) and sees the others in service
// in gossip, and returns the leader.
func waitLeader(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	var leader *testNode
	agreed := testkit.Eventually(30*time.Second, func() bool {
		id := ""
		for _, n := range nodes {
			s, err := n.status(t)
			if err != nil || !s.Ready.Ready || s.Cluster.LeaderID == "" || (id != "" && s.Cluster.LeaderID != id) {
				return false
			}
			inService := 0
			for _, m := range s.Members {
				for _, o := range nodes {
					if m.ID == o.id && m.Meta.Health == "ok" {
						inService++
					}
				}
			}
			if inService != len(nodes) {
				return false
			}
			id = s.Cluster.LeaderID
		}
		for _, n := range nodes {
			if n.id == id {
				leader = n
				return true
			}
		}
		return false
	})
	if !agreed {
		t.Fatal("the nodes did not agree on a leader and get ready within 30 s")
	}
	return leader
}

// waitBindings waits until node n lists want bindings.
func waitBindings(t *testing.T, n *testNode, want int) {
	t.Helper()
	got := -1
	if !testkit.Eventually(20*time.Second, func() bool {
		regs, err := n.client().Registrations(context.Background(), "")
		if err == nil {
			got = len(regs)
		}
		return got == want
	}) {
		t.Fatalf("node %s lists %d bindings, want %d", n.id, got, want)
	}
}

// Three troika processes: phones register through a follower, the leader
// is SIGKILLed, and every acknowledged binding is on both survivors; the
// killed node rejoins with all of them; then the whole cluster is killed
// and restarted from its data directories and still has every binding.
func TestClusterKeepsRegistrationsThroughLeaderLossAndRestart(t *testing.T) {
	sipptest.Need(t)
	nodes := threeNodes(t)
	for _, n := range nodes {
		n.start(t)
	}
	leader := waitLeader(t, nodes)
	var follower *testNode
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	const users = 300
	var accounts []admin.Account
	var ids []string
	for i := range users {
		id := fmt.Sprintf("u%06d", i)
		ids = append(ids, id)
		accounts = append(accounts, admin.Account{ID: id, Password: sipptest.APIPassword(id)})
	}
	if err := follower.client().ImportAccounts(context.Background(), accounts); err != nil {
		t.Fatal(err)
	}
	st := sipptest.Run(t, sipptest.Options{Target: follower.sipIP + ":5060", Scenario: "reg_auth.xml",
		Inject: sipptest.APIUsers(ids...), Rate: 100, Limit: 50})
	if st.OK != users || st.Failed != 0 {
		t.Fatalf("registering through follower %s: %d ok, %d failed\n%s\n%s", follower.id, st.OK, st.Failed, st.Output, st.Errors)
	}

	leader.p.kill() // SIGKILL
	var survivors []*testNode
	for _, n := range nodes {
		if n != leader {
			survivors = append(survivors, n)
		}
	}
	newLeader := waitLeader(t, survivors)
	t.Logf("leader %s killed; %s leads now", leader.id, newLeader.id)
	for _, n := range survivors {
		waitBindings(t, n, users)
	}
	// The survivors keep registering.
	more := sipptest.Run(t, sipptest.Options{Target: survivors[0].sipIP + ":5060", Scenario: "reg_auth.xml",
		Inject: sipptest.APIUsers(ids[:20]...), LocalPort: 15071})
	if more.OK != 20 {
		t.Fatalf("after the leader's loss: %d ok, %d failed\n%s", more.OK, more.Failed, more.Errors)
	}

	leader.start(t)
	waitBindings(t, leader, users+20)

	for _, n := range nodes {
		n.p.kill()
	}
	for _, n := range nodes {
		n.start(t)
	}
	last := waitLeader(t, nodes)
	for _, n := range nodes {
		waitBindings(t, n, users+20)
	}

	// `troika cluster status` shows the leader and the three members alive
	// and healthy, as any node sees them.
	env := []string{"TROIKA_API=http://" + nodes[0].api, "TROIKA_TOKEN=" + clusterToken}
	var out, missing string
	if !testkit.Eventually(30*time.Second, func() bool { // gossip settles after the restart of all three
		out = runCLI(t, env, "cluster", "status")
		missing = ""
		if !strings.Contains(out, "leader "+last.id+"\n") {
			missing = "leader " + last.id
		}
		for _, n := range nodes {
			if !regexp.MustCompile(`(?m)^` + n.id + ` +(leader|voter) +alive +ok +`).MatchString(out) {
				missing = n.id + " alive and ok"
			}
		}
		return missing == ""
	}) {
		t.Fatalf("troika cluster status does not show %s:\n%s", missing, out)
	}
}
