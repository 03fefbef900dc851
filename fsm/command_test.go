package fsm

import (
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func ptr[T any](v T) *T { return &v }

// goldenCommands holds one fixed instance of every command type. Its golden
// file pins the wire encoding: a change to a command's body layout must come
// as a new type byte, never as a changed golden file.
func goldenCommands() map[string]Command {
	return map[string]Command{
		"create_account": &CreateAccountV1{Now: 1700000000000, Account: accountV1{
			ID: "1001", Password: "secret", Billing: Prepaid, Balance: 10_000_000, TariffOut: "std",
			MaxCalls: 2, Incoming: Incoming{Mode: DeliverStatic, Host: "55.55.5.6", Port: 5060, Transport: "udp"},
			FollowMe: []FollowMeTarget{{Target: "1002", TimeoutS: 20}},
		}},
		"update_account": &UpdateAccountV1{ID: "1001", Patch: accountPatchV1{Password: ptr("new"), MaxCalls: ptr(3), Blocked: ptr(true)}},
		"delete_account": &DeleteAccount{ID: "1001"},
		"put_alias":      &PutAlias{Alias: Alias{IP: "127.0.0.2", Ports: AliasPorts{UDP: []int{5070}, TLS: []int{5071}}}},
		"delete_alias":   &DeleteAlias{IP: "127.0.0.2"},
		"register": &Register{AOR: "1001", CallID: "abc@host", CSeq: 2, Now: 1700000000000, MaxContacts: 5,
			Bindings: []Binding{{Contact: "sip:1001@10.0.0.5:5062", Source: "10.0.0.5:5062", Transport: "udp",
				Ingress: "udp:127.0.0.2:5070", ExpiresAt: 1700003600000, Q: 500, UserAgent: "SIPp", Path: []string{"<sip:p1>"}}}},
		"purge_expired":     &PurgeExpired{Now: 1700000000000},
		"init_nonce_secret": &InitNonceSecret{Secret: []byte("0123456789abcdef0123456789abcdef")},
		"put_tariff": &PutTariff{Tariff: Tariff{ID: "std", Currency: "USD", Rates: []Rate{
			{Prefix: "", PerMinute: 100_000, FirstInterval: 60, NextInterval: 60},
			{Prefix: "44", PerMinute: 20_000, ConnectFee: 50_000, FirstInterval: 1, NextInterval: 1, FreeSeconds: 5}}}},
		"delete_tariff": &DeleteTariff{ID: "std"},
		"start_call": &StartCallV1{ID: "a84b4c76e66710@pc33", Direction: DirOutgoing, Account: "1001", CLI: "1001", CLD: "4420123",
			Charges:    []ChargeRequest{{Account: "1001", Role: RoleOutgoing, Number: "4420123"}, {Account: "1002", Role: RoleIncoming, Number: "1002"}},
			MaxSeconds: 14400, Now: 1700000000000, Node: "sip1", Vendor: "v1", Connection: "c1", VendorTariff: "cost"},
		"answer_call": &AnswerCall{ID: "a84b4c76e66710@pc33", ConnectAt: 1700000003000, Legs: []Leg{{
			Role: "callee", CallID: "b2b-1", LocalTag: "lt", RemoteTag: "rt", LocalURI: "<sip:1001@127.0.0.2>", RemoteURI: "<sip:1002@127.0.0.2>",
			RemoteTarget: "sip:1002@10.0.0.5:5062", RouteSet: []string{"<sip:p1;lr>"}, Ingress: "udp:127.0.0.2:5070",
			Destination: "10.0.0.5:5062", Transport: "udp", LocalCSeq: 1, RemoteCSeq: 0}}},
		"end_call":     &EndCall{ID: "a84b4c76e66710@pc33", DisconnectAt: 1700000063000, Cause: 200, CauseText: "BYE", DisconnectedBy: "caller"},
		"topup":        &TopupV1{Account: "1001", Amount: 5_000_000, Key: "topup-42", Now: 1700000000000, Note: "card"},
		"topup_v2":     &Topup{Account: "1001", Amount: -5_000_000, Key: "debit-42", Now: 1700000000000, Note: "invoice"},
		"trim_records": &TrimRecords{MaxXDRs: 1000000, KeepKeysAfter: 1690000000000},
		"put_service_policy": &PutServicePolicy{Policy: ServicePolicy{ID: "easycall", Redirect: RedirectPolicy{
			TrustedNetworks: []string{"193.148.210.22", "195.111.134.55", "10.0.0.0/8", "pbx.example.com"}, UntrustedAction: "reject", MaxRedirects: 3}}},
		"delete_service_policy": &DeleteServicePolicy{ID: "easycall"},
		"put_vendor":            &PutVendorV1{Vendor: vendorV1{ID: "v1", Name: "Carrier One", Username: "carrier1", Password: "s3cret"}},
		"delete_vendor":         &DeleteVendor{ID: "v1"},
		"put_connection": &PutConnectionV1{Connection: connectionV1{ID: "c1", Vendor: "v1", Kind: ConnectionFromVendorSIP,
			RemoteIPs: []string{"198.51.100.7", "203.0.113.0/24"}, Username: "carrier1in", Tariff: "cost",
			TranslationCLD: `s/^00/+/; s/^\+44/44/`, TranslationCLI: `s/^\+//`}},
		"delete_connection": &DeleteConnection{ID: "c1"},
		"redirect_call": &RedirectCall{ID: "a84b4c76e66710@pc33", Index: 1, Target: "sip:12035554433@193.148.210.22:5060",
			Decision: "new_call_authorization", Charge: &ChargeRequest{Account: "80032555939", Role: RoleOutgoing, Number: "12035554433"},
			MaxSeconds: 14400},
		"create_accounts": &CreateAccountsV1{Now: 1700000000000, Accounts: []accountV1{
			{ID: "u000000", Password: "pwu000000", Billing: Postpaid, CreditLimit: 1_000_000},
			{ID: "u000001", Password: "pwu000001", Billing: Prepaid, Balance: 2_500_000}}},
		"assign_addresses": &AssignAddresses{Now: 1700000000000, Changes: []AddressChange{
			{IP: "10.0.0.100", Node: "sip2", PrevEpoch: 3}, {IP: "203.0.113.7", Node: ""}, {IP: "2001:db8::7", Remove: true, PrevEpoch: 2}}},
		"address_barrier": &AddressBarrier{Node: "sip1", Now: 1700000000000},
		"adopt_call":      &AdoptCall{ID: "a84b4c76e66710@pc33", From: "sip2", To: "sip3"},
		"create_account_v2": &CreateAccount{Now: 1700000000000, Account: Account{
			ID: "1001", Credentials: HashCredentials("1001", "troika", "secret"), DisplayName: "Front Desk", Billing: Prepaid,
			Balance: 10_000_000, TariffOut: "std", MaxCalls: 2, Incoming: Incoming{Mode: DeliverStatic, Host: "55.55.5.6", Port: 5060, Transport: "udp"},
			FollowMe: []FollowMeTarget{{Target: "1002", TimeoutS: 20}},
		}},
		"update_account_v2": &UpdateAccount{ID: "1001", Patch: AccountPatch{Credentials: ptr(HashCredentials("1001", "troika", "new")),
			DisplayName: ptr("Reception"), MaxCalls: ptr(3), Blocked: ptr(true)}},
		"create_accounts_v2": &CreateAccounts{Now: 1700000000000, Accounts: []Account{
			{ID: "u000000", Credentials: HashCredentials("u000000", "troika", "pwu000000"), Billing: Postpaid, CreditLimit: 1_000_000},
			{ID: "u000001", Credentials: HashCredentials("u000001", "troika", "pwu000001"), Billing: Prepaid, Balance: 2_500_000}}},
		"put_vendor_v2": &PutVendor{Vendor: Vendor{ID: "v1", Name: "Carrier One", Username: "carrier1",
			Credentials: HashCredentials("carrier1", "troika", "s3cret")}},
		"put_connection_v2": &PutConnection{Connection: Connection{ID: "c1", Vendor: "v1", Kind: ConnectionFromVendorSIP,
			RemoteIPs: []string{"198.51.100.7", "203.0.113.0/24"}, Username: "carrier1in",
			Credentials: HashCredentials("carrier1in", "troika", "in-s3cret"), Tariff: "cost",
			TranslationCLD: `s/^00/+/; s/^\+44/44/`, TranslationCLI: `s/^\+//`}},
		"start_call_v2": &StartCall{ID: "a84b4c76e66710@pc33", Direction: DirOutgoing, Account: "1001", CLI: "1001", CLD: "4420123",
			Charges:    []ChargeRequest{{Account: "1001", Role: RoleOutgoing, Number: "4420123"}, {Account: "1002", Role: RoleIncoming, Number: "1002"}},
			MaxSeconds: 14400, Now: 1700000000000, Node: "sip1", Vendor: "v1", Connection: "c1", VendorTariff: "cost", Chunk: 300},
		"extend_call": &ExtendCall{ID: "a84b4c76e66710@pc33", Seq: 3},
		"init_realm":  &InitRealm{Realm: "troika"},
		"secure_credentials": &SecureCredentials{Realm: "troika",
			Accounts:    []SecretUpdate{{ID: "1001", LegacyHash: LegacyDigest("secret"), Credentials: HashCredentials("1001", "troika", "secret")}},
			Vendors:     []SecretUpdate{{ID: "v2", LegacyHash: LegacyDigest("gone")}},
			Connections: []SecretUpdate{{ID: "c1", LegacyHash: LegacyDigest("s3cret"), Credentials: HashCredentials("carrier1in", "troika", "s3cret")}}},
	}
}

func TestGoldenEncoding(t *testing.T) {
	seen := map[Type]bool{}
	for name, c := range goldenCommands() {
		seen[c.Type()] = true
		data, err := Encode(c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		path := filepath.Join("testdata", "golden", name+".hex")
		if *update {
			if err := os.WriteFile(path, []byte(hex.EncodeToString(data)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run go test ./fsm -run Golden -update once for a new command type)", name, err)
		}
		if got := hex.EncodeToString(data); got != strings.TrimSpace(string(want)) {
			t.Errorf("%s: encoding changed:\n got %s\nwant %s\nA changed body needs a new type byte; keep the old decoder.", name, got, want)
		}
		// The pinned bytes decode back to the same command.
		raw, _ := hex.DecodeString(strings.TrimSpace(string(want)))
		typ, back, err := Decode(raw)
		if err != nil {
			t.Fatalf("%s: decode golden: %v", name, err)
		}
		if typ != c.Type() || !reflect.DeepEqual(back, c) {
			t.Errorf("%s: golden decodes to %#v, want %#v", name, back, c)
		}
	}
	for typ := range commandTypes {
		if !seen[typ] {
			t.Errorf("command type %#x has no golden file", byte(typ))
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := Encode(&DeleteAccount{ID: "1"})
	cases := map[string][]byte{
		"empty":          nil,
		"unknown type":   {0x7e, 0x91, 0xa1, 0x31},
		"ignorable type": {0xfe, 0x90},
		"truncated":      good[:len(good)-1],
		"trailing":       append(append([]byte{}, good...), 0x00),
		"wrong shape":    {byte(TypeDeleteAccount), 0x92, 0x01, 0x02},
		"oversized":      append([]byte{byte(TypeDeleteAccount)}, make([]byte, maxCommandSize)...),
	}
	for name, data := range cases {
		_, _, err := Decode(data)
		if err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	typ, _, err := Decode([]byte{0xfe, 0x90})
	if !errors.Is(err, ErrUnknownType) || typ&IgnorableFlag == 0 {
		t.Errorf("ignorable unknown type: got %#x %v", byte(typ), err)
	}
}

func TestResultRoundTrip(t *testing.T) {
	r := Result{Err: &Error{Code: CodeTooManyContacts, Field: "contact", Msg: "x"}, Bindings: []Binding{{AOR: "1", Contact: "sip:a"}}, Purged: 3}
	data, err := EncodeResult(r)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeResult(data)
	if err != nil || !reflect.DeepEqual(back, r) {
		t.Fatalf("got %#v %v", back, err)
	}
}

// FuzzDecode feeds arbitrary bytes to the decoder and, when they decode, to
// Apply: neither may panic, and a decoded command re-encodes to something
// that decodes to the same command.
func FuzzDecode(f *testing.F) {
	for _, c := range goldenCommands() {
		data, _ := Encode(c)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, c, err := Decode(data)
		if err != nil {
			return
		}
		s := newTestState(t)
		s.ApplyCommand(c)
		again, err := Encode(c)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, c2, err := Decode(again); err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
