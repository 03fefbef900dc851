package main

import (
	"context"
	"encoding/csv"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

const testToken = "cli-test-token-0123456789"

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// apiNode serves the admin API over a state (written through
// testkit.Store, as the cluster would) to which cmds are applied.
func apiNode(t *testing.T, cmds ...fsm.Command) (string, *fsm.State) {
	t.Helper()
	st := fsm.New()
	srv, err := admin.New(admin.Config{Token: testToken}, st, testkit.NewStore(st))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	for _, c := range cmds {
		testkit.MustApply(t, st, c)
	}
	return hs.URL, st
}

// billingNode serves the admin API over a state with a tariff, accounts 1001
// and 1002 (1.00 each) and two finished calls.
func billingNode(t *testing.T) (string, *fsm.State) {
	t.Helper()
	cmds := []fsm.Command{
		&fsm.PutTariff{Tariff: fsm.Tariff{ID: "t", Currency: "USD", Rates: []fsm.Rate{{PerMinute: 60_000, ConnectFee: 10_000, FirstInterval: 1, NextInterval: 1}}}},
		&fsm.CreateAccounts{Now: t0.UnixMilli(), Accounts: []fsm.Account{
			{ID: "1001", Credentials: testkit.Creds("1001", "p"), Billing: fsm.Prepaid, Balance: 1_000_000, TariffOut: "t"},
			{ID: "1002", Credentials: testkit.Creds("1002", "p"), Billing: fsm.Prepaid, Balance: 1_000_000, TariffOut: "t"},
		}},
	}
	for i, from := range []string{"1001", "1002"} {
		id := "call-" + from
		at := t0.Add(time.Duration(i) * time.Minute).UnixMilli()
		cmds = append(cmds,
			&fsm.StartCall{ID: id, Direction: fsm.DirOutgoing, Account: from, CLI: from, CLD: "555", MaxSeconds: 3600, Now: at,
				Charges: []fsm.ChargeRequest{{Account: from, Role: fsm.RoleOutgoing, Number: "555"}}},
			&fsm.AnswerCall{ID: id, ConnectAt: at + 1000},
			&fsm.EndCall{ID: id, DisconnectAt: at + 62_000, Cause: 200, CauseText: "BYE", DisconnectedBy: "callee"},
		)
	}
	return apiNode(t, cmds...)
}

// runInProc runs the CLI in this process against api and returns what it printed on stdout.
func runInProc(t *testing.T, api string, args ...string) (string, error) {
	t.Helper()
	out, _, err := runInProcIO(t, api, strings.NewReader(""), args...)
	return out, err
}

// runRoot runs the CLI in this process with args and returns what it
// printed on stdout.
func runRoot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, _, err := runRootIO(t, strings.NewReader(""), args...)
	return out, err
}

// runRootIO runs the CLI in this process with args and stdin, and
// returns what it printed on stdout and on stderr.
func runRootIO(t *testing.T, stdin io.Reader, args ...string) (string, string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	defer func() { os.Stdout = stdout }()
	out := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		out <- string(b)
	}()
	var stderr strings.Builder
	cmd := rootCmd()
	cmd.SetArgs(args)
	cmd.SetIn(stdin)
	cmd.SetErr(&stderr)
	err = cmd.ExecuteContext(context.Background())
	w.Close()
	return <-out, stderr.String(), err
}

func balance(st *fsm.State, id string) int64 { a, _ := st.Account(id); return a.Balance }

