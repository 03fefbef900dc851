package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
)

// metricsOf reads GET /metrics of the node at addr: every sample by its name
// and labels as printed (troika_sip_register_total{result="ok"}).
func metricsOf(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	return testkit.ParseMetrics(res.Body)
}

// The metrics around SIPp runs on a dev node: 20 phones register, 1001
// calls 1002 three times, and 25 REGISTERs with wrong passwords come from
// one address. Each counter moves by what happened: REGISTERs by result,
// bindings, calls started and answered, xDRs written, one source blocked
// (after 20 failures a minute; the 4 REGISTERs after it refused unchecked),
// raft's commit index and proposals by at least one write each, the state
// gauges, and the build and leadership gauges say what they should.
func TestMetricsMoveWithTraffic(t *testing.T) {
	sipptest.Need(t)
	const ip = "127.0.0.54"
	p, api, token := startDevNode(t, troikaBin, ip)
	pw1001 := p.waitOutput(t, passwordRE, time.Second)[1]
	pw1002 := p.waitOutput(t, password1002RE, time.Second)[1]
	c := newClient(api, token)
	const phones = 20
	var ids []string
	var accounts []admin.Account
	for i := range phones + 25 {
		id := fmt.Sprintf("m%04d", i)
		ids = append(ids, id)
		accounts = append(accounts, admin.Account{ID: id, Password: sipptest.APIPassword(id)})
	}
	if err := c.ImportAccounts(context.Background(), accounts); err != nil {
		t.Fatal(err)
	}
	before := metricsOf(t, api)

	st := sipptest.Run(t, sipptest.Options{Target: ip + ":5060", Scenario: "reg_auth.xml", Inject: sipptest.APIUsers(ids[:phones]...), Rate: 50})
	if st.OK != phones {
		t.Fatalf("REGISTERs: %d ok, %d failed\n%s", st.OK, st.Failed, st.Errors)
	}
	// 1002 registers from the port its callee then answers on.
	const calleePort = 15091
	st = sipptest.Run(t, sipptest.Options{Target: ip + ":5060", Scenario: "reg_auth.xml", LocalPort: calleePort,
		Inject: []string{"1002;[authentication username=1002 password=" + pw1002 + "]"}})
	if st.OK != 1 {
		t.Fatalf("REGISTER of 1002: %s", st.Errors)
	}
	uasCtx, stopUAS := context.WithCancel(context.Background())
	uas := exec.CommandContext(uasCtx, "sipp", "-sf", "../../sipstack/testdata/uas.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(calleePort), "-nostdin")
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopUAS(); uas.Wait() })
	sipptest.WaitListening(t, "udp", "127.0.0.1", calleePort)
	const calls = 3
	st = sipptest.Run(t, sipptest.Options{Target: ip + ":5060", Scenario: "../../sipstack/testdata/uac_auth.xml", Calls: calls, Rate: 10,
		Extra: []string{"-s", "1002", "-au", "1001", "-ap", pw1001, "-d", "200"}})
	if st.OK != calls {
		t.Fatalf("calls: %d ok, %d failed\n%s\n%s", st.OK, st.Failed, st.Output, st.Errors)
	}

	// Wrong passwords from one address: the 21st failure within a minute
	// blocks it.
	wrong := make([]string, 25)
	for i, id := range ids[phones:] {
		wrong[i] = fmt.Sprintf("%s;[authentication username=%s password=wrong-%s]", id, id, id)
	}
	st = sipptest.Run(t, sipptest.Options{Target: ip + ":5060", Scenario: "reg_auth.xml", Inject: wrong, LocalIP: "127.0.0.9", Rate: 50})
	if st.OK != 0 {
		t.Fatalf("%d REGISTERs with a wrong password succeeded", st.OK)
	}

	var after map[string]float64
	testkit.WaitFor(t, 10*time.Second, "the calls' records in the state", func() bool {
		after = metricsOf(t, api)
		return after["troika_state_calls"] == 0 && after["troika_xdrs_written_total"]-before["troika_xdrs_written_total"] == calls
	})
	delta := func(name string) float64 { return after[name] - before[name] }
	exact := map[string]float64{
		`troika_sip_register_total{result="ok"}`:                  phones + 1,
		`troika_sip_register_total{result="forbidden"}`:           21,
		`troika_sip_register_total{result="rate_limited"}`:        4,
		`troika_state_bindings`:                                   phones + 1,
		`troika_sip_calls_started_total`:                          calls,
		`troika_sip_calls_answered_total`:                         calls,
		`troika_sip_calls_ended_total{by="caller"}`:               calls,
		`troika_xdrs_written_total`:                               calls,
		`troika_state_xdrs`:                                       calls,
		`troika_sip_auth_blocks_total`:                            1,
		`troika_sip_auth_failures_total`:                          21,
		`troika_sip_auth_refusals_total{reason="rate_limited"}`:   4,
		`troika_sip_auth_refusals_total{reason="wrong_password"}`: 21,
	}
	for name, want := range exact {
		if got := delta(name); got != want {
			t.Errorf("%s moved by %v, want %v", name, got, want)
		}
	}
	// Every binding change and every step of a call is a write through
	// raft (start, answer, end), besides the leader's own housekeeping.
	writes := float64(phones + 1 + 3*calls)
	for _, name := range []string{"troika_raft_commit_index", "troika_raft_applied_index", "troika_raft_last_log_index",
		"troika_raft_apply_seconds_count", "troika_raft_fsm_apply_seconds_count"} {
		if got := delta(name); got < writes {
			t.Errorf("%s moved by %v, want at least %v", name, got, writes)
		}
	}
	if after["troika_raft_apply_seconds_sum"] <= before["troika_raft_apply_seconds_sum"] {
		t.Errorf("troika_raft_apply_seconds_sum did not grow")
	}
	gauges := map[string]float64{
		"troika_sip_auth_blocked_sources":      1,
		"troika_state_calls":                   0,
		"troika_raft_leader":                   1,
		"troika_raft_has_leader":               1,
		"troika_ready":                         1,
		`troika_gossip_members{state="alive"}`: 1,
		`troika_build_info{commit="",go_version="` + goVersion(t) + `",modified="false",version="dev"}`: 1,
	}
	for name, want := range gauges {
		if got, ok := after[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	t.Logf("raft: commit index +%v, proposals +%v (mean %.2f ms), entries applied +%v",
		delta("troika_raft_commit_index"), delta("troika_raft_apply_seconds_count"),
		1000*delta("troika_raft_apply_seconds_sum")/delta("troika_raft_apply_seconds_count"), delta("troika_raft_fsm_apply_seconds_count"))
}

// goVersion is the Go version the binary under test was built with.
func goVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
