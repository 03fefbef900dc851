package main

import (
	"context"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/sipptest"
)

var (
	bannerRE   = regexp.MustCompile(`TROIKA_API=(\S+) TROIKA_TOKEN=(\S+)`)
	passwordRE = regexp.MustCompile(`account 1001:\s+password (\S+)`)
)

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
	if got := p2.waitOutput(t, passwordRE, time.Second)[1]; got != password {
		t.Fatalf("password changed across restart: %s -> %s", password, got)
	}
	checkBindings()
	p2.stop(t)
}
