//go:build linux

package chaos

import (
	"fmt"
	"testing"
	"time"
)

// A plain restart (SIGTERM, as `systemctl restart` sends, then start) of
// each node in turn under a steady REGISTER load, without a drain: a
// stopping node gives up its addresses, hands raft leadership over, says
// it is leaving before its SIP stack stops, and leaves gossip. SIPp counts
// no failed REGISTER (retransmissions cover the handovers), no binding is
// lost, and no two namespaces ever hold one address.
func TestRestartUnderLoad(t *testing.T) {
	c, vip, alias, ids := setupVIP(t, 200)
	rollUnderLoad(t, c, vip, alias, ids, "restart", "", func(n *Node) (string, []string, error) {
		from := time.Now()
		if err := n.Stop(15 * time.Second); err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("stopped %.2f s after SIGTERM", time.Since(from).Seconds()), nil, nil
	})
}
