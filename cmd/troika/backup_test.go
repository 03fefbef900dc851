package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
)

// The operator's procedures of deploy/runbook.md ("Back up and restore",
// "Replace a dead server") on clusters of troika processes on 127.0.0.1,
// with free ports for every socket (so they run beside other tests).

// newOpNode picks the ports of node id, all on 127.0.0.1.
func newOpNode(t *testing.T, dir, id string) *testNode {
	return newTestNode(t, dir, id, "127.0.0.1", testkit.FreePort(t, "127.0.0.1"))
}

// opCluster writes the configurations of a static cluster of the given
// nodes.
func opCluster(t *testing.T, dir string, ids ...string) []*testNode {
	var nodes []*testNode
	for _, id := range ids {
		nodes = append(nodes, newOpNode(t, dir, id))
	}
	return staticCluster(t, nodes...)
}

// wantRefused runs the CLI and checks that it fails with a message
// holding each of want.
func wantRefused(t *testing.T, env []string, want []string, args ...string) {
	t.Helper()
	wantExit(t, env, 0, want, args...)
}

// wantExit is wantRefused with exit status code (0: any failure).
func wantExit(t *testing.T, env []string, code int, want []string, args ...string) {
	t.Helper()
	out, err := cliErr(env, args...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("troika %v: %v, want it refused:\n%s", args, err, out)
	}
	if code != 0 && ee.ExitCode() != code {
		t.Fatalf("troika %v exited %d, want %d:\n%s", args, ee.ExitCode(), code, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("troika %v: the refusal does not say %q:\n%s", args, w, out)
		}
	}
}

// clusterData is what the tests compare before and after: every
// account (balances included), tariff and binding, as a node's admin API
// shows them.
type clusterData struct {
	Accounts []admin.Account
	Tariffs  []admin.Tariff
	Bindings []admin.Registration
}

func dataOf(t *testing.T, n *testNode) (clusterData, error) {
	ctx := context.Background()
	var d clusterData
	var err error
	if d.Accounts, err = n.client().Accounts(ctx); err != nil {
		return d, err
	}
	if d.Tariffs, err = n.client().Tariffs(ctx); err != nil {
		return d, err
	}
	if d.Bindings, err = n.client().Registrations(ctx, ""); err != nil {
		return d, err
	}
	for i := range d.Bindings {
		b := &d.Bindings[i]
		b.Expires = 0 // the seconds left: expires_at stays
		// What the node asked knows of the NAT keepalive is its own, not
		// replicated state.
		b.KeepaliveNode, b.Reachable, b.LastSeen = "", nil, nil
	}
	slices.SortFunc(d.Bindings, func(a, b admin.Registration) int {
		return strings.Compare(a.Account+a.Contact, b.Account+b.Contact)
	})
	return d, nil
}

// waitData waits until node n shows want.
func waitData(t *testing.T, n *testNode, want clusterData) {
	t.Helper()
	var got clusterData
	var err error
	wantJSON, _ := json.Marshal(want)
	if !testkit.Eventually(30*time.Second, func() bool {
		got, err = dataOf(t, n)
		gotJSON, _ := json.Marshal(got)
		return err == nil && bytes.Equal(gotJSON, wantJSON)
	}) {
		t.Fatalf("node %s: %d accounts, %d tariffs, %d bindings (error %v), want %d, %d, %d, the same:\n got %+v\nwant %+v",
			n.id, len(got.Accounts), len(got.Tariffs), len(got.Bindings), err, len(want.Accounts), len(want.Tariffs), len(want.Bindings), got, want)
	}
}

// waitHealth waits until node n's gossip shows member id with health.
func waitHealth(t *testing.T, n *testNode, id, health string) {
	t.Helper()
	var got string
	if !testkit.Eventually(20*time.Second, func() bool {
		st, err := n.status(t)
		if err != nil {
			return false
		}
		for _, m := range st.Members {
			if m.ID == id {
				got = m.Meta.Health
			}
		}
		return got == health
	}) {
		t.Fatalf("node %s sees %s's health %q, want %q", n.id, id, got, health)
	}
}

