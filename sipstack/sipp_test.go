package sipstack

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
)

// sippRun runs the bench's REGISTER scenario (reg_auth.xml) against
// target for users, and returns SIPp's successful and failed counts.
func sippRun(t *testing.T, target string, users []string) (ok, failed int) {
	t.Helper()
	st := sipptest.Run(t, sipptest.Options{Target: target, Scenario: "reg_auth.xml", Inject: sipptest.Users(users...),
		Timeout: 30 * time.Second})
	return st.OK, st.Failed
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
	sipptest.Need(t)
	t.Parallel()
	st := newTestState(t, false)
	var users []string
	for i := 2001; i <= 2020; i++ {
		id := strconv.Itoa(i)
		users = append(users, id)
		testkit.MustApply(t, st, &fsm.CreateAccount{Now: 1, Account: fsm.Account{ID: id, Credentials: testkit.Creds(id, "pw"+id), Billing: fsm.Prepaid, TariffOut: "std"}})
	}
	aliasIP := testIP()
	aliasPort := testkit.FreePort(t, aliasIP)
	testkit.MustApply(t, st, &fsm.PutAlias{Alias: fsm.Alias{IP: aliasIP, Ports: fsm.AliasPorts{UDP: []int{aliasPort}}}})
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
