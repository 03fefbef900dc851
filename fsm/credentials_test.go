package fsm

import (
	"reflect"
	"testing"
)

// Records written by a build that stored passwords keep them as legacy
// credentials, verify the same, and give them up to SecureCredentials.
func TestLegacyPasswordsAreSecured(t *testing.T) {
	s := callState(t)
	mustApply(t, s, &PutTariff{Tariff: Tariff{ID: "cost", Currency: "USD", Rates: []Rate{{PerMinute: 1, FirstInterval: 1, NextInterval: 1}}}})
	mustApply(t, s, &CreateAccountV1{Now: t0, Account: accountV1{ID: "7001", Password: "old-pw", Billing: Prepaid}})
	mustApply(t, s, &PutVendorV1{Vendor: vendorV1{ID: "v1", Username: "carrier1", Password: "v-pw"}})
	mustApply(t, s, &PutConnectionV1{Connection: connectionV1{ID: "c1", Vendor: "v1", Kind: ConnectionFromVendorSIP,
		Username: "trunk1", Tariff: "cost"}})
	a, _ := s.Account("7001")
	for _, alg := range []string{"MD5", "SHA-256"} {
		got, _ := a.Credentials.HA1(alg, "7001", "troika")
		want, _ := HashCredentials("7001", "troika", "old-pw").HA1(alg, "", "")
		if got != want {
			t.Errorf("%s HA1 of a legacy password: %s, want %s", alg, got, want)
		}
	}
	// As in version 1, the connection's user name takes its vendor's
	// password, and a new vendor password reaches it.
	if cn, _ := s.Connection("c1"); cn.Credentials.Legacy != "v-pw" {
		t.Fatalf("connection credentials %+v, want the vendor's password", cn.Credentials)
	}
	mustApply(t, s, &PutVendorV1{Vendor: vendorV1{ID: "v1", Username: "carrier1", Password: "v-pw2"}})
	if cn, _ := s.Connection("c1"); cn.Credentials.Legacy != "v-pw2" {
		t.Fatalf("connection credentials %+v after the vendor's new password", cn.Credentials)
	}

	if r := s.ApplyCommand(&SecureCredentials{Realm: "troika"}); r.Err == nil || r.Err.Code != CodeConflict {
		t.Fatalf("securing before the realm is known: %v", r.Err)
	}
	mustApply(t, s, &InitRealm{Realm: "troika"})
	mustApply(t, s, &InitRealm{Realm: "troika"}) // idempotent
	if r := s.ApplyCommand(&InitRealm{Realm: "other"}); r.Err == nil || r.Err.Code != CodeConflict || s.Realm() != "troika" {
		t.Fatalf("a second realm: %v (realm %q)", r.Err, s.Realm())
	}
	legacy := s.LegacySecrets()
	if len(legacy) != 3 {
		t.Fatalf("legacy secrets %+v, want the account, the vendor and the connection", legacy)
	}
	stale := &SecureCredentials{Realm: "troika", Accounts: []SecretUpdate{{ID: "7001", LegacyHash: LegacyDigest("not-it"),
		Credentials: HashCredentials("7001", "troika", "not-it")}}}
	mustApply(t, s, stale)
	if a, _ := s.Account("7001"); a.Credentials.Legacy != "old-pw" {
		t.Fatal("an update for a password that changed meanwhile was applied")
	}
	secure := SecureLegacy("troika", legacy) // each with a user name
	mustApply(t, s, secure)
	mustApply(t, s, secure) // a retry changes nothing
	if left := s.LegacySecrets(); len(left) != 0 {
		t.Fatalf("still legacy: %+v", left)
	}
	a, _ = s.Account("7001")
	if !reflect.DeepEqual(a.Credentials, HashCredentials("7001", "troika", "old-pw")) {
		t.Errorf("secured account credentials %+v", a.Credentials)
	}
	if cn, _ := s.Connection("c1"); !reflect.DeepEqual(cn.Credentials, HashCredentials("trunk1", "troika", "v-pw2")) {
		t.Errorf("secured connection credentials %+v", cn.Credentials)
	}
}

// A current command never stores a clear password, nor half of the
// credentials.
func TestCurrentCommandsRefuseClearPasswords(t *testing.T) {
	s := callState(t)
	for name, c := range map[string]Command{
		"create":     &CreateAccount{Account: Account{ID: "7002", Credentials: Credentials{Legacy: "x"}, Billing: Prepaid}},
		"create md5": &CreateAccount{Account: Account{ID: "7002", Credentials: Credentials{MD5: make([]byte, 16)}, Billing: Prepaid}},
		"bulk":       &CreateAccounts{Accounts: []Account{{ID: "7003", Credentials: Credentials{Legacy: "x"}, Billing: Prepaid}}},
		"update":     &UpdateAccount{ID: "1001", Patch: AccountPatch{Credentials: &Credentials{Legacy: "x"}}},
		"vendor":     &PutVendor{Vendor: Vendor{ID: "v9", Username: "v9user", Credentials: Credentials{Legacy: "x"}}},
	} {
		if r := s.ApplyCommand(c); r.Err == nil || r.Err.Code != CodeInvalid {
			t.Errorf("%s: %v, want refused", name, r.Err)
		}
	}
}
