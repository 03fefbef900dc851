package main

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
)

// policyNode serves the admin API over a state with a tariff "cost" and
// accounts 44123 and 1002.
func policyNode(t *testing.T) (string, *fsm.State) {
	t.Helper()
	return apiNode(t,
		&fsm.PutTariff{Tariff: fsm.Tariff{ID: "cost", Currency: "USD", Rates: []fsm.Rate{{PerMinute: 5_000, FirstInterval: 1, NextInterval: 1}}}},
		&fsm.CreateAccounts{Now: t0.UnixMilli(), Accounts: []fsm.Account{
			{ID: "44123", Credentials: testkit.Creds("44123", "p"), Billing: fsm.Prepaid},
			{ID: "1002", Credentials: testkit.Creds("1002", "p"), Billing: fsm.Prepaid},
		}},
	)
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one with %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not say %q", err, p)
		}
	}
}

// The seed's redirect-server example, configured from the CLI: a policy
// trusting two PBXs, an account delivering to a redirect server under it.
func TestCLIServicePolicies(t *testing.T) {
	api, st := policyNode(t)
	out, err := runInProc(t, api, "policy", "create", "--id", "easycall", "--trusted", "193.148.210.22", "--trusted", "195.111.134.55",
		"--untrusted-action", "reject")
	if err != nil || !strings.Contains(out, "UNTRUSTED_ACTION") || !strings.Contains(out, "193.148.210.22,195.111.134.55") || !strings.Contains(out, "reject") {
		t.Fatalf("create: %v\n%s", err, out)
	}
	p, _ := st.ServicePolicy("easycall")
	if !reflect.DeepEqual(p.Redirect, fsm.RedirectPolicy{TrustedNetworks: []string{"193.148.210.22", "195.111.134.55"}, UntrustedAction: "reject"}) {
		t.Fatalf("stored %+v", p)
	}
	out, err = runInProc(t, api, "-o", "json", "policy", "get", "easycall")
	var got admin.ServicePolicy
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.Redirect.MaxRedirects != 3 || len(got.Redirect.TrustedNetworks) != 2 {
		t.Fatalf("get: %v\n%s", err, out)
	}
	if _, err := runInProc(t, api, "policy", "create", "--id", "office", "--trusted", "10.0.0.0/8,pbx.example.com",
		"--untrusted-action", "new_call_authorization", "--max-redirects", "2"); err != nil {
		t.Fatal(err)
	}
	out, err = runInProc(t, api, "policy", "list")
	if err != nil || !strings.Contains(out, "easycall") || !strings.Contains(out, "10.0.0.0/8,pbx.example.com") || !strings.Contains(out, "new_call_authorization") {
		t.Fatalf("list: %v\n%s", err, out)
	}

	// Refusals name the field and change nothing.
	_, err = runInProc(t, api, "policy", "create", "--id", "bad", "--trusted", "1.2.3.4/33", "--untrusted-action", "reject")
	wantErr(t, err, "400", "redirect.trusted_networks", `"1.2.3.4/33"`)
	_, err = runInProc(t, api, "policy", "create", "--id", "bad", "--trusted", "1.2.3.4")
	wantErr(t, err, "400", "redirect.untrusted_action")
	_, err = runInProc(t, api, "policy", "create", "--id", "bad", "--untrusted-action", "reject", "--max-redirects", "50")
	wantErr(t, err, "400", "redirect.max_redirects")
	if n := st.Counts().ServicePolicies; n != 2 {
		t.Fatalf("%d policies after refusals", n)
	}

	// The seed's account: incoming to the redirect server, under the policy.
	if _, err := runInProc(t, api, "account", "create", "--id", "80032555939", "--password-file", passwordFile(t, sipptest.APIPassword("80032555939")), "--service-policy", "easycall",
		"--incoming-static", "udp:55.55.5.6:5060"); err != nil {
		t.Fatal(err)
	}
	if a, _ := st.Account("80032555939"); a.ServicePolicy != "easycall" || a.Incoming != (fsm.Incoming{Mode: "static", Host: "55.55.5.6", Port: 5060, Transport: "udp"}) {
		t.Fatalf("account %+v", a)
	}
	_, err = runInProc(t, api, "policy", "delete", "easycall")
	wantErr(t, err, "409", "80032555939")
	if _, err := runInProc(t, api, "account", "update", "80032555939", "--service-policy", "", "--incoming-registered"); err != nil {
		t.Fatal(err)
	}
	if a, _ := st.Account("80032555939"); a.ServicePolicy != "" || a.Incoming.Mode != "registered" || a.Incoming.Host != "" {
		t.Fatalf("account after update %+v", a)
	}
	if out, err := runInProc(t, api, "policy", "delete", "easycall"); err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	_, err = runInProc(t, api, "policy", "get", "easycall")
	wantErr(t, err, "404")
}

