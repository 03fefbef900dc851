package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
)

var (
	bannerRE    = regexp.MustCompile(`TROIKA_API=(\S+) TROIKA_TOKEN=(\S+)`)
	passwordRE  = regexp.MustCompile(`account 1001:\s+password (\S+)`)
	readTokenRE = regexp.MustCompile(`read token:\s+(\S+)`)
)

// startDevNode runs `troika dev` of bin with SIP on ip (no alias, no SIP
// over TLS) and the admin API on a free port of ip, and returns the
// process, the API's host:port and the admin token once the node is up.
func startDevNode(t *testing.T, bin, ip string) (p *proc, api, token string) {
	t.Helper()
	api = fmt.Sprintf("%s:%d", ip, freeTCPPort(t, ip))
	p = startProcBin(t, bin, "dev", "--data", t.TempDir(), "--sip-address", ip, "--alias", "", "--sip-tls-port", "0", "--admin", api)
	token = p.waitOutput(t, bannerRE, 30*time.Second)[2]
	return p, api, token
}

// The README's first command, as a newcomer runs it: the dev node on its
// default addresses answers OPTIONS, registers 1001 through the main
// address and through the alias's extra port (SIPp, digest auth), lists
// both bindings with their ingress socket, stops cleanly on Ctrl-C and
// still has them after a restart from its data directory.
func TestDevNodeRegistersOnMainAndAlias(t *testing.T) {
	sipptest.Need(t)
	data := t.TempDir()
	began := time.Now()
	p := startProc(t, "dev", "--data", data)
	m := p.waitOutput(t, bannerRE, 30*time.Second)
	t.Logf("dev node up in %s", time.Since(began).Round(time.Millisecond))
	api, token := m[1], m[2]
	password := p.waitOutput(t, passwordRE, time.Second)[1]
	if !strings.Contains(p.output(), "cluster port: TLS") {
		t.Errorf("the dev node's cluster port is not TLS:\n%s", p.output())
	}

	if got := sipOptions(t, "127.0.0.1:5060"); got != "SIP/2.0 200 OK" {
		t.Fatalf("OPTIONS: %q", got)
	}
	inject := []string{"1001;[authentication username=1001 password=" + password + "]"}
	for _, target := range []struct {
		addr string
		port int
	}{{"127.0.0.1:5060", 15061}, {"127.0.0.2:5070", 15062}} {
		st := sipptest.Run(t, sipptest.Options{Target: target.addr, Scenario: "reg_auth.xml", Inject: inject, LocalPort: target.port})
		if st.OK != 1 || st.Failed != 0 {
			t.Fatalf("REGISTER through %s: %d ok, %d failed\n%s\n%s", target.addr, st.OK, st.Failed, st.Output, st.Errors)
		}
	}
	wrong := []string{"1001;[authentication username=1001 password=wrong]"}
	if st := sipptest.Run(t, sipptest.Options{Target: "127.0.0.1:5060", Scenario: "reg_auth.xml", Inject: wrong, LocalPort: 15063}); st.OK != 0 {
		t.Fatal("a wrong password registered")
	}

	want := []string{"udp:127.0.0.1:5060 127.0.0.1:15061", "udp:127.0.0.2:5070 127.0.0.1:15062"}
	checkBindings := func() {
		t.Helper()
		regs, err := newClient(api, token).Registrations(context.Background(), "1001")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range regs {
			got = append(got, r.Ingress+" "+r.Source)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("bindings of 1001: %v, want %v", got, want)
		}
	}
	checkBindings()
	out := runCLI(t, []string{"TROIKA_API=" + api, "TROIKA_TOKEN=" + token}, "registration", "list")
	if !strings.Contains(out, "udp:127.0.0.2:5070") || !strings.Contains(out, "udp:127.0.0.1:5060") {
		t.Fatalf("registration list:\n%s", out)
	}

	p.stop(t)
	p2 := startProc(t, "dev", "--data", data)
	p2.waitOutput(t, bannerRE, 30*time.Second)
	// Only the password's digest is stored: the restarted node cannot
	// print it, and the one printed at first still registers.
	p2.waitOutput(t, regexp.MustCompile(`account 1001:\s+password as printed when`), time.Second)
	if st := sipptest.Run(t, sipptest.Options{Target: "127.0.0.1:5060", Scenario: "reg_auth.xml", Inject: inject, LocalPort: 15061}); st.OK != 1 {
		t.Fatalf("REGISTER with the first password after a restart: %d ok\n%s", st.OK, st.Errors)
	}
	files := 0
	filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), password) {
			t.Errorf("%s holds the demo account's password", path)
		}
		return nil
	})
	if files == 0 {
		t.Error("the data directory holds no file: nothing was checked")
	}
	checkBindings()
	p2.stop(t)
}