// seed creates a tariff and accounts with various balances (imports and
// top-ups) through node n, and registers the first phones of them with
// SIPp through sip.
func seed(t *testing.T, n *testNode, sip string, accounts, phones int) []string {
	t.Helper()
	ctx := context.Background()
	c := n.client()
	if _, err := c.PutTariff(ctx, admin.Tariff{ID: "std", Currency: "EUR", Rates: []admin.Rate{
		{Prefix: "", PerMinute: "0.02", FirstInterval: 1, NextInterval: 1},
		{Prefix: "44", PerMinute: "0.015", ConnectFee: "0.05", FirstInterval: 30, NextInterval: 6},
	}}); err != nil {
		t.Fatal(err)
	}
	var as []admin.Account
	var ids []string
	for i := range accounts {
		id := fmt.Sprintf("u%05d", i)
		ids = append(ids, id)
		a := admin.Account{ID: id, Password: sipptest.APIPassword(id), Billing: "prepaid", Balance: fmt.Sprintf("%d.%02d", i, i*7%100), TariffOut: "std"}
		if i%10 == 9 {
			a.Billing, a.Balance, a.CreditLimit = "postpaid", "0.00", "50.00"
		}
		as = append(as, a)
	}
	if err := c.ImportAccounts(ctx, as); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < accounts; i += 7 {
		if _, err := c.Topup(ctx, ids[i], admin.TopupRequest{Amount: "12.345678", Key: "seed-" + ids[i]}); err != nil {
			t.Fatal(err)
		}
	}
	st := sipptest.Run(t, sipptest.Options{Target: sip, Scenario: "reg_auth.xml", Inject: sipptest.APIUsers(ids[:phones]...), Rate: 100, Limit: 50})
	if st.OK != phones || st.Failed != 0 {
		t.Fatalf("registering %d phones through %s: %d ok, %d failed\n%s\n%s", phones, sip, st.OK, st.Failed, st.Output, st.Errors)
	}
	return ids
}

