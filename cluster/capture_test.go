package cluster

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// wireTap records every byte that crosses the accepted connections of
// the listeners it wraps, both ways, as the network carries them (under
// TLS): a packet capture without pcap. Every connection between nodes has
// its accepted end on one of them, so tapping all the nodes' listeners
// records all their traffic.
type wireTap struct {
	mu    sync.Mutex
	conns []*tapConn
}

func (w *wireTap) wrap(ln net.Listener) net.Listener { return &tapListener{Listener: ln, tap: w} }

// streams returns a copy of each direction of each connection so far.
func (w *wireTap) streams() [][]byte {
	w.mu.Lock()
	conns := append([]*tapConn(nil), w.conns...)
	w.mu.Unlock()
	var out [][]byte
	for _, c := range conns {
		c.mu.Lock()
		out = append(out, bytes.Clone(c.in.Bytes()), bytes.Clone(c.out.Bytes()))
		c.mu.Unlock()
	}
	return out
}

// count is how many times needle occurs in the recorded streams, and how
// many bytes they hold.
func (w *wireTap) count(needle []byte) (found, total int) {
	for _, s := range w.streams() {
		found += bytes.Count(s, needle)
		total += len(s)
	}
	return found, total
}

type tapListener struct {
	net.Listener
	tap *wireTap
}

func (l *tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &tapConn{Conn: c}
	l.tap.mu.Lock()
	l.tap.conns = append(l.tap.conns, tc)
	l.tap.mu.Unlock()
	return tc, nil
}

type tapConn struct {
	net.Conn
	mu      sync.Mutex
	in, out bytes.Buffer
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.record(&c.in, p[:n])
	return n, err
}

func (c *tapConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.record(&c.out, p[:n])
	return n, err
}

// record appends what went through the connection to one of its buffers.
func (c *tapConn) record(buf *bytes.Buffer, p []byte) {
	c.mu.Lock()
	buf.Write(p)
	c.mu.Unlock()
}

func (c *tapConn) NetConn() net.Conn { return c.Conn }

// An account created through a follower (forwarded to the leader, then
// replicated to both followers) crosses the wire three times, with its
// digest credentials: the HA1 values, which let whoever holds them answer
// digest challenges as the account (the clear password itself never
// leaves the node the admin API runs on). Without TLS the credentials are
// there to read in each copy; with TLS neither they, nor the password,
// nor the cluster key appear anywhere in what the nodes sent each other.
// The plaintext run shows that the capture would catch them.
func TestCaptureNoSecretsOnTheWire(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tls     bool
		leakedN int // how many times the credentials must be seen (at least)
	}{
		{"plaintext", false, 3},
		{"tls", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tap := &wireTap{}
			pki := newTestPKI(t)
			c, ctx, leader := newLedCluster(t, func(cfg *Config) {
				cfg.Listener = tap.wrap(cfg.Listener)
				if tc.tls {
					cfg.TLS = pki.tlsFor(t, cfg.NodeID, true, true)
				}
			}, 45*time.Second)
			password := fmt.Sprintf("Capture-Me-%x", newKey(t)[:8])
			creds := testkit.Creds("wiretap", password)
			fol := c.nodes[c.follower(leader)].node
			res, err := fol.Propose(ctx, &fsm.CreateAccount{
				Account: fsm.Account{ID: "wiretap", Credentials: creds, Billing: fsm.Prepaid, Balance: 1_000_000},
				Now:     nowMS(),
			})
			if err != nil || res.Err != nil {
				t.Fatalf("create the account through follower %s: %v %v", fol.ID(), err, res.Err)
			}
			for _, tn := range c.nodes {
				testkit.WaitFor(t, 10*time.Second, "the account on "+tn.cfg.NodeID, func() bool {
					a, ok := tn.state.Account("wiretap")
					return ok && bytes.Equal(a.Credentials.MD5, creds.MD5)
				})
			}
			// A few more writes, so that the capture holds the traffic of
			// every kind of connection, whatever the timing.
			createAccounts(ctx, t, fol, "more", 10)
			md5, total := tap.count(creds.MD5)
			sha, _ := tap.count(creds.SHA256)
			pw, _ := tap.count([]byte(password))
			key, _ := tap.count(c.key)
			st := fol.PortStats()
			t.Logf("%s: %d bytes captured on %d connections; the account's HA1 seen %d (MD5) and %d (SHA-256) times, its password %d times, the cluster key %d times; follower %s accepted %d TLS and %d plaintext connections",
				tc.name, total, len(tap.streams())/2, md5, sha, pw, key, fol.ID(), st.AcceptedTLS, st.AcceptedPlaintext)
			if total < 1000 {
				t.Fatalf("only %d bytes captured: the tap missed the traffic", total)
			}
			// What each dialer sent first: a TLS ClientHello (0x16), or a
			// connection type in the clear.
			for i, s := range tap.streams() {
				if i%2 == 0 && len(s) > 0 && (s[0] == tlsHandshakeRecord) != tc.tls {
					t.Errorf("connection %d started with %#x (TLS %v)", i/2, s[0], tc.tls)
				}
			}
			if key != 0 || pw != 0 {
				t.Errorf("the cluster key crossed the wire %d times, the password %d times", key, pw)
			}
			if tc.tls && md5+sha != 0 {
				t.Errorf("with TLS the account's credentials crossed the wire in clear %d times", md5+sha)
			}
			if !tc.tls && (md5 < tc.leakedN || sha < tc.leakedN) {
				t.Errorf("without TLS the credentials were seen %d and %d times, want at least %d: the capture does not see what it should", md5, sha, tc.leakedN)
			}
		})
	}
}
