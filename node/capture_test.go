package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// wireRelay stands between a node's cluster port and the other nodes
// (they dial the relay: it is the node's cluster.advertise) and records
// every byte it passes, both ways, as it crosses the network: a capture
// without pcap.
type wireRelay struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	streams []*bytes.Buffer
	conns   []net.Conn
}

func startRelay(t *testing.T, target string) *wireRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &wireRelay{ln: ln, target: target}
	go r.serve()
	t.Cleanup(r.close)
	return r
}

func (r *wireRelay) serve() {
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", r.target)
		if err != nil {
			in.Close()
			continue
		}
		up, down := &bytes.Buffer{}, &bytes.Buffer{}
		r.mu.Lock()
		r.streams = append(r.streams, up, down)
		r.conns = append(r.conns, in, out)
		r.mu.Unlock()
		go r.pipe(out, in, up)
		go r.pipe(in, out, down)
	}
}

// pipe copies from src to dst, recording into rec.
func (r *wireRelay) pipe(dst, src net.Conn, rec *bytes.Buffer) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			rec.Write(buf[:n])
			r.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			if err != io.EOF {
				src.Close()
			}
			dst.Close()
			return
		}
	}
}

func (r *wireRelay) close() {
	r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
}

// count is how many times needle occurs in the recorded streams, and how
// many bytes they hold.
func (r *wireRelay) count(needle []byte) (found, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.streams {
		found += bytes.Count(s.Bytes(), needle)
		total += s.Len()
	}
	return found, total
}

// An account created through the admin API of a follower, as an operator
// does: its password stays on that node (hashed into digest credentials
// before the write), and the credentials cross the wire three times
// (forwarded to the leader, replicated to two followers). With [cluster.tls]
// and the admin API on TLS neither the credentials, the password, the
// admin token nor the cluster key appear in the captured cluster and admin
// traffic; the same cluster without TLS shows the credentials in clear on
// the cluster port and the token and password on the admin API, so the
// capture does see them.
func TestNodeCaptureNoSecretsOnTheWire(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plaintext", true: "tls"}[withTLS], func(t *testing.T) {
			ips := []string{"127.0.0.71", "127.0.0.72", "127.0.0.73"}
			port := commonFreeUDPPort(t, ips)
			const key = "capture-test-cluster-key-0123456789"
			dir := t.TempDir()
			ca := newTestCA(t, filepath.Join(dir, "tls"))
			var peers, gossip, binds []string
			relays := make([]*wireRelay, len(ips))
			for i, ip := range ips {
				binds = append(binds, listenFree(t, ip))
				relays[i] = startRelay(t, binds[i])
				peers = append(peers, fmt.Sprintf("c%d=%s", i+1, relays[i].ln.Addr()))
				gossip = append(gossip, listenFree(t, ip))
			}
			var cfgs []Config
			for i, ip := range ips {
				id := fmt.Sprintf("c%d", i+1)
				cfg := Config{
					NodeID: id, DataDir: filepath.Join(dir, id),
					Cluster: ClusterConfig{Bind: binds[i], Advertise: relays[i].ln.Addr().String(), Key: key, Peers: peers,
						GossipBind: gossip[i], GossipJoin: gossip},
					SIP:   SIPConfig{Addresses: []string{ip}, UDPPorts: []int{port}, TCPPorts: []int{}},
					Admin: AdminConfig{Listen: ip + ":0", Token: "capture-test-token-0123456789"},
				}
				if withTLS {
					cfg.Cluster.TLS = writeTestCerts(t, ca, filepath.Join(dir, "tls"), id)
				}
				cfgs = append(cfgs, cfg)
			}
			os.MkdirAll(filepath.Join(dir, "admin-tls"), 0o700)
			adminFiles := testkit.WriteTLSFiles(t, filepath.Join(dir, "admin-tls"), "127.0.0.1")
			if withTLS {
				for i := range cfgs {
					cfgs[i].Admin.TLSCertFile, cfgs[i].Admin.TLSKeyFile = adminFiles.Cert, adminFiles.Key
				}
			}
			nodes, _ := startNodes(t, cfgs)
			var follower *Node
			testkit.WaitFor(t, 20*time.Second, "a leader", func() bool {
				for _, n := range nodes {
					if n.cluster.IsLeader() {
						follower = nodes[(indexOf(nodes, n)+1)%len(nodes)]
						return true
					}
				}
				return false
			})
			password := "Capture-Me-" + RandomToken(6)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			const token = "capture-test-token-0123456789"
			adminRelay := startRelay(t, follower.AdminAddr())
			cl := admin.NewClient(adminRelay.ln.Addr().String(), token)
			if withTLS {
				var err error
				if cl, err = admin.NewClientTLS("https://"+adminRelay.ln.Addr().String(), token, admin.ClientTLS{CAFile: adminFiles.CA}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := cl.CreateAccount(ctx, admin.Account{ID: "wiretap", Password: password}); err != nil {
				t.Fatal(err)
			}
			creds := fsm.HashCredentials("wiretap", follower.cfg.Registrar.Realm, password)
			for _, n := range nodes {
				testkit.WaitFor(t, 10*time.Second, "the account on "+n.cfg.NodeID, func() bool {
					a, ok := n.state.Account("wiretap")
					return ok && bytes.Equal(a.Credentials.MD5, creds.MD5)
				})
			}
			var pw, md5, sha, k, total int
			for _, r := range relays {
				a, tot := r.count([]byte(password))
				b, _ := r.count(creds.MD5)
				c, _ := r.count(creds.SHA256)
				d, _ := r.count([]byte(key))
				pw, md5, sha, k, total = pw+a, md5+b, sha+c, k+d, total+tot
			}
			t.Logf("%d bytes of cluster traffic captured: the password seen %d times, its HA1 %d (MD5) and %d (SHA-256) times, the cluster key %d times",
				total, pw, md5, sha, k)
			if total < 1000 {
				t.Fatalf("only %d bytes captured: the relays missed the traffic", total)
			}
			if pw != 0 || k != 0 {
				t.Errorf("the password crossed the wire %d times, the cluster key %d times", pw, k)
			}
			switch {
			case withTLS && md5+sha != 0:
				t.Errorf("with TLS the credentials crossed the wire in clear %d times", md5+sha)
			case !withTLS && (md5 < 3 || sha < 3):
				t.Errorf("without TLS the credentials were seen %d and %d times, want at least 3 each: the capture does not see the traffic", md5, sha)
			}
			apiPW, apiTotal := adminRelay.count([]byte(password))
			apiToken, _ := adminRelay.count([]byte(token))
			t.Logf("%d bytes of admin API traffic captured: the password seen %d times, the token %d times", apiTotal, apiPW, apiToken)
			switch {
			case apiTotal == 0:
				t.Error("the admin relay captured nothing")
			case withTLS && apiPW+apiToken != 0:
				t.Errorf("over TLS the admin API showed the password %d times, the token %d times", apiPW, apiToken)
			case !withTLS && (apiPW == 0 || apiToken == 0):
				t.Errorf("over plain HTTP the capture saw the password %d times, the token %d times: it does not see the traffic", apiPW, apiToken)
			}
			for _, n := range nodes {
				if got := n.cluster.PortStats().AcceptedTLS > 0; got != withTLS {
					t.Errorf("%s: TLS connections accepted: %v, want %v", n.cfg.NodeID, got, withTLS)
				}
			}
		})
	}
}

func indexOf(nodes []*Node, n *Node) int {
	for i, x := range nodes {
		if x == n {
			return i
		}
	}
	return -1
}