// The seed's vendor example, configured from the CLI, with the rules
// checked by a dry run before traffic.
func TestCLIVendorsAndConnections(t *testing.T) {
	api, st := policyNode(t)
	out, err := runInProc(t, api, "vendor", "create", "--id", "carrier1", "--name", "Carrier One", "--username", "carrier1", "--password-file", passwordFile(t, "S3cret-vendor"))
	if err != nil || !strings.Contains(out, "Carrier One") || strings.Contains(out, "S3cret-vendor") {
		t.Fatalf("vendor create: %v\n%s", err, out)
	}
	if v, _ := st.Vendor("carrier1"); !reflect.DeepEqual(v.Credentials, testkit.Creds("carrier1", "S3cret-vendor")) {
		t.Fatalf("stored %+v", v)
	}
	out, err = runInProc(t, api, "-o", "json", "vendor", "list")
	if err != nil || strings.Contains(out, "S3cret-vendor") || !strings.Contains(out, `"has_password": true`) {
		t.Fatalf("vendor list: %v\n%s", err, out)
	}
	_, err = runInProc(t, api, "vendor", "create", "--id", "v2", "--username", "u2")
	wantErr(t, err, "SIP password for vendor user u2", "--password-file")

	out, err = runInProc(t, api, "connection", "create", "--id", "carrier1-sip", "--vendor", "carrier1", "--remote-ip", "1.2.3.4",
		"--remote-ip", "10.0.0.0/8", "--tariff", "cost", "--cld-rules", `s/^00/+/; s/^\+44/44/`)
	if err != nil || !strings.Contains(out, "from_vendor_sip") || !strings.Contains(out, "1.2.3.4,10.0.0.0/8") {
		t.Fatalf("connection create: %v\n%s", err, out)
	}
	c, _ := st.Connection("carrier1-sip")
	if !reflect.DeepEqual(c.RemoteIPs, []string{"1.2.3.4", "10.0.0.0/8"}) || c.TranslationCLD != `s/^00/+/; s/^\+44/44/` || c.Kind != "from_vendor_sip" {
		t.Fatalf("stored %+v", c)
	}
	out, err = runInProc(t, api, "-o", "json", "connection", "get", "carrier1-sip")
	if err != nil || !strings.Contains(out, `"cld": "s/^00/+/; s/^\\+44/44/"`) {
		t.Fatalf("connection get: %v\n%s", err, out)
	}

	// Dry runs: to an account, to no account, and a hostile rule.
	out, err = runInProc(t, api, "connection", "translate", "carrier1-sip", "--cld", "0044123", "--cli", "0012065551201")
	if err != nil || !strings.Contains(out, "TRANSLATED") || !regexpMatch(`cld\s+0044123\s+44123\s+44123`, out) || !regexpMatch(`cli\s+0012065551201\s+0012065551201`, out) {
		t.Fatalf("translate: %v\n%s", err, out)
	}
	out, err = runInProc(t, api, "connection", "translate", "carrier1-sip", "--cld", "0044999")
	if err != nil || !strings.Contains(out, "refused (404)") {
		t.Fatalf("translate to no account: %v\n%s", err, out)
	}
	out, err = runInProc(t, api, "-o", "json", "connection", "translate", "carrier1-sip", "--cld", "0044123")
	var tr admin.TranslateResult
	if err != nil || json.Unmarshal([]byte(out), &tr) != nil || tr.CLD != "44123" || tr.CLDAccount == nil || *tr.CLDAccount != "44123" {
		t.Fatalf("translate json: %v\n%s", err, out)
	}
	_, err = runInProc(t, api, "connection", "translate", "carrier1-sip")
	wantErr(t, err, "--cld")
	if _, err := runInProc(t, api, "connection", "create", "--id", "evil", "--vendor", "carrier1", "--remote-ip", "192.0.2.1",
		"--tariff", "cost", "--cld-rules", `s/(a+)+$/x/`); err != nil {
		t.Fatal(err)
	}
	_, err = runInProc(t, api, "connection", "translate", "evil", "--cld", strings.Repeat("a", 40)+"!")
	wantErr(t, err, "422", `rule 1 "s/(a+)+$/x/"`, "timed out")

	// Refusals name the field (and the rule) and change nothing.
	_, err = runInProc(t, api, "connection", "create", "--id", "x", "--vendor", "carrier1", "--remote-ip", "1.2.3", "--tariff", "cost")
	wantErr(t, err, "400", "remote_ips[0]")
	_, err = runInProc(t, api, "connection", "create", "--id", "x", "--vendor", "nope", "--remote-ip", "1.2.3.4", "--tariff", "cost")
	wantErr(t, err, "400", "vendor")
	_, err = runInProc(t, api, "connection", "create", "--id", "x", "--vendor", "carrier1", "--remote-ip", "1.2.3.4", "--tariff", "cost",
		"--cld-rules", `s/^00/+/; s/(/x/`)
	wantErr(t, err, "400", "translation.cld", `rule 2 "s/(/x/"`)
	_, err = runInProc(t, api, "connection", "create", "--id", "x", "--vendor", "carrier1", "--remote-ip", "1.2.3.4", "--tariff", "cost",
		"--cli-rules", `s/^00/`)
	wantErr(t, err, "400", "translation.cli")
	if n := st.Counts(); n.Connections != 2 || n.Vendors != 1 {
		t.Fatalf("counts after refusals %+v", n)
	}

	_, err = runInProc(t, api, "vendor", "delete", "carrier1")
	wantErr(t, err, "409", "carrier1-sip")
	for _, id := range []string{"carrier1-sip", "evil"} {
		if _, err := runInProc(t, api, "connection", "delete", id); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := runInProc(t, api, "vendor", "delete", "carrier1"); err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("vendor delete: %v\n%s", err, out)
	}
	if n := st.Counts(); n.Connections != 0 || n.Vendors != 0 {
		t.Fatalf("counts after deletes %+v", n)
	}
}

