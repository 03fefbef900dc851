package node

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/cluster"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack"
)

func TestDispatchEnabledDefault(t *testing.T) {
	on, off := true, false
	cases := []struct {
		c    Config
		want bool
	}{
		{Config{Cluster: ClusterConfig{Bootstrap: true}}, false},
		{Config{NodeID: "a", Cluster: ClusterConfig{Peers: []string{"a=127.0.0.1:1"}}}, false},
		{Config{NodeID: "a", Cluster: ClusterConfig{Peers: []string{"a=127.0.0.1:1", "b=127.0.0.1:2"}}}, true},
		{Config{Cluster: ClusterConfig{Join: []string{"127.0.0.1:1"}}}, true},
		{Config{NodeID: "a", Cluster: ClusterConfig{Peers: []string{"a=127.0.0.1:1", "b=127.0.0.1:2"}}, SIP: SIPConfig{Dispatch: &off}}, false},
		{Config{Cluster: ClusterConfig{Bootstrap: true}, SIP: SIPConfig{Dispatch: &on}}, true},
	}
	for i, c := range cases {
		if got := c.c.DispatchEnabled(); got != c.want {
			t.Errorf("case %d: dispatch %v, want %v", i, got, c.want)
		}
	}
	dev, err := DevConfig(DevOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if dev.DispatchEnabled() {
		t.Error("the dev node dispatches")
	}
}

func TestProcessorsFromGossip(t *testing.T) {
	m := func(id, state, health string, roles ...string) cluster.Member {
		return cluster.Member{ID: id, State: state, Meta: cluster.NodeMeta{Health: health, Roles: roles}}
	}
	got := processors([]cluster.Member{
		m("a", cluster.MemberAlive, cluster.HealthOK, roleDispatch),
		m("b", cluster.MemberAlive, cluster.HealthDraining, roleDispatch),
		m("c", cluster.MemberDead, cluster.HealthOK, roleDispatch),
		m("d", cluster.MemberAlive, cluster.HealthStarting, roleDispatch),
		m("e", cluster.MemberAlive, cluster.HealthOK, "dispatcher", "processor"), // an older version
		m("f", cluster.MemberLeft, cluster.HealthLeaving, roleDispatch),
	})
	want := []sipstack.Processor{{ID: "a"}, {ID: "b", Draining: true}}
	if !slices.Equal(got, want) {
		t.Fatalf("processors %+v, want %+v", got, want)
	}
}

// dispatchCluster is three nodes in this process, each on its own
// loopback address, dispatching.
type dispatchCluster struct {
	nodes []*Node
	sip   []string // each node's UDP socket, ip:port
}

func startDispatchNodes(t *testing.T) *dispatchCluster {
	t.Helper()
	return startDispatchNodesWith(t, nil)
}

// startDispatchNodesWith is startDispatchNodes with each node's
// configuration changed by mod.
func startDispatchNodesWith(t *testing.T, mod func(*Config)) *dispatchCluster {
	t.Helper()
	ips := []string{"127.0.0.61", "127.0.0.62", "127.0.0.63"}
	port := commonFreeUDPPort(t, ips)
	var peers, gossip []string
	for i, ip := range ips {
		peers = append(peers, fmt.Sprintf("d%d=%s", i+1, listenFree(t, ip)))
		gossip = append(gossip, listenFree(t, ip))
	}
	dc := &dispatchCluster{}
	dir := t.TempDir()
	var cfgs []Config
	tlsDir := filepath.Join(dir, "tls")
	ca := newTestCA(t, tlsDir)
	for i, ip := range ips {
		_, bind, _ := strings.Cut(peers[i], "=")
		id := fmt.Sprintf("d%d", i+1)
		cfgs = append(cfgs, Config{
			NodeID: id, DataDir: filepath.Join(dir, id),
			Cluster: ClusterConfig{Bind: bind, Key: "dispatch-test-cluster-key-0123456789", Peers: peers,
				GossipBind: gossip[i], GossipJoin: gossip, TLS: writeTestCerts(t, ca, tlsDir, id)},
			SIP:   SIPConfig{Addresses: []string{ip}, UDPPorts: []int{port}, TCPPorts: []int{}},
			Admin: AdminConfig{Listen: ip + ":0", Token: "dispatch-test-token-0123456789"},
		})
		if mod != nil {
			mod(&cfgs[len(cfgs)-1])
		}
		dc.sip = append(dc.sip, net.JoinHostPort(ip, strconv.Itoa(port)))
	}
	dc.nodes, _ = startNodes(t, cfgs)
	testkit.WaitFor(t, 20*time.Second, "every node dispatching to the three, links up", func() bool {
		for _, n := range dc.nodes {
			if len(processors(n.gossip.Members())) != 3 || n.dispatch.link.Load().Stats().Connected != 2 {
				return false
			}
		}
		return true
	})
	return dc
}

func listenFree(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("loopback address %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().String()
}

func commonFreeUDPPort(t *testing.T, ips []string) int {
	t.Helper()
	for range 50 {
		pc, err := net.ListenPacket("udp", ips[0]+":0")
		if err != nil {
			t.Skipf("loopback address %s: %v", ips[0], err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ok := true
		for _, ip := range ips[1:] {
			q, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			q.Close()
		}
		pc.Close()
		if ok {
			return port
		}
	}
	t.Fatal("no UDP port free on every address")
	return 0
}

// metric reads one sample from a node's GET /metrics.
func metric(t *testing.T, n *Node, name, labels string) float64 {
	t.Helper()
	res, err := http.Get("http://" + n.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if labels != "" {
		name += "{" + labels + "}"
	}
	return testkit.ParseMetrics(res.Body)[name]
}

var nonceRe = regexp.MustCompile(`nonce="([^"]+)"`)

// registerVia sends a REGISTER for 1001 with Call-ID cid from conn
// (connected to server: it reads only what comes from there), answers the
// MD5 challenge, and returns the final status.
func registerVia(t *testing.T, conn *net.UDPConn, server, cid string) int {
	t.Helper()
	return register1001(t, conn.LocalAddr().String(), server, cid, func(msg string) string {
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 65536)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("REGISTER %s: no answer from %s: %v", cid, server, err)
		}
		return string(buf[:n])
	})
}

// register1001 registers 1001 with Call-ID cid and contact local through
// server, answering the MD5 challenge, and returns the final status.
// exchange sends one request and returns the answer to it.
func register1001(t *testing.T, local, server, cid string, exchange func(msg string) string) int {
	t.Helper()
	host, _, _ := net.SplitHostPort(server)
	send := func(cseq int, auth string) string {
		return exchange(fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s-%d;rport\r\n"+
			"From: <sip:1001@%s>;tag=f%s\r\nTo: <sip:1001@%s>\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\nMax-Forwards: 70\r\n"+
			"Contact: <sip:1001@%s>\r\nExpires: 600\r\n%sContent-Length: 0\r\n\r\n",
			server, local, cid, cseq, host, cid, host, cid, cseq, local, auth))
	}
	chal := send(1, "")
	m := nonceRe.FindStringSubmatch(chal)
	if !strings.HasPrefix(chal, "SIP/2.0 401") || m == nil {
		t.Fatalf("challenge: %q", chal)
	}
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	uri := "sip:" + server
	resp := h(h("1001:troika:pw1001") + ":" + m[1] + ":00000001:c0ffee:auth:" + h("REGISTER:"+uri))
	auth := fmt.Sprintf("Authorization: Digest username=\"1001\", realm=\"troika\", nonce=\"%s\", uri=\"%s\", response=\"%s\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\n",
		m[1], uri, resp)
	final := send(2, auth)
	code, _ := strconv.Atoi(strings.Fields(final)[1])
	return code
}

// createAccount1001 creates the prepaid account 1001 (password pw1001)
// through the first node and waits until every node has it and the nonce
// secret.
func (dc *dispatchCluster) createAccount1001(t *testing.T, ctx context.Context) {
	t.Helper()
	res, err := dc.nodes[0].Propose(ctx, &fsm.CreateAccount{Now: time.Now().UnixMilli(), Account: fsm.Account{ID: "1001", Credentials: testkit.Creds("1001", "pw1001"), Billing: fsm.Prepaid}})
	if err != nil || res.Err != nil {
		t.Fatalf("create account: %v %v", err, res.Err)
	}
	testkit.WaitFor(t, 10*time.Second, "the account and nonce secret everywhere", func() bool {
		for _, n := range dc.nodes {
			if _, ok := n.state.Account("1001"); !ok || n.state.NonceSecret() == nil {
				return false
			}
		}
		return true
	})
}

// Three nodes with the real cluster link and gossip: REGISTERs sent to
// one node's address with many Call-IDs are processed by all three (their
// /metrics say so), every answer comes from that address, and the
// bindings record it as their ingress. The cluster ports run TLS
// ([cluster.tls], certificates from files).
func TestDispatchThroughClusterLink(t *testing.T) {
	dc := startDispatchNodes(t)
	n1 := dc.nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dc.createAccount1001(t, ctx)
	ra, _ := net.ResolveUDPAddr("udp", dc.sip[0])
	conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.1")}, ra)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const regs = 45
	for i := range regs {
		if code := registerVia(t, conn, dc.sip[0], fmt.Sprintf("link-%d@phone", i)); code != 200 {
			t.Fatalf("REGISTER %d: %d", i, code)
		}
	}
	total := 0.0
	for _, n := range dc.nodes {
		ok := metric(t, n, "troika_sip_register_total", `result="ok"`)
		t.Logf("%s registered %v", n.cfg.NodeID, ok)
		if ok == 0 {
			t.Errorf("%s processed no REGISTER", n.cfg.NodeID)
		}
		total += ok
	}
	if total != regs {
		t.Errorf("%v registered in all, want %d", total, regs)
	}
	if sent := metric(t, n1, "troika_cluster_link_sent_total", ""); sent == 0 {
		t.Error("n1's link sent nothing")
	}
	if got := metric(t, n1, "troika_sip_dispatch_datagrams_total", `target="remote"`); got == 0 {
		t.Error("n1 dispatched nothing to the others")
	}
	// The link, raft and forwarding ran over TLS ([cluster.tls] from
	// files): no connection was plaintext, none refused.
	for _, n := range dc.nodes {
		tlsConns := metric(t, n, "troika_cluster_conns_accepted_total", `transport="tls"`)
		plain := metric(t, n, "troika_cluster_conns_accepted_total", `transport="plaintext"`)
		refused := metric(t, n, "troika_cluster_conn_refused_total", `reason="bad_cert"`)
		if tlsConns == 0 || plain != 0 || refused != 0 {
			t.Errorf("%s accepted %v TLS and %v plaintext connections, refused %v bad certificates: want TLS only", n.cfg.NodeID, tlsConns, plain, refused)
		}
	}
	bs := n1.state.Bindings("1001", time.Now().UnixMilli())
	if len(bs) != 1 || bs[0].Ingress != "udp:"+dc.sip[0] || bs[0].Source != conn.LocalAddr().String() {
		t.Fatalf("bindings %+v", bs)
	}
}