func TestCLITopup(t *testing.T) {
	api, st := billingNode(t)
	for range 2 {
		out, err := runInProc(t, api, "account", "topup", "1001", "5.00", "--key", "inv-1", "--note", "bank")
		if err != nil || !strings.Contains(out, "RESERVED") || !strings.Contains(out, "5.929") {
			t.Fatalf("topup: %v\n%s", err, out)
		}
	}
	if b := balance(st, "1001"); b != 5_929_000 { // 1.00 - 0.071 for the call + 5.00 once
		t.Fatalf("balance after the same key twice: %d", b)
	}
	if _, err := runInProc(t, api, "account", "topup", "--key", "refund-1", "1001", "--", "-1.50"); err != nil || balance(st, "1001") != 4_429_000 {
		t.Fatalf("negative top-up: %v, balance %d", err, balance(st, "1001"))
	}
	if _, err := runInProc(t, api, "account", "topup", "1001", "-1.50"); err == nil || !strings.Contains(err.Error(), "-- -5.00") {
		t.Fatalf("negative amount without --: %v", err)
	}
	if _, err := runInProc(t, api, "account", "topup", "1001", "5,00"); err == nil || !strings.Contains(err.Error(), "AMOUNT") {
		t.Fatalf("bad amount: %v", err)
	}
	if _, err := runInProc(t, api, "account", "topup", "1001", "--", "-100"); err == nil || !strings.Contains(err.Error(), "409") ||
		strings.Contains(err.Error(), "may or may not") {
		t.Fatalf("overdraft: %v", err)
	}
	if balance(st, "1001") != 4_429_000 {
		t.Fatal("refused top-ups changed the balance")
	}
	out, err := runInProc(t, api, "-o", "json", "account", "topup", "1002", "1")
	if err != nil || !strings.Contains(out, `"key": "cli-`) {
		t.Fatalf("generated key: %v\n%s", err, out)
	}
}

func TestCLIExportAndLists(t *testing.T) {
	api, st := billingNode(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "jan.csv")
	if _, err := runInProc(t, api, "xdr", "export", "--since", "2026-01-01T00:00:00Z", "--format", "csv", "--out", file); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 3 || rows[0][0] != "id" || rows[1][2] != "1001" || rows[2][2] != "1002" {
		t.Fatalf("exported %q %v", rows, err)
	}
	if _, err := runInProc(t, api, "xdr", "export", "--account", "1002", "--format", "jsonl", "--out", filepath.Join(dir, "1002.jsonl")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "1002.jsonl")); strings.Count(string(b), "\n") != 1 || !strings.Contains(string(b), `"call_id":"call-1002"`) {
		t.Fatalf("jsonl export %s", b)
	}
	// Refused exports leave no file, complete ones no temporary file.
	if _, err := runInProc(t, api, "xdr", "export", "--account", "bad id", "--out", filepath.Join(dir, "bad.csv")); err == nil || !strings.Contains(err.Error(), "account") {
		t.Fatalf("bad account: %v", err)
	}
	if _, err := runInProc(t, api, "xdr", "export", "--since", "yesterday"); err == nil || !strings.Contains(err.Error(), "--since") {
		t.Fatalf("bad --since: %v", err)
	}
	if _, err := runInProc(t, api, "xdr", "export", "--format", "xml"); err == nil || !strings.Contains(err.Error(), "--format") {
		t.Fatalf("bad --format: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("files left: %v", entries)
	}

	out, err := runInProc(t, api, "xdr", "list", "--after", "1")
	if err != nil || !strings.Contains(out, "CHARGED_S") || !strings.Contains(out, "call-1002") || strings.Contains(out, "call-1001") {
		t.Fatalf("xdr list: %v\n%s", err, out)
	}
	st.ApplyCommand(&fsm.StartCall{ID: "live", Direction: fsm.DirOutgoing, Account: "1001", CLI: "1001", CLD: "555", MaxSeconds: 3600,
		Now: time.Now().UnixMilli(), Charges: []fsm.ChargeRequest{{Account: "1001", Role: fsm.RoleOutgoing, Number: "555"}}})
	out, err = runInProc(t, api, "call", "list")
	if err != nil || !strings.Contains(out, "live") || !strings.Contains(out, "setup") || !strings.Contains(out, "0.929") {
		t.Fatalf("call list: %v\n%s", err, out)
	}
	out, err = runInProc(t, api, "-o", "json", "account", "get", "1001")
	if err != nil || !strings.Contains(out, `"reserved": "0.929"`) {
		t.Fatalf("account list: %v\n%s", err, out)
	}
}