// Follow-me and incoming delivery from account create and update.
func TestCLIAccountDelivery(t *testing.T) {
	api, st := policyNode(t)
	out, err := runInProc(t, api, "account", "create", "--id", "3001", "--password-file", passwordFile(t, sipptest.APIPassword("3001")), "--follow-me", "1002:20",
		"--follow-me", "sip:desk@pbx.example.com:5080:30")
	if err != nil || !strings.Contains(out, "FOLLOW_ME") || !strings.Contains(out, "1002:20,sip:desk@pbx.example.com:5080:30") {
		t.Fatalf("create: %v\n%s", err, out)
	}
	a, _ := st.Account("3001")
	if !reflect.DeepEqual(a.FollowMe, []fsm.FollowMeTarget{{Target: "1002", TimeoutS: 20}, {Target: "sip:desk@pbx.example.com:5080", TimeoutS: 30}}) ||
		a.Incoming.Mode != "" {
		t.Fatalf("stored %+v", a)
	}
	if _, err := runInProc(t, api, "account", "update", "3001", "--incoming-static", "tls:[2001:db8::1]", "--follow-me", "1003:15"); err != nil {
		t.Fatal(err)
	}
	a, _ = st.Account("3001")
	if a.Incoming != (fsm.Incoming{Mode: "static", Host: "2001:db8::1", Port: 5061, Transport: "tls"}) || len(a.FollowMe) != 1 || a.FollowMe[0].Target != "1003" {
		t.Fatalf("after update %+v", a)
	}
	out, err = runInProc(t, api, "account", "get", "3001")
	if err != nil || !strings.Contains(out, "static tls:[2001:db8::1]:5061") {
		t.Fatalf("get: %v\n%s", err, out)
	}
	// An unrelated update keeps both; --follow-me "" clears the list.
	if _, err := runInProc(t, api, "account", "update", "3001", "--max-calls", "2"); err != nil {
		t.Fatal(err)
	}
	if a, _ = st.Account("3001"); len(a.FollowMe) != 1 || a.Incoming.Mode != "static" {
		t.Fatalf("after an unrelated update %+v", a)
	}
	if _, err := runInProc(t, api, "account", "update", "3001", "--follow-me", ""); err != nil {
		t.Fatal(err)
	}
	if a, _ = st.Account("3001"); len(a.FollowMe) != 0 || a.Incoming.Mode != "static" {
		t.Fatalf("after clearing follow-me %+v", a)
	}

	before := a
	for _, tc := range []struct {
		args  []string
		parts []string
	}{
		{[]string{"account", "update", "3001", "--follow-me", "1002"}, []string{"--follow-me", "TARGET:TIMEOUT_S"}},
		{[]string{"account", "update", "3001", "--follow-me", "1002:0"}, []string{"400", "follow_me[0].timeout_s"}},
		{[]string{"account", "update", "3001", "--follow-me", "1002:20", "--follow-me", ":20"}, []string{"--follow-me"}},
		{[]string{"account", "update", "3001", "--incoming-static", "55.55.5.6:x"}, []string{"--incoming-static", "port"}},
		{[]string{"account", "update", "3001", "--incoming-static", "sctp:55.55.5.6:5060"}, []string{"--incoming-static"}},
		{[]string{"account", "update", "3001", "--incoming-static", "sip:55.55.5.6"}, []string{"--incoming-static", "URI"}},
		{[]string{"account", "update", "3001", "--incoming-static", "udp:55.55.5.6:70000"}, []string{"400", "incoming.port"}},
		{[]string{"account", "update", "3001", "--incoming-static", "55.55.5.6", "--incoming-registered"}, []string{"incoming-registered"}},
		{[]string{"account", "update", "3001", "--service-policy", "nope"}, []string{"400", "service_policy"}},
	} {
		_, err := runInProc(t, api, tc.args...)
		wantErr(t, err, tc.parts...)
	}
	if a, _ = st.Account("3001"); !reflect.DeepEqual(a, before) {
		t.Fatalf("refused updates changed the account: %+v, was %+v", a, before)
	}
}

