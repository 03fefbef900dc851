//go:build linux

package chaos

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/testkit"
)

// nodeMetric reads one sample of a node's GET /metrics (through its
// namespace); 0 when absent.
func nodeMetric(t *testing.T, n *Node, sample string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+n.APIAddr()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.Admin().HTTP.Do(req)
	if err != nil {
		t.Fatalf("%s: GET /metrics: %v", n.Name, err)
	}
	defer res.Body.Close()
	return testkit.ParseMetrics(res.Body)[sample]
}

// The dispatcher (docs/ARCHITECTURE.md): a steady REGISTER load sent to the
// virtual IP, which one node holds, is processed by all three nodes (each
// node's troika_sip_register_total grows), the holder passing the others'
// share over the cluster link; no registration fails, and the answers
// reach SIPp from the virtual IP (SIPp matches them to its calls).
func TestDispatchSpreadsVIPLoad(t *testing.T) {
	c, vip, _, ids := setupVIP(t, 400)
	holder, _ := soleHolder(t, c, vip, time.Second)
	const ok = `troika_sip_register_total{result="ok"}`
	before := map[string]float64{}
	for _, n := range c.Nodes {
		before[n.Name] = nodeMetric(t, n, ok)
	}
	remoteBefore := nodeMetric(t, holder, `troika_sip_dispatch_datagrams_total{target="remote"}`)
	res := mustLoad(t, c, RegisterLoad{Name: "dispatch", Target: sipAddr(vip, SIPPort), Users: ids, Rate: 200, Duration: 5 * time.Second}).Wait()
	if res.Err != nil || res.Failed != 0 || res.OK < 900 {
		t.Fatalf("REGISTER load through %s: %s\n%s", vip, res.Summary(), res.Errors)
	}
	total := 0.0
	for _, n := range c.Nodes {
		got := nodeMetric(t, n, ok) - before[n.Name]
		total += got
		t.Logf("%s processed %v REGISTERs (holder of %s: %v)", n.Name, got, vip, n == holder)
		if got < float64(res.OK)/10 {
			t.Errorf("%s processed %v of %d registrations: want about a third", n.Name, got, res.OK)
		}
	}
	if total < float64(res.OK) {
		t.Errorf("%v REGISTERs registered by the nodes, SIPp counted %d", total, res.OK)
	}
	remote := nodeMetric(t, holder, `troika_sip_dispatch_datagrams_total{target="remote"}`) - remoteBefore
	t.Logf("the holder %s passed %v datagrams to the others; link: sent %v, dropped %v", holder.Name, remote,
		nodeMetric(t, holder, "troika_cluster_link_sent_total"), nodeMetric(t, holder, "troika_cluster_link_dropped_total"))
	if remote == 0 {
		t.Error("the holder dispatched nothing")
	}
}
