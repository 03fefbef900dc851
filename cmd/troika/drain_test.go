package main

import (
	"strings"
	"testing"
	"time"
)

// `troika drain` against the leader of three troika processes prints each
// step as it happens and exits 0, and so does the drained agent; the other
// two elect a leader. Draining one of the two left is refused (it would
// lose the raft quorum): the CLI exits non-zero and says what to do.
func TestCLIDrain(t *testing.T) {
	nodes := threeNodes(t)
	leader := startCluster(t, nodes)
	env := []string{"TROIKA_TOKEN=" + clusterToken}
	out, err := cliErr(env, "drain", "--api", leader.api, "--timeout", "30s")
	if err != nil {
		t.Fatalf("troika drain: %v\n%s\nnode log:\n%s", err, out, leader.p.output())
	}
	for _, want := range []string{"started (timeout 30s)", "leadership: this node leads; handing it over", "leads now",
		"calls: none ringing here", "left gossip", "drained: " + leader.id + " left the cluster"} {
		if !strings.Contains(out, want) {
			t.Errorf("drain output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("troika drain:\n%s", out)
	select {
	case <-leader.p.done:
		if !leader.p.cmd.ProcessState.Success() {
			t.Fatalf("the drained agent exited with %v:\n%s", leader.p.cmd.ProcessState, leader.p.output())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the drained agent still runs 20 s after the drain:\n%s", leader.p.output())
	}
	rest := others(nodes, leader)
	waitLeader(t, rest)

	out, err = cliErr(env, "drain", "--api", rest[0].api)
	if err == nil || !strings.Contains(out, "drain refused") || !strings.Contains(out, "--force") {
		t.Fatalf("draining a node that would leave no quorum: %v\n%s", err, out)
	}
	t.Logf("second drain: %s", strings.TrimSpace(out))
}
