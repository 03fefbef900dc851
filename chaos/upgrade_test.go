//go:build linux

package chaos

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/testkit"
)

// An upgrade from an earlier build to this one: a cluster started from
// the binary CHAOS_OLD_TROIKA names (e.g. the last release, which may not
// know drains) is restarted node by node (SIGTERM, then this build) under
// a steady REGISTER load, so that old and new nodes serve side by side
// for a while. No REGISTER fails, no binding is lost, never two holders.
// Once every node runs this build, the leader replaces the clear
// passwords the old build stored by digest credentials: every node
// reports none left, and every phone still registers with its password.
// Skipped unless CHAOS_OLD_TROIKA is set.
//
// The earlier build knows no TLS on the cluster port, so the cluster
// moves to TLS on the way, as deploy/runbook.md says: the old nodes run
// plaintext (no [cluster.tls]); each upgraded node comes up with its
// certificate and the transitional switches, verify_incoming = false
// (the old nodes' plaintext handshake is still accepted) and
// verify_outgoing = true (TLS to the upgraded nodes, which offer it;
// plaintext to the old ones, which do not). Once every node runs this
// build, a second rolling restart under load sets verify_incoming = true:
// from then on plaintext is refused, and no connection was.
func TestUpgradeFromEarlierBuild(t *testing.T) {
	old := os.Getenv("CHAOS_OLD_TROIKA")
	if old == "" {
		t.Skip("set CHAOS_OLD_TROIKA to the binary of an earlier troika build to test an upgrade from it")
	}
	var requireTLS atomic.Bool // the second rolling restart
	c, vip, alias, ids := setupVIPWith(t, 200, old, func(n *Node, cfg TOML) {
		switch {
		case n.Binary == old:
			cfg.Delete("cluster.tls") // it would refuse the unknown keys
			cfg.Delete("log_format")
		case !requireTLS.Load():
			cfg.Set("cluster.tls.verify_incoming", false)
			cfg.Set("cluster.tls.verify_outgoing", true)
		}
	})
	rollUnderLoad(t, c, vip, alias, ids, "upgrade", troikaBin, func(n *Node) (string, []string, error) {
		from := time.Now()
		if err := n.Stop(15 * time.Second); err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("old build stopped %.2f s after SIGTERM", time.Since(from).Seconds()), nil, nil
	})

	upgraded := time.Now()
	for _, n := range c.Nodes {
		var last Status
		if !testkit.Eventually(30*time.Second, func() bool {
			st, err := n.Status(context.Background())
			last = st
			return err == nil && st.Version != "" && st.ClearPasswords == 0
		}) {
			t.Fatalf("%s still reports %d clear passwords 30 s after the last node was upgraded (version %q)", n.Name, last.ClearPasswords, last.Version)
		}
	}
	t.Logf("clear passwords replaced by digest credentials on every node %.2f s after the last upgrade", time.Since(upgraded).Seconds())
	after := mustLoad(t, c, RegisterLoad{Name: "after", Target: sipAddr(vip, SIPPort), Users: ids, Total: len(ids), Rate: 100})
	if r := after.Wait(); r.Err != nil || r.Failed != 0 || r.OK != len(ids) {
		t.Errorf("after the credentials were converted: %d of %d phones registered, %d failed, %v\n%s", r.OK, len(ids), r.Failed, r.Err, r.Errors)
	}

	// The node upgraded first accepted the old nodes' plaintext
	// connections and, later, the upgraded nodes' TLS ones; nobody was
	// refused anything.
	var plain, tls float64
	for _, n := range c.Nodes {
		p := nodeMetric(t, n, `troika_cluster_conns_accepted_total{transport="plaintext"}`)
		s := nodeMetric(t, n, `troika_cluster_conns_accepted_total{transport="tls"}`)
		t.Logf("%s after the upgrade (verify_incoming = false): accepted %v plaintext and %v TLS cluster connections", n.Name, p, s)
		plain, tls = plain+p, tls+s
		checkNoRefusals(t, n)
	}
	if plain == 0 || tls == 0 {
		t.Errorf("during the upgrade the new nodes accepted %v plaintext and %v TLS connections: want both (old nodes in plaintext, new ones in TLS)", plain, tls)
	}

	requireTLS.Store(true)
	rollUnderLoad(t, c, vip, alias, ids, "TLS-requiring restart", "", func(n *Node) (string, []string, error) {
		from := time.Now()
		if err := n.Stop(15 * time.Second); err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("stopped %.2f s after SIGTERM", time.Since(from).Seconds()), nil, nil
	})
	for _, n := range c.Nodes {
		p := nodeMetric(t, n, `troika_cluster_conns_accepted_total{transport="plaintext"}`)
		s := nodeMetric(t, n, `troika_cluster_conns_accepted_total{transport="tls"}`)
		t.Logf("%s requiring TLS: accepted %v plaintext and %v TLS cluster connections", n.Name, p, s)
		if p != 0 || s == 0 {
			t.Errorf("%s requires TLS and accepted %v plaintext, %v TLS connections", n.Name, p, s)
		}
		checkNoRefusals(t, n)
	}
	for _, n := range c.Nodes {
		data, err := os.ReadFile(n.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if !strings.Contains(line, "refused a connection") {
				continue
			}
			credentials := strings.Contains(line, "wrong cluster key") // the old build names no reason
			for _, why := range credentialRefusals() {
				credentials = credentials || strings.Contains(line, "reason="+why+" ")
			}
			if credentials {
				t.Errorf("%s refused a cluster connection for its credentials (%s): %s", n.Name, n.LogPath, line)
			}
		}
	}
}

// credentialRefusals are the reasons of refused connections that mean
// wrong credentials (the others, a handshake cut short, happen when a
// peer stops while it dials).
func credentialRefusals() []string {
	return []string{"plaintext", "no_cert", "bad_cert", "not_node_cert", "tls_not_configured", "cluster_key"}
}

// checkNoRefusals fails the test if n's cluster port refused a
// connection for its credentials.
func checkNoRefusals(t *testing.T, n *Node) {
	t.Helper()
	for _, reason := range credentialRefusals() {
		if v := nodeMetric(t, n, `troika_cluster_conn_refused_total{reason="`+reason+`"}`); v != 0 {
			t.Errorf("%s refused %v cluster connections (%s)", n.Name, v, reason)
		}
	}
}
