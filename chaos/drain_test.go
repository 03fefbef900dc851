//go:build linux

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
)

// A rolling upgrade: each node is drained in turn (`POST
// /v1/cluster/drain`) under a steady REGISTER load through the virtual IP
// and through the alias's extra port, and started again from a build with
// a new version (caught up and healthy) before the next (rollUnderLoad:
// no failed REGISTER, no binding lost, never two holders). Logged per
// drain: its steps, how long it took, how long each address it held was
// held by nobody, and the load's retransmissions meanwhile. At the end
// every node runs the new build and gossips it.
func TestDrainUnderLoad(t *testing.T) {
	c, vip, alias, ids := setupVIP(t, 200)
	const nextVersion = "chaos-next"
	next := versionBuild(t, nextVersion)
	ctx, cancel := context.WithTimeout(context.Background(), 85*time.Second)
	defer cancel()
	rollUnderLoad(t, c, vip, alias, ids, "drain", next, func(n *Node) (string, []string, error) {
		from := time.Now()
		res, err := n.Drain(ctx, admin.DrainRequest{Timeout: "60s"})
		if err != nil {
			return "", res.Lines, err
		}
		detail := make([]string, len(res.Lines))
		for j, l := range res.Lines {
			detail[j] = fmt.Sprintf("%+6.2fs %s", res.At[j].Sub(from).Seconds(), l)
		}
		return fmt.Sprintf("drained in %.2f s, process exited at %.2f s", res.Took.Seconds(), res.Exited.Seconds()), detail, nil
	})
	// Every node runs the new build, and the others see it in gossip.
	for _, n := range c.Nodes {
		st, err := n.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var members struct {
			Members []struct {
				ID    string `json:"id"`
				State string `json:"state"`
				Meta  struct {
					Version string `json:"v"`
				} `json:"meta"`
			} `json:"members"`
		}
		if err := json.Unmarshal(st.Raw, &members); err != nil {
			t.Fatal(err)
		}
		if st.Version != nextVersion {
			t.Errorf("%s runs version %q after the upgrade, want %q", n.Name, st.Version, nextVersion)
		}
		for _, m := range members.Members {
			if m.State != "alive" || m.Meta.Version != nextVersion {
				t.Errorf("%s sees %s %s at version %q in gossip, want alive at %q", n.Name, m.ID, m.State, m.Meta.Version, nextVersion)
			}
		}
		if len(members.Members) != len(c.Nodes) {
			t.Errorf("%s sees %d members, want %d", n.Name, len(members.Members), len(c.Nodes))
		}
	}
}

// A node alone with the virtual IP is the last node able to hold it: its
// drain is refused before anything changes, saying what to do, and the
// node keeps serving; forced, it drains, the address is left to nobody,
// and the process exits 0.
func TestDrainLastNode(t *testing.T) {
	o := vipOptions()
	o.Nodes = 1
	c := newCluster(t, o)
	n := c.Nodes[0]
	vip := vipAddr(n.Addr)
	soleHolder(t, c, vip, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	_, err := n.Drain(ctx, admin.DrainRequest{})
	var ae *admin.APIError
	want := fmt.Sprintf("no other healthy node to take %s: start another node or use --force", vip)
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Msg, want) {
		t.Fatalf("drain of the last node: %v, want a 409 saying %q", err, want)
	}
	t.Logf("refused: %s", ae.Msg)
	if err := c.WaitHealthy(5 * time.Second); err != nil || !n.Running() {
		t.Fatalf("after the refused drain: running %v, %v", n.Running(), err)
	}
	if h := c.Holders(vip); len(h) != 1 || h[0] != n.Name {
		t.Fatalf("after the refused drain %s is held by %v", vip, h)
	}
	res, err := n.Drain(ctx, admin.DrainRequest{Force: true})
	if err != nil {
		t.Fatalf("forced drain: %v\n  %s", err, strings.Join(res.Lines, "\n  "))
	}
	t.Logf("forced drain:\n  %s\n  drained: %s", strings.Join(res.Lines, "\n  "), res.Summary)
	if !slices.ContainsFunc(res.Lines, func(l string) bool { return strings.Contains(l, "--force: nobody serves them") }) {
		t.Errorf("the forced drain did not say the address is left to nobody")
	}
	if err := c.WaitHolders(vip, 500*time.Millisecond); err != nil {
		t.Errorf("after the node left (the sampler looks every %v): %v", SampleEvery, err)
	}
}
