package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// bigState is a state of many accounts, each with a binding: a backup of
// it is larger than the API's usual 8 MiB body limit.
func bigState(t *testing.T, accounts int) *fsm.State {
	t.Helper()
	st := fsm.New()
	testkit.MustApply(t, st, &fsm.InitRealm{Realm: "troika"})
	now := time.Now().UnixMilli()
	for start := 0; start < accounts; start += 5000 {
		cmd := &fsm.CreateAccounts{Now: now}
		for i := start; i < min(start+5000, accounts); i++ {
			id := fmt.Sprintf("big%06d", i)
			cmd.Accounts = append(cmd.Accounts, fsm.Account{ID: id, Billing: fsm.Prepaid, Balance: int64(i) * 10_000,
				Credentials: fsm.HashCredentials(id, "troika", "Pw-"+id+"-x")})
		}
		testkit.MustApply(t, st, cmd)
	}
	for i := range accounts {
		id := fmt.Sprintf("big%06d", i)
		testkit.MustApply(t, st, &fsm.Register{AOR: id, CallID: "reg-" + id, CSeq: 1, Now: now, Bindings: []fsm.Binding{{
			Contact: "sip:" + id + "@192.0.2.77:5060", Source: "192.0.2.77:5060", Transport: "udp",
			Ingress: "udp:127.0.0.1:5060", ExpiresAt: now + 3_600_000, Q: -1}}})
	}
	return st
}