// The admin subcommands against a dev node: accounts and aliases made with
// the CLI take effect (a new alias opens its socket, deleting it closes
// it), and bad input is refused with a message naming the field.
func TestCLIManagesAccountsAndAliases(t *testing.T) {
	sipptest.Need(t)
	data := t.TempDir()
	p := startProc(t, "dev", "--data", data, "--sip-address", "127.0.0.51", "--alias", "", "--admin", "127.0.0.51:8080")
	m := p.waitOutput(t, bannerRE, 30*time.Second)
	env := []string{"TROIKA_API=" + m[1], "TROIKA_TOKEN=" + m[2]}
	cli := func(args ...string) string { return runCLI(t, env, args...) }

	runCLI(t, append(env, "PW3001="+sipptest.APIPassword("3001")), "account", "create", "--id", "3001", "--password-env", "PW3001",
		"--balance", "1.50", "--tariff-out", "demo")
	var a struct {
		ID, Balance string
		MaxCalls    int `json:"max_calls"`
	}
	if err := json.Unmarshal([]byte(cli("account", "update", "3001", "--max-calls", "2", "-o", "json")), &a); err != nil || a.MaxCalls != 2 || a.Balance != "1.50" {
		t.Fatalf("updated account %+v %v", a, err)
	}
	out, err := cliErr(env, "account", "create", "--id", "3002", "--generate-password", "--balance", "1.5.0")
	if err == nil || !strings.Contains(out, "balance") {
		t.Fatalf("bad balance accepted or not named:\n%s", out)
	}

	// The read token the node printed lists, and cannot change anything.
	read := []string{"TROIKA_API=" + m[1], "TROIKA_TOKEN=" + p.waitOutput(t, readTokenRE, time.Second)[1]}
	if out, err := cliErr(read, "account", "list"); err != nil || !strings.Contains(out, "3001") {
		t.Fatalf("account list with the read token: %v\n%s", err, out)
	}
	out, err = cliErr(read, "account", "delete", "3001")
	if err == nil || !strings.Contains(out, "403") || !strings.Contains(out, "this token is read-only") || !strings.Contains(out, "hint: this needs a token of scope admin") {
		t.Fatalf("account delete with the read token:\n%s", out)
	}

	cli("alias", "add", "127.0.0.52", "--udp", "5072")
	waitSocket(t, m[1], m[2], "udp:127.0.0.52:5072", true)
	st := sipptest.Run(t, sipptest.Options{Target: "127.0.0.52:5072", Scenario: "reg_auth.xml", Inject: sipptest.APIUsers("3001"), LocalIP: "127.0.0.51"})
	if st.OK != 1 {
		t.Fatalf("REGISTER through the new alias: %d ok\n%s", st.OK, st.Errors)
	}
	if out := cli("registration", "list", "--account", "3001"); !strings.Contains(out, "udp:127.0.0.52:5072") {
		t.Fatalf("binding through the alias:\n%s", out)
	}
	// The operator drops the binding: the phone is gone until it
	// registers again.
	if out := cli("registration", "drop", "3001"); !strings.Contains(out, "1 registration(s) of 3001 dropped") {
		t.Fatalf("registration drop:\n%s", out)
	}
	if out := cli("registration", "list", "--account", "3001"); strings.Contains(out, "udp:127.0.0.52:5072") {
		t.Fatalf("the dropped binding is still listed:\n%s", out)
	}
	// A source that keeps failing is blocked (the default limit is 20 a
	// minute): guesses spread over three user names, so that no one user
	// name's guard (10 at once) stops them first. The operator sees the
	// block and lifts it.
	reg := func(from string, inject []string, calls int) sipptest.Stats {
		return sipptest.Run(t, sipptest.Options{Target: "127.0.0.52:5072", Scenario: "reg_auth.xml", Inject: inject, Calls: calls, LocalIP: from})
	}
	guess := func(users ...string) []string {
		var out []string
		for _, u := range users {
			out = append(out, u+";[authentication username="+u+" password=not-the-password]")
		}
		return out
	}
	// refusedUntilUnblocked: 3001 with its password cannot register from
	// an address until `troika auth unblock` with flags lifts the block.
	refusedUntilUnblocked := func(from, blocked string, flags ...string) {
		t.Helper()
		if st := reg(from, sipptest.APIUsers("3001"), 1); st.OK != 0 {
			t.Fatalf("%s registered: %d ok", blocked, st.OK)
		}
		cli(append([]string{"auth", "unblock"}, flags...)...)
		if st := reg(from, sipptest.APIUsers("3001"), 1); st.OK != 1 {
			t.Fatalf("after troika auth unblock %s: %d ok\n%s", strings.Join(flags, " "), st.OK, st.Errors)
		}
	}
	reg("127.0.0.53", guess("3001", "1001", "1002"), 22)
	if out := cli("auth", "blocks"); !regexpMatch(`(?m)^source\s+127\.0\.0\.53\s`, out) || regexpMatch(`(?m)^user\s`, out) {
		t.Fatalf("auth blocks after 22 wrong passwords from 127.0.0.53:\n%s", out)
	}
	refusedUntilUnblocked("127.0.0.53", "a blocked source", "--source", "127.0.0.53")
	// Guesses at one user name from another address use up its guard:
	// a new address of that user waits (503) until the operator refills it.
	reg("127.0.0.54", guess("3001"), 12)
	if out := cli("auth", "blocks"); !regexpMatch(`(?m)^user\s+3001\s`, out) {
		t.Fatalf("auth blocks after 12 wrong passwords for 3001:\n%s", out)
	}
	refusedUntilUnblocked("127.0.0.55", "a throttled user name from a new address", "--user", "3001")

	cli("alias", "delete", "127.0.0.52")
	waitSocket(t, m[1], m[2], "udp:127.0.0.52:5072", false)
	// 3001 has a registered phone: deleting it needs --force.
	if out, err := cliErr(env, "account", "delete", "3001"); err == nil || !strings.Contains(out, "registered contact") || !strings.Contains(out, "--force") {
		t.Fatalf("deleting an account with a registered phone:\n%s", out)
	}
	cli("account", "delete", "3001", "--force")
	if out, err := cliErr(env, "account", "get", "3001"); err == nil || !strings.Contains(out, "404") {
		t.Fatalf("deleted account still there:\n%s", out)
	}
	p.stop(t)
}

// waitSocket waits until the node does (or does not) list a SIP socket.
func waitSocket(t *testing.T, api, token, name string, open bool) {
	t.Helper()
	if !testkit.Eventually(10*time.Second, func() bool {
		raw, err := newClient(api, token).ClusterStatus(context.Background())
		if err != nil {
			return false
		}
		var s struct {
			Sockets []string `json:"sip_sockets"`
		}
		json.Unmarshal(raw, &s)
		return slices.Contains(s.Sockets, name) == open
	}) {
		t.Fatalf("socket %s open=%v not reached", name, open)
	}
}