func TestParseStaticContact(t *testing.T) {
	for in, want := range map[string]admin.Incoming{
		"udp:55.55.5.6:5060":   {Mode: "static", Host: "55.55.5.6", Port: 5060, Transport: "udp"},
		"55.55.5.6":            {Mode: "static", Host: "55.55.5.6", Port: 5060, Transport: "udp"},
		"TCP:redirect.example": {Mode: "static", Host: "redirect.example", Port: 5060, Transport: "tcp"},
		"tls:pbx.example:5071": {Mode: "static", Host: "pbx.example", Port: 5071, Transport: "tls"},
		"tls:pbx.example":      {Mode: "static", Host: "pbx.example", Port: 5061, Transport: "tls"},
		"[2001:db8::1]:5062":   {Mode: "static", Host: "2001:db8::1", Port: 5062, Transport: "udp"},
		"2001:db8::1":          {Mode: "static", Host: "2001:db8::1", Port: 5060, Transport: "udp"},
	} {
		got, err := parseStaticContact(in)
		if err != nil || got != want {
			t.Errorf("%q: %+v %v, want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "udp:", "udp::5060", "sip:1@h", "h:port", "sctp:55.55.5.6:5060", "a:b:c"} {
		if got, err := parseStaticContact(in); err == nil {
			t.Errorf("%q accepted as %+v", in, got)
		}
	}
}