// The disaster recovery of deploy/runbook.md: a backup saved with the
// CLI from a follower, the whole cluster lost (every process killed,
// every data dir deleted), a fresh cluster started from the same
// configuration, and the backup restored into it: every account with its
// balance, every tariff and every binding is back on every node, and the
// phones' credentials work. Corrupt, truncated, foreign and newer files
// are refused first, the CLI and the API each, and change nothing; a
// second restore into the cluster, which now holds data, needs --force.
func TestSnapshotRestoresAWipedCluster(t *testing.T) {
	sipptest.Need(t)
	dir := t.TempDir()
	nodes := opCluster(t, dir, "n1", "n2", "n3")
	leader := startCluster(t, nodes)
	follower := others(nodes, leader)[0]
	const accounts, phones = 240, 120
	ids := seed(t, follower, nodes[0].sip(), accounts, phones)
	for _, n := range nodes {
		waitBindings(t, n, phones)
	}
	before, err := dataOf(t, follower)
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Accounts) != accounts || len(before.Bindings) != phones || before.Accounts[7].Balance != "19.835678" {
		t.Fatalf("seeded %d accounts, %d bindings, u00007's balance %s", len(before.Accounts), len(before.Bindings), before.Accounts[7].Balance)
	}

	env := follower.cliEnv()
	file := filepath.Join(dir, "cluster.backup")
	out := runCLI(t, env, "snapshot", "save", file)
	if !regexp.MustCompile(`(?s)^saved .*cluster.backup \(.* taken on ` + follower.id + ` at raft index \d+ .*realm "troika"\n  240 accounts, 1 tariff, .*120 bindings, 0 calls in progress, 0 xDRs\n  sha256 [0-9a-f]{64}\n`).MatchString(out) {
		t.Fatalf("troika snapshot save printed:\n%s", out)
	}
	if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the backup file: %v, mode %v; want 0600 (it holds credentials)", err, info.Mode())
	}
	wantRefused(t, env, []string{"exists", "--force"}, "snapshot", "save", file)
	out = runCLI(t, nil, "snapshot", "inspect", file) // no node needed
	for _, want := range []string{"backup format:      1", "taken on:           " + follower.id, "realm:              troika",
		"accounts:           240", "tariffs:            1", "bindings:           120", "raft members:       n1=" + nodes[0].cluster} {
		if !strings.Contains(out, want) {
			t.Fatalf("troika snapshot inspect does not show %q:\n%s", want, out)
		}
	}

	// The disaster: every node and every data dir gone.
	for _, n := range nodes {
		n.p.kill()
		if err := os.RemoveAll(n.dataDir); err != nil {
			t.Fatal(err)
		}
	}
	startCluster(t, nodes)
	empty, err := dataOf(t, nodes[2])
	if err != nil || len(empty.Accounts) != 0 || len(empty.Bindings) != 0 {
		t.Fatalf("the fresh cluster holds %d accounts, %d bindings (%v)", len(empty.Accounts), len(empty.Bindings), err)
	}

	// Bad files are refused by the CLI before it sends anything, and by
	// the node; nothing changes.
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	foreignState := fsm.New()
	testkit.MustApply(t, foreignState, &fsm.InitRealm{Realm: "other.example"})
	testkit.MustApply(t, foreignState, &fsm.PutTariff{Tariff: fsm.Tariff{ID: "x", Currency: "USD", Rates: []fsm.Rate{{PerMinute: 10_000, FirstInterval: 1, NextInterval: 1}}}})
	foreign, err := fsm.MarshalBackup(foreignState, fsm.BackupHeader{TroikaVersion: "v0.9.0", TakenOn: "other1", CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)-len(corrupt)/3] ^= 0x01
	bad := []struct {
		name      string
		data      []byte
		cli, node string // what the CLI's and the node's refusals say
		status    int
	}{
		{"corrupt", corrupt, "checksum mismatch", "checksum mismatch", 400},
		{"truncated", good[:len(good)*2/3], "truncated", "truncated", 400},
		{"newer", append([]byte("TROIKA-BACKUP 7\n"), good[len("TROIKA-BACKUP 1\n"):]...), "backup format 7 is newer", "backup format 7 is newer", 422},
		{"foreign", foreign, "", `realm "other.example", this cluster's for "troika"`, 422},
	}
	client := nodes[2].client()
	for _, b := range bad {
		f := filepath.Join(dir, b.name+".backup")
		if err := os.WriteFile(f, b.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if b.cli != "" {
			wantExit(t, env, exitInvalid, []string{f + " refused, nothing was sent", b.cli}, "snapshot", "restore", f)
			wantExit(t, nil, exitInvalid, []string{b.cli}, "snapshot", "inspect", f)
		} else {
			wantExit(t, env, exitInvalid, []string{"restore refused, nothing changed", b.node}, "snapshot", "restore", f)
		}
		_, err := client.RestoreSnapshot(context.Background(), bytes.NewReader(b.data), int64(len(b.data)), true, nil)
		var ae *admin.APIError
		if !errors.As(err, &ae) || ae.Status != b.status || !strings.Contains(ae.Msg, b.node) {
			t.Fatalf("the node took the %s file: %v; want a %d saying %q", b.name, err, b.status, b.node)
		}
	}
	for _, n := range nodes {
		if d, err := dataOf(t, n); err != nil || len(d.Accounts)+len(d.Tariffs)+len(d.Bindings) != 0 {
			t.Fatalf("after the refusals node %s holds %d accounts, %d tariffs, %d bindings (%v)", n.id, len(d.Accounts), len(d.Tariffs), len(d.Bindings), err)
		}
	}

	// The restore, through a node that does not lead.
	target := nodes[2]
	if s, _ := target.status(t); s.Cluster.State == "leader" {
		target = nodes[1]
	}
	env = target.cliEnv()
	start := time.Now()
	out = runCLI(t, env, "snapshot", "restore", file)
	took := time.Since(start)
	for _, want := range []string{"asking the leader", "to hand leadership to " + target.id, "restored: the cluster's state is the backup's",
		"240 accounts, 1 tariff, 0 IP aliases, 0 service policies, 0 vendors, 0 connections, 120 bindings"} {
		if !strings.Contains(out, want) {
			t.Fatalf("troika snapshot restore does not say %q:\n%s", want, out)
		}
	}
	for _, n := range nodes {
		waitData(t, n, before)
	}
	t.Logf("restored %d accounts and %d bindings into a fresh cluster in %s (the CLI's check, upload and restore):\n%s",
		accounts, phones, took.Round(time.Millisecond), out)

	// The restored credentials answer the cluster's challenges: phones
	// register again (through another node).
	st := sipptest.Run(t, sipptest.Options{Target: nodes[1].sip(), Scenario: "reg_auth.xml", Inject: sipptest.APIUsers(ids[phones : phones+40]...), Rate: 100})
	if st.OK != 40 || st.Failed != 0 {
		t.Fatalf("REGISTER with restored credentials: %d ok, %d failed\n%s", st.OK, st.Failed, st.Errors)
	}
	for _, n := range nodes {
		waitBindings(t, n, phones+40)
	}

	// Now the cluster holds data: a restore needs --force, and nothing
	// changes without it.
	wantExit(t, env, exitConflict, []string{"restore refused, nothing changed", "this cluster holds data", "--force"}, "snapshot", "restore", file)
	waitBindings(t, nodes[0], phones+40)
	out = runCLI(t, env, "snapshot", "restore", "--force", file)
	if !strings.Contains(out, "restored: ") {
		t.Fatalf("restore --force:\n%s", out)
	}
	for _, n := range nodes {
		waitData(t, n, before) // the 40 later bindings are gone again
	}
}

