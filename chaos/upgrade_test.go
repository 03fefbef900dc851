//go:build linux

package chaos

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/sipptest"
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
func TestUpgradeFromEarlierBuild(t *testing.T) {
	old := os.Getenv("CHAOS_OLD_TROIKA")
	if old == "" {
		t.Skip("set CHAOS_OLD_TROIKA to the binary of an earlier troika build to test an upgrade from it")
	}
	sipptest.Need(t)
	c, vip, alias, ids := setupVIPWith(t, 200, old)
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
}
