package sipstack

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/fsm"
)

// sippRun runs testdata/reg_auth.xml (the bench scenario) against target
// for users, and returns SIPp's successful and failed call counts.
func sippRun(t *testing.T, target string, users []string) (ok, failed int) {
	t.Helper()
	dir := t.TempDir()
	inf := filepath.Join(dir, "users.csv")
	var b strings.Builder
	b.WriteString("SEQUENTIAL\n")
	for _, u := range users {
		fmt.Fprintf(&b, "%s;[authentication username=%s password=pw%s]\n", u, u, u)
	}
	if err := os.WriteFile(inf, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	stat := filepath.Join(dir, "stat.csv")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sipp", target,
		"-sf", "testdata/reg_auth.xml", "-inf", inf,
		"-i", "127.0.0.1", "-m", strconv.Itoa(len(users)), "-r", "20", "-l", "20",
		"-nostdin", "-timeout", "30s", "-timeout_error",
		"-trace_stat", "-stf", stat, "-fd", "1",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"))
	cmd.Dir = "."
	out, err := cmd.CombinedOutput()
	if err != nil {
		errs, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
		t.Fatalf("sipp against %s: %v\n%s\nerrors:\n%s", target, err, tail(string(out), 3000), tail(string(errs), 3000))
	}
	f, err := os.Open(stat)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma = ';'
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("sipp stats: %v %d rows", err, len(rows))
	}
	col := func(name string) int {
		for i, h := range rows[0] {
			if h == name {
				n, _ := strconv.Atoi(rows[len(rows)-1][i])
				return n
			}
		}
		t.Fatalf("no %s column", name)
		return 0
	}
	return col("SuccessfulCall(C)"), col("FailedCall(C)")
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// SIPp registers users through the main socket and through an alias's
// extra UDP port; the alias's bindings record the alias socket as ingress.
func TestSIPpRegisterMainAndAlias(t *testing.T) {
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Skip("sipp not in PATH")
	}
	t.Parallel()
	st := newTestState(t, false)
	var users []string
	for i := 2001; i <= 2020; i++ {
		id := strconv.Itoa(i)
		users = append(users, id)
		mustApply(t, st, &fsm.CreateAccount{Now: 1, Account: fsm.Account{ID: id, Password: "pw" + id, Billing: fsm.Prepaid, TariffOut: "std"}})
	}
	aliasIP := testIP()
	aliasPort := freePort(t, aliasIP)
	mustApply(t, st, &fsm.PutAlias{Alias: fsm.Alias{IP: aliasIP, Ports: fsm.AliasPorts{UDP: []int{aliasPort}}}})
	// SIPp 3.6 reads only the first WWW-Authenticate and knows only MD5:
	// it fails on the default order (SHA-256 first).
	ts := startServer(t, st, func(c *Config) {
		c.ServeAliases = true
		c.Registrar.Algorithms = []string{"MD5", "SHA-256"}
	})
	aliasSock := fmt.Sprintf("udp:%s:%d", aliasIP, aliasPort)
	if !contains(ts.Sockets(), aliasSock) {
		t.Fatalf("alias socket %s not open: %v", aliasSock, ts.Sockets())
	}

	main := ts.addr(t, "udp", ts.ip)
	if ok, failed := sippRun(t, main, users[:10]); ok != 10 || failed != 0 {
		t.Errorf("main socket: %d ok, %d failed", ok, failed)
	}
	if ok, failed := sippRun(t, fmt.Sprintf("%s:%d", aliasIP, aliasPort), users[10:]); ok != 10 || failed != 0 {
		t.Errorf("alias socket: %d ok, %d failed", ok, failed)
	}
	now := time.Now().UnixMilli()
	for i, u := range users {
		bs := st.Bindings(u, now)
		want := "udp:" + main
		if i >= 10 {
			want = aliasSock
		}
		if len(bs) != 1 || bs[0].Ingress != want || bs[0].Transport != "udp" {
			t.Errorf("user %s: bindings %+v, want ingress %s", u, bs, want)
		}
	}
	if n := ts.counter("troika_sip_register_total", "result", "ok"); n != 20 {
		t.Errorf("%v registrations counted", n)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
