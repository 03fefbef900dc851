package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/internal/testkit"
)

// readyz reads GET /readyz of node n: the status code and the checks.
func readyz(t *testing.T, n *testNode) (int, admin.Readiness) {
	t.Helper()
	res, err := http.Get("http://" + n.api + "/readyz")
	if err != nil {
		return 0, admin.Readiness{}
	}
	defer res.Body.Close()
	var rd admin.Readiness
	if err := json.NewDecoder(res.Body).Decode(&rd); err != nil {
		t.Fatalf("%s: GET /readyz: %v", n.id, err)
	}
	return res.StatusCode, rd
}

// staleHeader reads GET /v1/accounts of node n and returns its
// X-Troika-Stale header.
func staleHeader(t *testing.T, n *testNode) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+n.api+"/v1/accounts", nil)
	req.Header.Set("Authorization", "Bearer "+clusterToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s: GET /v1/accounts = %d", n.id, res.StatusCode)
	}
	return res.Header.Get(admin.StaleHeader)
}

func check(rd admin.Readiness, name string) admin.ReadyCheck {
	for _, c := range rd.Checks {
		if c.Name == name {
			return c
		}
	}
	return admin.ReadyCheck{}
}

// clusterStatus runs `troika cluster status` against node n and returns
// its stdout, stderr and exit status.
func clusterStatus(t *testing.T, n *testNode) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(troikaBin, "cluster", "status")
	cmd.Env = append(os.Environ(), n.cliEnv()...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// Honest health on three troika processes. All up: every node is ready
// (/readyz 200, each check passing), `troika cluster status` shows the
// three members alive and healthy and exits 0. Then two nodes are frozen
// (SIGSTOP: cut off, as a partition would): the third loses its leader,
// /readyz answers 503 naming the leader check, its reads carry
// X-Troika-Stale, and `troika cluster status` marks the view stale, shows
// the frozen members dead without a health and exits 5 (no quorum). Thawed,
// the node is ready again and the status exits 0.
func TestHealthReadinessAndQuorum(t *testing.T) {
	nodes := threeNodes(t)
	leader := startCluster(t, nodes)
	for _, n := range nodes {
		var rd admin.Readiness
		var code int
		if !testkit.Eventually(20*time.Second, func() bool { code, rd = readyz(t, n); return code == http.StatusOK }) {
			t.Fatalf("%s not ready within 20 s: %d %+v", n.id, code, rd)
		}
		for _, name := range []string{admin.CheckStarted, admin.CheckLeader, admin.CheckCaughtUp, admin.CheckAddresses} {
			if c := check(rd, name); !c.OK {
				t.Errorf("%s ready with check %s %+v", n.id, name, c)
			}
		}
		res, err := http.Get("http://" + n.api + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		var live admin.Liveness
		json.NewDecoder(res.Body).Decode(&live)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || live.Status != "ok" || live.Node != n.id || live.Version == "" {
			t.Errorf("%s: GET /healthz = %d %+v", n.id, res.StatusCode, live)
		}
	}
	var out string
	if !testkit.Eventually(20*time.Second, func() bool {
		var code int
		out, _, code = clusterStatus(t, nodes[0])
		for _, n := range nodes {
			if !regexp.MustCompile(`(?m)^` + n.id + ` +(leader|voter) +alive +ok +`).MatchString(out) {
				return false
			}
		}
		return code == 0 && strings.Contains(out, "quorum: yes (3 of 3 voters alive, 2 needed)") && strings.Contains(out, "ready: yes")
	}) {
		t.Fatalf("cluster status of a healthy cluster:\n%s", out)
	}

	if h := staleHeader(t, nodes[0]); h != "" {
		t.Errorf("a read with a leader known: %s %q", admin.StaleHeader, h)
	}

	// Freeze two nodes; the third is cut off from any leader.
	var lone *testNode
	var frozen []*testNode
	for _, n := range nodes {
		if lone == nil && n != leader {
			lone = n
			continue
		}
		frozen = append(frozen, n)
	}
	for _, n := range frozen {
		if err := n.p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.p.cmd.Process.Signal(syscall.SIGCONT) })
	}
	t.Logf("froze %s and %s (leader %s); watching %s", frozen[0].id, frozen[1].id, leader.id, lone.id)
	var rd admin.Readiness
	var code int
	if !testkit.Eventually(20*time.Second, func() bool {
		code, rd = readyz(t, lone)
		return code == http.StatusServiceUnavailable && !check(rd, admin.CheckLeader).OK
	}) {
		t.Fatalf("%s cut off from the leader: GET /readyz = %d %+v", lone.id, code, rd)
	}
	if rd.Ready || check(rd, admin.CheckCaughtUp).OK {
		t.Errorf("without a leader, readiness %+v", rd)
	}
	t.Logf("cut off: %s: %s", admin.CheckLeader, check(rd, admin.CheckLeader).Detail)

	if h := staleHeader(t, lone); h != "true" {
		t.Errorf("a read without a leader: %s %q", admin.StaleHeader, h)
	}

	var errOut string
	dead := func(id string) *regexp.Regexp {
		return regexp.MustCompile(`(?m)^` + id + ` +(leader|voter) +(dead|suspect) +- +`)
	}
	if !testkit.Eventually(20*time.Second, func() bool {
		out, errOut, code = clusterStatus(t, lone)
		return code == exitUnavailable && dead(frozen[0].id).MatchString(out) && dead(frozen[1].id).MatchString(out)
	}) {
		t.Fatalf("cluster status from %s without quorum: exit %d\n%s\n%s", lone.id, code, out, errOut)
	}
	for _, want := range []string{"STALE: " + lone.id + " knows no raft leader", "quorum: NO (1 of 3 voters alive, 2 needed)", "ready: NO (", "leader none"} {
		if !strings.Contains(out, want) {
			t.Errorf("cluster status without quorum lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "error: no quorum: "+lone.id+" knows no raft leader") {
		t.Errorf("cluster status without quorum, stderr:\n%s", errOut)
	}
	// Other reads answer, with a warning.
	list := exec.Command(troikaBin, "account", "list")
	list.Env = append(os.Environ(), lone.cliEnv()...)
	var listErr strings.Builder
	list.Stderr = &listErr
	if err := list.Run(); err != nil || !strings.Contains(listErr.String(), "knows no raft leader (no quorum, or it is cut off): its answer may be stale") {
		t.Errorf("troika account list without a leader: %v, stderr:\n%s", err, listErr.String())
	}
	t.Logf("cluster status without quorum (exit %d):\n%s%s", code, out, errOut)

	for _, n := range frozen {
		n.p.cmd.Process.Signal(syscall.SIGCONT)
	}
	if !testkit.Eventually(30*time.Second, func() bool { code, rd = readyz(t, lone); return code == http.StatusOK }) {
		t.Fatalf("%s not ready again after the thaw: %d %+v", lone.id, code, rd)
	}
	if !testkit.Eventually(20*time.Second, func() bool { out, errOut, code = clusterStatus(t, lone); return code == 0 }) {
		t.Fatalf("cluster status after the thaw: exit %d\n%s\n%s", code, out, errOut)
	}
}