// Replace a dead server (deploy/runbook.md): on a three-node cluster one
// node is killed for good (SIGKILL, data dir deleted); remove-peer
// refuses to remove a live node and removes the dead one; a fresh node
// with a new id and an empty data dir, started with cluster.await_add,
// is refused by add-voter until it answers, then added: it catches up
// (same accounts and bindings on its admin API), registers phones with
// SIPp, and is a real voter: with another original node killed, the
// replacement and the last original still elect a leader and write.
func TestReplaceADeadServer(t *testing.T) {
	sipptest.Need(t)
	dir := t.TempDir()
	nodes := opCluster(t, dir, "n1", "n2", "n3")
	startCluster(t, nodes)
	ids := seed(t, nodes[0], nodes[0].sip(), 60, 30)
	for _, n := range nodes {
		waitBindings(t, n, 30)
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	env := n1.cliEnv()

	// n3 dies for good.
	n3.p.kill()
	if err := os.RemoveAll(n3.dataDir); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, []*testNode{n1, n2})
	var out string
	if !testkit.Eventually(20*time.Second, func() bool {
		out = runCLI(t, env, "operator", "raft", "list-peers")
		return regexp.MustCompile(`(?m)^n3 +127\.0\.0\.1:\d+ +voter +follower +dead `).MatchString(out)
	}) {
		t.Fatalf("list-peers does not show n3 dead:\n%s", out)
	}

	// Removing a live node while n3 is down would leave no quorum: refused.
	// An unknown node is not removed either.
	wantExit(t, env, exitConflict, []string{"remove-peer n2 refused, nothing changed", "removing n2 leaves the voters n1, n3, of which only n1 is alive: " +
		"fewer than the 2 a quorum needs, so the cluster would stop writing"}, "operator", "raft", "remove-peer", "n2")
	wantExit(t, env, exitNotFound, []string{`"n9" is not a member`, "n1, n2, n3"}, "operator", "raft", "remove-peer", "n9")
	out = runCLI(t, env, "operator", "raft", "remove-peer", "n3")
	if !strings.Contains(out, "removed n3 ("+n3.cluster+") from the raft configuration; voters now: n1, n2 (2; a quorum is 2, "+
		"so the cluster writes only while all of them are up: it survives no further failure)") || strings.Contains(out, "\nn3 ") {
		t.Fatalf("remove-peer n3:\n%s", out)
	}
	t.Logf("troika operator raft remove-peer n3:\n%s", out)
	// With n3 gone, removing n2 would leave n1 alone, which is a quorum
	// of one: it is refused because n2 is alive.
	wantRefused(t, env, []string{"n2 is alive", "troika drain"}, "operator", "raft", "remove-peer", "n2")

	// The replacement: a new id, a new data dir, added by the operator.
	n4 := newOpNode(t, dir, "n4")
	n4.writeConfig(t, "await_add = true", []string{n1.gossip, n2.gossip})
	wantExit(t, env, exitConflict, []string{"add-voter n4 refused, nothing changed", "no troika node of this cluster answers at " + n4.cluster,
		"start the new node first"}, "operator", "raft", "add-voter", "n4", n4.cluster)
	n4.start(t)
	// Until it is added it has no state to serve with: the others see
	// it starting, and dispatch no SIP to it.
	waitHealth(t, n1, "n4", "starting")
	wantRefused(t, env, []string{n1.cluster + " is n1's address", "remove n1 first"}, "operator", "raft", "add-voter", "n5", n1.cluster)
	out = runCLI(t, env, "operator", "raft", "add-voter", "n4", n4.cluster)
	if !strings.Contains(out, "added n4 at "+n4.cluster+" as a voter; voters now: n1, n2, n4 (3; a quorum is 2, so the cluster survives 1 failure)") {
		t.Fatalf("add-voter n4:\n%s", out)
	}
	t.Logf("troika operator raft add-voter n4 %s:\n%s", n4.cluster, out)
	start := time.Now()
	want, err := dataOf(t, n1)
	if err != nil {
		t.Fatal(err)
	}
	waitData(t, n4, want)
	t.Logf("n4 shows the cluster's %d accounts and %d bindings %s after add-voter", len(want.Accounts), len(want.Bindings), time.Since(start).Round(time.Millisecond))
	waitHealth(t, n1, "n4", "ok")
	t.Logf("n1 sees n4 healthy (SIP is dispatched to it) %s after add-voter", time.Since(start).Round(time.Millisecond))

	// It serves: phones register through it.
	st := sipptest.Run(t, sipptest.Options{Target: n4.sip(), Scenario: "reg_auth.xml", Inject: sipptest.APIUsers(ids[30:50]...), Rate: 100})
	if st.OK != 20 || st.Failed != 0 {
		t.Fatalf("REGISTER through the replacement: %d ok, %d failed\n%s", st.OK, st.Failed, st.Errors)
	}
	for _, n := range []*testNode{n1, n2, n4} {
		waitBindings(t, n, 50)
	}

	// It votes: with n1 killed, n2 and n4 are a quorum.
	n1.p.kill()
	waitLeader(t, []*testNode{n2, n4})
	st = sipptest.Run(t, sipptest.Options{Target: n2.sip(), Scenario: "reg_auth.xml", Inject: sipptest.APIUsers(ids[50:60]...), Rate: 100})
	if st.OK != 10 || st.Failed != 0 {
		t.Fatalf("REGISTER with n1 down: %d ok, %d failed\n%s", st.OK, st.Failed, st.Errors)
	}
	for _, n := range []*testNode{n2, n4} {
		waitBindings(t, n, 60)
	}
	env4 := n4.cliEnv()
	if !testkit.Eventually(20*time.Second, func() bool {
		out = runCLI(t, env4, "operator", "raft", "list-peers")
		return regexp.MustCompile(`(?m)^n4 +127\.0\.0\.1:\d+ +voter +(leader|follower) +alive `).MatchString(out) &&
			regexp.MustCompile(`(?m)^n1 +127\.0\.0\.1:\d+ +voter +follower +dead `).MatchString(out)
	}) {
		t.Fatalf("list-peers on n4 does not show n4 a live voter and n1 dead:\n%s", out)
	}
}
