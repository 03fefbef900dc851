//go:build linux

package chaos

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/sipptest"
)

// An upgrade from an earlier build to this one: a cluster started from
// the binary CHAOS_OLD_TROIKA names (e.g. the last release, which may not
// know drains) is restarted node by node (SIGTERM, then this build) under
// a steady REGISTER load, so that old and new nodes serve side by side
// for a while. No REGISTER fails, no binding is lost, never two holders.
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
}
