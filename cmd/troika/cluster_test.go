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

// clusterKey is the cluster key of the agents these tests configure.
const clusterKey = "c2hhcmVkLWNsdXN0ZXIta2V5LWZvci10ZXN0cw=="

// testNode is a troika agent of a test cluster: its cluster port, gossip
// and admin API on free ports (not fixed ones, which another run of these
// tests on the same host could answer on), SIP on sipIP:sipPort (UDP and
// TCP).
type testNode struct {
	id, config, dataDir string
	api                 string // the admin API's host:port, on sipIP
	cluster, gossip     string // host:port of the cluster port and of gossip, on 127.0.0.1
	sipIP               string
	sipPort             int
	p                   *proc
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

// newTestNode picks the ports of node id, whose data directory and
// configuration file are in dir; writeConfig writes the file.
func newTestNode(t *testing.T, dir, id, sipIP string, sipPort int) *testNode {
	n := &testNode{id: id, sipIP: sipIP, sipPort: sipPort}
	n.api = fmt.Sprintf("%s:%d", sipIP, freeTCPPort(t, sipIP))
	// Gossip defaults to the cluster port + 1, which another node's
	// random port may hold: pick free ones.
	n.cluster = fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t, "127.0.0.1"))
	n.gossip = fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t, "127.0.0.1"))
	n.dataDir = filepath.Join(dir, id)
	n.config = filepath.Join(dir, id+".toml")
	return n
}

// sip is the host:port of n's SIP sockets.
func (n *testNode) sip() string { return fmt.Sprintf("%s:%d", n.sipIP, n.sipPort) }

// writeConfig writes n's configuration; membership holds the [cluster]
// lines that say how it gets into a cluster (peers, or await_add).
func (n *testNode) writeConfig(t *testing.T, membership string, gossipJoin []string) {
	t.Helper()
	cfg := fmt.Sprintf(`node_id = %q
data_dir = %q
log_level = "warn"
[cluster]
bind = %q
key = %q
%s
gossip_bind = %q
gossip_join = [%s]
[sip]
addresses = [%q]
udp_ports = [%d]
tcp_ports = [%d]
[admin]
listen = %q
token = %q
`, n.id, n.dataDir, n.cluster, clusterKey, membership, n.gossip, quoted(gossipJoin), n.sipIP, n.sipPort, n.sipPort, n.api, clusterToken)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

func quoted(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// soloConfig is the configuration of an agent that bootstraps a cluster
// of its own, its cluster port and gossip on free ports of 127.0.0.1.
type soloConfig struct {
	id, dataDir, logLevel string
	sipIP, api            string // SIP's address, the admin API's host:port
	admin                 string // the lines of [admin] after listen
}

func (c soloConfig) write(t *testing.T, path string) {
	t.Helper()
	cfg := fmt.Sprintf(`node_id = %q
data_dir = %q
log_level = %q
[cluster]
bind = "127.0.0.1:%d"
gossip_bind = "127.0.0.1:%d"
key = %q
bootstrap = true
[sip]
addresses = [%q]
[admin]
listen = %q
`, c.id, c.dataDir, c.logLevel, freeTCPPort(t, "127.0.0.1"), freeTCPPort(t, "127.0.0.1"), clusterKey, c.sipIP, c.api) + c.admin
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// staticCluster writes the configurations of nodes as a static cluster:
// each lists all of them as its peers, and joins their gossip.
func staticCluster(t *testing.T, nodes ...*testNode) []*testNode {
	var peers, gossip []string
	for _, n := range nodes {
		peers = append(peers, n.id+"="+n.cluster)
		gossip = append(gossip, n.gossip)
	}
	for _, n := range nodes {
		n.writeConfig(t, "peers = ["+quoted(peers)+"]", gossip)
	}
	return nodes
}

// threeNodes writes the configuration of a static three-node cluster on
// loopback: n1 to n3, SIP on 127.0.0.4N:5060 and the admin API on
// 127.0.0.4N.
func threeNodes(t *testing.T) []*testNode {
	dir := t.TempDir()
	var nodes []*testNode
	for i := range 3 {
		nodes = append(nodes, newTestNode(t, dir, fmt.Sprintf("n%d", i+1), fmt.Sprintf("127.0.0.4%d", i+1), 5060))
	}
	return staticCluster(t, nodes...)
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

// startCluster starts nodes and returns their leader once they are
// ready (waitLeader).
func startCluster(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	for _, n := range nodes {
		n.start(t)
	}
	return waitLeader(t, nodes)
}

// others is nodes but n.
func others(nodes []*testNode, n *testNode) []*testNode {
	var out []*testNode
	for _, o := range nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

// cliEnv is the environment of a CLI command run against n.
func (n *testNode) cliEnv() []string {
	return []string{"TROIKA_API=http://" + n.api, "TROIKA_TOKEN=" + clusterToken}
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
	leader := startCluster(t, nodes)
	follower := others(nodes, leader)[0]
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
	st := sipptest.Run(t, sipptest.Options{Target: follower.sip(), Scenario: "reg_auth.xml",
		Inject: sipptest.APIUsers(ids...), Rate: 100, Limit: 50})
	if st.OK != users || st.Failed != 0 {
		t.Fatalf("registering through follower %s: %d ok, %d failed\n%s\n%s", follower.id, st.OK, st.Failed, st.Output, st.Errors)
	}

	leader.p.kill() // SIGKILL
	survivors := others(nodes, leader)
	newLeader := waitLeader(t, survivors)
	t.Logf("leader %s killed; %s leads now", leader.id, newLeader.id)
	for _, n := range survivors {
		waitBindings(t, n, users)
	}
	// The survivors keep registering.
	more := sipptest.Run(t, sipptest.Options{Target: survivors[0].sip(), Scenario: "reg_auth.xml",
		Inject: sipptest.APIUsers(ids[:20]...), LocalPort: 15071})
	if more.OK != 20 {
		t.Fatalf("after the leader's loss: %d ok, %d failed\n%s", more.OK, more.Failed, more.Errors)
	}

	leader.start(t)
	waitBindings(t, leader, users+20)

	for _, n := range nodes {
		n.p.kill()
	}
	last := startCluster(t, nodes)
	for _, n := range nodes {
		waitBindings(t, n, users+20)
	}

	// `troika cluster status` shows the leader and the three members alive
	// and healthy, as any node sees them.
	env := nodes[0].cliEnv()
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
