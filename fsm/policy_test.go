package fsm

import (
	"net/netip"
	"reflect"
	"testing"
)

func vendorState(t *testing.T) *State {
	t.Helper()
	s := callState(t)
	mustApply(t, s, &PutTariff{Tariff: Tariff{ID: "cost", Currency: "USD", Rates: []Rate{{PerMinute: 5_000, FirstInterval: 1, NextInterval: 1}}}})
	mustApply(t, s, &PutVendor{Vendor: Vendor{ID: "v1", Name: "Carrier One", Username: "carrier1", Credentials: creds("carrier1", "s3cret")}})
	mustApply(t, s, &PutConnection{Connection: Connection{ID: "c-wide", Vendor: "v1", Kind: ConnectionFromVendorSIP,
		RemoteIPs: []string{"203.0.113.0/24"}, Tariff: "cost", TranslationCLD: `s/^00/+/; s/^\+44/44/`}})
	mustApply(t, s, &PutConnection{Connection: Connection{ID: "c-narrow", Vendor: "v1", Kind: ConnectionFromVendorSIP,
		RemoteIPs: []string{"203.0.113.7"}, Tariff: "cost"}})
	return s
}

func TestVendorConnections(t *testing.T) {
	s := vendorState(t)
	for ip, want := range map[string]string{"203.0.113.7": "c-narrow", "203.0.113.8": "c-wide", "::ffff:203.0.113.9": "c-wide"} {
		c, ok := s.ConnectionForSource(netip.MustParseAddr(ip))
		if !ok || c.ID != want {
			t.Errorf("source %s: %q %v, want %s", ip, c.ID, ok, want)
		}
	}
	if _, ok := s.ConnectionForSource(netip.MustParseAddr("198.51.100.1")); ok {
		t.Error("an unknown source matched a connection")
	}
	if c, v, ok := s.ConnectionForUser("carrier1"); !ok || !reflect.DeepEqual(v.Credentials, creds("carrier1", "s3cret")) || c.Vendor != "v1" {
		t.Errorf("by user name: %+v %+v %v", c, v, ok)
	}
	refusals := []struct {
		cmd   Command
		code  ErrCode
		field string
	}{
		{&PutConnection{Connection: Connection{ID: "x", Vendor: "v1", Kind: ConnectionFromVendorSIP, RemoteIPs: []string{"1.2.3.4"}, Tariff: "cost", TranslationCLD: "s/(/x/"}}, CodeInvalid, "translation.cld"},
		{&PutConnection{Connection: Connection{ID: "x", Vendor: "v1", Kind: ConnectionFromVendorSIP, RemoteIPs: []string{"1.2.3"}, Tariff: "cost"}}, CodeInvalid, "remote_ips[0]"},
		{&PutConnection{Connection: Connection{ID: "x", Vendor: "nope", Kind: ConnectionFromVendorSIP, RemoteIPs: []string{"1.2.3.4"}, Tariff: "cost"}}, CodeInvalid, "vendor"},
		{&PutConnection{Connection: Connection{ID: "x", Vendor: "v1", Kind: ConnectionFromVendorSIP, RemoteIPs: []string{"1.2.3.4"}, Tariff: "nope"}}, CodeInvalid, "tariff"},
		{&PutConnection{Connection: Connection{ID: "x", Vendor: "v1", Kind: ConnectionFromVendorSIP, Username: "1001", Tariff: "cost"}}, CodeConflict, "username"},
		{&PutVendor{Vendor: Vendor{ID: "v2", Username: "1002", Credentials: creds("1002", "p")}}, CodeConflict, "username"},
		{&CreateAccount{Account: Account{ID: "carrier1", Credentials: creds("carrier1", "p"), Billing: Prepaid}}, CodeConflict, "id"},
		{&DeleteVendor{ID: "v1"}, CodeConflict, "id"},
		{&PutVendor{Vendor: Vendor{ID: "v1", Name: "Carrier One", Username: "carrier1"}}, CodeInvalid, "password"},
		{&CreateAccount{Account: Account{ID: "5001", Credentials: creds("5001", "p"), Billing: Prepaid, Incoming: Incoming{Mode: DeliverStatic, Host: "a:b:c", Port: 5060, Transport: "udp"}}}, CodeInvalid, "incoming.host"},
		{&DeleteTariff{ID: "cost"}, CodeConflict, "id"},
	}
	for _, r := range refusals {
		res := s.ApplyCommand(r.cmd)
		if res.Err == nil || res.Err.Code != r.code || res.Err.Field != r.field {
			t.Errorf("%T %+v: got %v, want %s on %s", r.cmd, r.cmd, res.Err, r.code, r.field)
		}
	}
	mustApply(t, s, &DeleteConnection{ID: "c-wide"})
	mustApply(t, s, &DeleteConnection{ID: "c-narrow"})
	mustApply(t, s, &DeleteVendor{ID: "v1"})
	if n := s.Counts(); n.Vendors != 0 || n.Connections != 0 {
		t.Fatalf("counts %+v", n)
	}
}

func TestServicePolicies(t *testing.T) {
	s := callState(t)
	p := ServicePolicy{ID: "easycall", Redirect: RedirectPolicy{TrustedNetworks: []string{"193.148.210.22", "195.111.134.55", "localhost"}, UntrustedAction: "reject"}}
	mustApply(t, s, &PutServicePolicy{Policy: p})
	if r := s.ApplyCommand(&PutServicePolicy{Policy: ServicePolicy{ID: "bad", Redirect: RedirectPolicy{TrustedNetworks: []string{"1.2.3.4/40"}, UntrustedAction: "reject"}}}); r.Err == nil || r.Err.Field != "redirect.trusted_networks" {
		t.Fatalf("bad CIDR: %v", r.Err)
	}
	if r := s.ApplyCommand(&PutServicePolicy{Policy: ServicePolicy{ID: "bad", Redirect: RedirectPolicy{UntrustedAction: "follow"}}}); r.Err == nil || r.Err.Field != "redirect.untrusted_action" {
		t.Fatalf("bad action: %v", r.Err)
	}
	if r := s.ApplyCommand(&UpdateAccount{ID: "1001", Patch: AccountPatch{ServicePolicy: ptr("nope")}}); r.Err == nil || r.Err.Field != "service_policy" {
		t.Fatalf("unknown policy on an account: %v", r.Err)
	}
	mustApply(t, s, &UpdateAccount{ID: "1001", Patch: AccountPatch{ServicePolicy: ptr("easycall")}})
	if r := s.ApplyCommand(&DeleteServicePolicy{ID: "easycall"}); r.Err == nil || r.Err.Code != CodeConflict {
		t.Fatalf("deleting a used policy: %v", r.Err)
	}
	r := restored(t, snapshotBytes(t, s))
	if got, _ := r.ServicePolicy("easycall"); !reflect.DeepEqual(got, p) {
		t.Fatalf("restored policy %+v", got)
	}
}

func TestSnapshotKeepsVendors(t *testing.T) {
	s := vendorState(t)
	r := restored(t, snapshotBytes(t, s))
	if !reflect.DeepEqual(r.Connections(), s.Connections()) || !reflect.DeepEqual(r.Vendors(), s.Vendors()) {
		t.Fatal("restored vendors or connections differ")
	}
}