// A backup over the API's 8 MiB body limit restores into a fresh node,
// which reports each step and keeps its own nonce secret; a read token
// neither saves nor restores (a backup holds every digest credential);
// a save then gives the same state back.
func TestRestoreOfALargeBackup(t *testing.T) {
	const accounts = 40_000
	data, err := fsm.MarshalBackup(bigState(t, accounts), fsm.BackupHeader{TroikaVersion: "test", TakenOn: "old1", CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(data) <= 8<<20 {
		t.Fatalf("the backup is %d bytes: make it larger than the API's 8 MiB body limit", len(data))
	}

	dir := t.TempDir()
	const ops, noc = "snap-ops-token-0123456789", "snap-noc-token-0123456789"
	nodes, _ := startNodes(t, []Config{{
		NodeID: "snap", DataDir: filepath.Join(dir, "data"),
		Cluster: ClusterConfig{Bind: freeAddr(t, "tcp"), Key: "snapshot-test-cluster-key", Bootstrap: true, GossipBind: freeAddr(t, "tcp")},
		SIP:     SIPConfig{Addresses: []string{"127.0.0.1"}, UDPPorts: []int{portOf(t, freeAddr(t, "udp"))}, TCPPorts: []int{}},
		Admin: AdminConfig{Listen: "127.0.0.1:0", Tokens: []AdminToken{
			{Name: "ops", Scope: "admin", Token: ops}, {Name: "noc", Scope: "read", Token: noc}}},
	}})
	n := nodes[0]
	testkit.WaitFor(t, 10*time.Second, "the node's nonce secret", func() bool { return n.State().NonceSecret() != nil })
	secret := n.State().NonceSecret()
	ctx := context.Background()

	read := admin.NewClient(n.AdminAddr(), noc)
	var ae *admin.APIError
	if _, _, err := read.SaveSnapshot(ctx, false); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("save with a read token: %v, want 403", err)
	}
	if _, err := read.RestoreSnapshot(ctx, bytes.NewReader(data), int64(len(data)), false, nil); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("restore with a read token: %v, want 403", err)
	}

	if peers, err := read.RaftPeers(ctx); err != nil || len(peers) != 1 || peers[0].ID != "snap" || !peers[0].Leader {
		t.Fatalf("the raft peers with a read token: %+v, %v", peers, err)
	}
	if _, err := read.RemovePeer(ctx, admin.RemovePeerRequest{ID: "snap"}); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("remove-peer with a read token: %v, want 403", err)
	}
	c := admin.NewClient(n.AdminAddr(), ops)
	if err := c.Do(ctx, http.MethodPost, "/v1/snapshot/save?stale=maybe", nil, nil); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Field != "stale" {
		t.Fatalf("save?stale=maybe: %v, want a 400 naming stale", err)
	}
	if err := c.Do(ctx, http.MethodPost, "/v1/snapshot/restore?force=true&fast=1", nil, nil); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Field != "fast" {
		t.Fatalf("restore?fast=1: %v, want a 400 naming fast", err)
	}
	if _, err := c.RemovePeer(ctx, admin.RemovePeerRequest{ID: "snap", Force: true}); !errors.As(err, &ae) || ae.Status != http.StatusConflict ||
		!strings.Contains(ae.Msg, "only voter") {
		t.Fatalf("removing the only voter, forced: %v, want a 409", err)
	}
	var lines []string
	start := time.Now()
	summary, err := c.RestoreSnapshot(ctx, bytes.NewReader(data), int64(len(data)), false, func(l string) { lines = append(lines, l) })
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	want := fmt.Sprintf("%d accounts, 0 tariffs, 0 IP aliases, 0 service policies, 0 vendors, 0 connections, %d bindings", accounts, accounts)
	if !strings.Contains(summary, want) || len(lines) < 2 || !strings.HasPrefix(lines[0], "received and checked the backup") ||
		!strings.Contains(lines[0], "taken on old1") {
		t.Fatalf("restore said %q, then %q; want the steps and %q", lines, summary, want)
	}
	got := n.State().Counts()
	if got.Accounts != accounts || got.Bindings != accounts {
		t.Fatalf("the node holds %+v after the restore", got)
	}
	if a, ok := n.State().Account("big012345"); !ok || a.Balance != 123_450_000 {
		t.Fatalf("big012345 restored as %+v %v", a, ok)
	}
	if !bytes.Equal(n.State().NonceSecret(), secret) {
		t.Fatal("the restore replaced the cluster's nonce secret: phones' nonces would go stale")
	}
	t.Logf("restored a %.1f MiB backup (%d accounts, %d bindings) in %s", float64(len(data))/(1<<20), accounts, accounts, took.Round(time.Millisecond))

	body, size, err := c.SaveSnapshot(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := io.ReadAll(body)
	body.Close()
	if err != nil || int64(len(saved)) != size {
		t.Fatalf("saved %d of %d bytes: %v", len(saved), size, err)
	}
	h, st, err := fsm.ReadBackup(bytes.NewReader(saved), nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.TakenOn != "snap" || h.RaftIndex == 0 || len(h.Nodes) != 1 || h.Nodes[0].ID != "snap" || h.Counts.Accounts != accounts ||
		st.Counts() != got {
		t.Fatalf("saved header %+v, state %+v", h, st.Counts())
	}
}

// A follower's backup holds every write acknowledged before it was asked
// for (it catches up with the leader first). Without a quorum the
// follower cannot show its replica is current: a save is refused, with
// what to do, and --stale saves the replica as it is.
func TestSaveOnAFollower(t *testing.T) {
	tc := startTestCluster(t)
	leader := tc.waitLeader(t, tc.nodes...)
	follower := tc.others(leader)[0]
	ctx := context.Background()
	viaLeader := admin.NewClient(leader.AdminAddr(), drainTestToken)
	viaFollower := admin.NewClient(follower.AdminAddr(), drainTestToken)
	save := func(stale bool) (fsm.BackupHeader, *fsm.State, error) {
		body, _, err := viaFollower.SaveSnapshot(ctx, stale)
		if err != nil {
			return fsm.BackupHeader{}, nil, err
		}
		defer body.Close()
		return fsm.ReadBackup(body, nil)
	}
	for i := range 10 {
		id := fmt.Sprintf("f%03d", i)
		if _, err := viaLeader.CreateAccount(ctx, admin.Account{ID: id, Password: "Follower-Backup-Pw-" + fmt.Sprint(i*7919), Balance: "1.50"}); err != nil {
			t.Fatal(err)
		}
		h, st, err := save(false)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := st.Account(id); !ok || h.TakenOn != follower.cfg.NodeID || h.Counts.Accounts != i+1 {
			t.Fatalf("a backup from %s right after account %s was created holds %s (taken on %s)", follower.cfg.NodeID, id, h.Counts, h.TakenOn)
		}
	}

	for _, n := range tc.others(follower) {
		for i, m := range tc.nodes {
			if m == n {
				tc.cancel[i]()
				n.Wait()
			}
		}
	}
	_, _, err := save(false)
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || !strings.Contains(ae.Msg, "may be behind the cluster") ||
		!strings.Contains(ae.Msg, "--stale") {
		t.Fatalf("a save without a quorum: %v; want a 503 that suggests --stale", err)
	}
	h, st, err := save(true)
	if err != nil || st.Counts().Accounts != 10 || h.Counts.Accounts != 10 {
		t.Fatalf("a stale save without a quorum: %+v, %v", h, err)
	}
}
