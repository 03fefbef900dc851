package fsm

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

const t0 = int64(1_700_000_000_000)

func newTestState(t testing.TB) *State {
	t.Helper()
	s := New()
	mustApply(t, s, &PutTariff{Tariff: Tariff{ID: "std", Currency: "USD", Rates: []Rate{{PerMinute: 100_000, FirstInterval: 60, NextInterval: 60}}}})
	for _, id := range []string{"1001", "1002"} {
		mustApply(t, s, &CreateAccount{Now: t0, Account: Account{ID: id, Credentials: creds(id, "pw"+id), Billing: Prepaid, Balance: 5_000_000, TariffOut: "std"}})
	}
	return s
}

// creds are the credentials of user's password in the tests' realm.
func creds(user, password string) Credentials { return HashCredentials(user, "troika", password) }

func mustApply(t testing.TB, s *State, c Command) Result {
	t.Helper()
	data, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Apply(data)
	if err != nil {
		t.Fatal(err)
	}
	if r.Err != nil {
		t.Fatalf("%T refused: %v", c, r.Err)
	}
	return r
}

func reg(callID string, cseq uint32, now int64, contacts ...string) *Register {
	c := &Register{AOR: "1001", CallID: callID, CSeq: cseq, Now: now, MaxContacts: 3}
	for _, ct := range contacts {
		exp := now + 3600_000
		if strings.HasSuffix(ct, ";0") {
			ct, exp = strings.TrimSuffix(ct, ";0"), now
		}
		c.Bindings = append(c.Bindings, Binding{Contact: ct, Source: "10.0.0.1:5060", Transport: "udp", Ingress: "udp:127.0.0.1:5060", ExpiresAt: exp})
	}
	return c
}

func contacts(bs []Binding) []string {
	out := []string{}
	for _, b := range bs {
		out = append(out, b.Contact)
	}
	return out
}

func TestRegister(t *testing.T) {
	type step struct {
		cmd      *Register
		wantCode ErrCode
		want     []string // contacts after the step
	}
	cases := map[string][]step{
		"add two from one request": {
			{cmd: reg("c1", 1, t0, "sip:a", "sip:b"), want: []string{"sip:a", "sip:b"}},
		},
		"refresh keeps one binding": {
			{cmd: reg("c1", 1, t0, "sip:a"), want: []string{"sip:a"}},
			{cmd: reg("c1", 2, t0+1000, "sip:a"), want: []string{"sip:a"}},
		},
		"same command twice is a no-op": {
			{cmd: reg("c1", 1, t0, "sip:a"), want: []string{"sip:a"}},
			{cmd: reg("c1", 1, t0, "sip:a"), want: []string{"sip:a"}},
		},
		"lower cseq same call-id refused": {
			{cmd: reg("c1", 5, t0, "sip:a"), want: []string{"sip:a"}},
			{cmd: reg("c1", 4, t0+1, "sip:a;0"), wantCode: CodeStaleCSeq, want: []string{"sip:a"}},
		},
		"other call-id replaces (phone rebooted)": {
			{cmd: reg("c1", 5, t0, "sip:a"), want: []string{"sip:a"}},
			{cmd: reg("c2", 1, t0+1, "sip:a"), want: []string{"sip:a"}},
		},
		"expires zero removes one": {
			{cmd: reg("c1", 1, t0, "sip:a", "sip:b"), want: []string{"sip:a", "sip:b"}},
			{cmd: reg("c1", 2, t0+1, "sip:a;0"), want: []string{"sip:b"}},
		},
		"wildcard removes all": {
			{cmd: reg("c1", 1, t0, "sip:a", "sip:b"), want: []string{"sip:a", "sip:b"}},
			{cmd: &Register{AOR: "1001", CallID: "c1", CSeq: 2, Now: t0 + 1, Wildcard: true}, want: []string{}},
		},
		"cap refuses and changes nothing": {
			{cmd: reg("c1", 1, t0, "sip:a", "sip:b", "sip:c"), want: []string{"sip:a", "sip:b", "sip:c"}},
			{cmd: reg("c2", 1, t0+1, "sip:d"), wantCode: CodeTooManyContacts, want: []string{"sip:a", "sip:b", "sip:c"}},
		},
		"expired bindings do not count against the cap": {
			{cmd: reg("c1", 1, t0, "sip:a", "sip:b", "sip:c"), want: []string{"sip:a", "sip:b", "sip:c"}},
			{cmd: reg("c2", 1, t0+3600_000, "sip:d"), want: []string{"sip:d"}},
		},
		"unknown account": {
			{cmd: &Register{AOR: "nobody", CallID: "c", CSeq: 1, Now: t0}, wantCode: CodeNotFound, want: []string{}},
		},
	}
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			s := newTestState(t)
			for i, st := range steps {
				r := s.ApplyCommand(st.cmd)
				code := ErrCode("")
				if r.Err != nil {
					code = r.Err.Code
				}
				if code != st.wantCode {
					t.Fatalf("step %d: code %q, want %q (%v)", i, code, st.wantCode, r.Err)
				}
				got := contacts(s.Bindings(st.cmd.AOR, st.cmd.Now))
				if !reflect.DeepEqual(got, st.want) {
					t.Fatalf("step %d: bindings %v, want %v", i, got, st.want)
				}
				if r.Err == nil && !reflect.DeepEqual(contacts(r.Bindings), st.want) {
					t.Fatalf("step %d: result bindings %v, want %v", i, contacts(r.Bindings), st.want)
				}
			}
		})
	}
}

func TestRegisterRecordsIngressAndExpiry(t *testing.T) {
	s := newTestState(t)
	c := reg("c1", 1, t0, "sip:1001@10.0.0.9:5062")
	c.Bindings[0].Ingress = "udp:127.0.0.2:5070"
	r := mustApply(t, s, c)
	b := r.Bindings[0]
	if b.Ingress != "udp:127.0.0.2:5070" || b.AOR != "1001" || b.CallID != "c1" || b.CSeq != 1 || b.UpdatedAt != t0 {
		t.Fatalf("binding %+v", b)
	}
	if got := b.Expires(t0 + 1000); got != 3599 {
		t.Fatalf("expires after 1 s = %d, want 3599", got)
	}
	if got := s.Bindings("1001", t0+3600_000); len(got) != 0 {
		t.Fatalf("expired binding still returned: %+v", got)
	}
	if s.BindingCount() != 1 {
		t.Fatalf("count %d before purge", s.BindingCount())
	}
	if r := mustApply(t, s, &PurgeExpired{Now: t0 + 3600_000}); r.Purged != 1 || s.BindingCount() != 0 {
		t.Fatalf("purge removed %d, count %d", r.Purged, s.BindingCount())
	}
}

func TestRegisterInstanceIDMatchesAcrossContacts(t *testing.T) {
	s := newTestState(t)
	c := reg("c1", 1, t0, "sip:1001@10.0.0.9:5062")
	c.Bindings[0].Instance, c.Bindings[0].RegID = "<urn:uuid:1>", 1
	mustApply(t, s, c)
	c2 := reg("c2", 1, t0+10, "sip:1001@10.0.0.77:6000") // same phone, new address
	c2.Bindings[0].Instance, c2.Bindings[0].RegID = "<urn:uuid:1>", 1
	mustApply(t, s, c2)
	got := contacts(s.Bindings("1001", t0+10))
	if !reflect.DeepEqual(got, []string{"sip:1001@10.0.0.77:6000"}) {
		t.Fatalf("bindings %v", got)
	}
}

func TestAccounts(t *testing.T) {
	s := newTestState(t)
	dup := &CreateAccount{Now: t0, Account: Account{ID: "1001", Credentials: creds("1001", "pw1001"), Billing: Prepaid, Balance: 5_000_000, TariffOut: "std"}}
	if r := s.ApplyCommand(dup); r.Err != nil {
		t.Fatalf("retried identical create refused: %v", r.Err)
	}
	other := &CreateAccount{Now: t0, Account: Account{ID: "1001", Credentials: creds("1001", "x"), Billing: Prepaid}}
	if r := s.ApplyCommand(other); r.Err == nil || r.Err.Code != CodeExists {
		t.Fatalf("conflicting create: %v", r.Err)
	}
	bad := &CreateAccount{Now: t0, Account: Account{ID: "2000", Credentials: creds("2000", "x"), Billing: Prepaid, TariffOut: "nope"}}
	if r := s.ApplyCommand(bad); r.Err == nil || r.Err.Field != "tariff_out" {
		t.Fatalf("missing tariff: %v", r.Err)
	}
	if _, ok := s.Account("2000"); ok {
		t.Fatal("refused create stored the account")
	}
	if r := s.ApplyCommand(&UpdateAccount{ID: "1001", Patch: AccountPatch{Billing: ptr("weekly")}}); r.Err == nil || r.Err.Field != "billing" {
		t.Fatalf("bad patch: %v", r.Err)
	}
	mustApply(t, s, &UpdateAccount{ID: "1001", Patch: AccountPatch{Credentials: ptr(creds("1001", "new")), MaxCalls: ptr(4)}})
	a, _ := s.Account("1001")
	if !reflect.DeepEqual(a.Credentials, creds("1001", "new")) || a.MaxCalls != 4 || a.Balance != 5_000_000 || a.Billing != Prepaid {
		t.Fatalf("after patch %+v", a)
	}
	mustApply(t, s, reg("c", 1, t0, "sip:a"))
	if r := s.ApplyCommand(&DeleteTariff{ID: "std"}); r.Err == nil || r.Err.Code != CodeConflict {
		t.Fatalf("delete used tariff: %v", r.Err)
	}
	mustApply(t, s, &DeleteAccount{ID: "1001"})
	if _, ok := s.Account("1001"); ok || len(s.Bindings("1001", t0)) != 0 || s.BindingCount() != 0 {
		t.Fatal("account or its bindings survived delete")
	}
}

func TestCreateAccountsAllOrNone(t *testing.T) {
	s := newTestState(t)
	bad := &CreateAccounts{Now: t0, Accounts: []Account{
		{ID: "2001", Credentials: creds("2001", "a"), Billing: Prepaid},
		{ID: "2002", Credentials: Credentials{}, Billing: Prepaid},
	}}
	r := s.ApplyCommand(bad)
	if r.Err == nil || r.Err.Field != "accounts[1].password" {
		t.Fatalf("got %v, want accounts[1].password refused", r.Err)
	}
	if _, ok := s.Account("2001"); ok {
		t.Fatal("half of a refused import was applied")
	}
	ok := &CreateAccounts{Now: t0, Accounts: []Account{{ID: "2001", Credentials: creds("2001", "a"), Billing: Prepaid}, {ID: "2002", Credentials: creds("2002", "b"), Billing: Postpaid}}}
	mustApply(t, s, ok)
	mustApply(t, s, ok) // re-running an import is safe
	if n := s.Counts().Accounts; n != 4 {
		t.Fatalf("%d accounts, want 4", n)
	}
	dup := &CreateAccounts{Now: t0, Accounts: []Account{{ID: "3001", Credentials: creds("3001", "a"), Billing: Prepaid}, {ID: "3001", Credentials: creds("3001", "a"), Billing: Prepaid}}}
	if r := s.ApplyCommand(dup); r.Err == nil || r.Err.Field != "accounts[1].id" {
		t.Fatalf("duplicate id in one import: %v", r.Err)
	}
}

func TestAliasWatch(t *testing.T) {
	s := New()
	ch := s.AliasesChanged()
	if r := s.ApplyCommand(&PutAlias{Alias: Alias{IP: "127.0.0.02"}}); r.Err == nil || r.Err.Field != "ip" {
		t.Fatalf("non-canonical ip accepted: %v", r.Err)
	}
	select {
	case <-ch:
		t.Fatal("refused alias fired the watch")
	default:
	}
	mustApply(t, s, &PutAlias{Alias: Alias{IP: "127.0.0.2", Ports: AliasPorts{UDP: []int{5070}}}})
	select {
	case <-ch:
	default:
		t.Fatal("alias change did not fire the watch")
	}
	if a, ok := s.Alias("127.0.0.2"); !ok || !reflect.DeepEqual(a.Ports.UDP, []int{5070}) {
		t.Fatalf("alias %+v", a)
	}
}

func TestNonceSecretFirstWins(t *testing.T) {
	s := New()
	mustApply(t, s, &InitNonceSecret{Secret: bytes.Repeat([]byte{1}, 32)})
	mustApply(t, s, &InitNonceSecret{Secret: bytes.Repeat([]byte{2}, 32)})
	if got := s.NonceSecret(); !bytes.Equal(got, bytes.Repeat([]byte{1}, 32)) {
		t.Fatalf("secret %x", got)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := newTestState(t)
	mustApply(t, s, &PutAlias{Alias: Alias{IP: "127.0.0.2", Ports: AliasPorts{UDP: []int{5070}}}})
	mustApply(t, s, &InitNonceSecret{Secret: bytes.Repeat([]byte{7}, 32)})
	mustApply(t, s, reg("c1", 1, t0, "sip:a", "sip:b"))
	c := reg("c9", 1, t0, "sip:z")
	c.AOR = "1002"
	mustApply(t, s, c)

	var buf bytes.Buffer
	snap := s.Snapshot()
	// Changes after the snapshot is taken do not leak into it.
	mustApply(t, s, reg("c1", 2, t0+1, "sip:a;0"))
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := New()
	if err := r.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(contacts(r.Bindings("1001", t0)), []string{"sip:a", "sip:b"}) {
		t.Fatalf("restored bindings %v", contacts(r.Bindings("1001", t0)))
	}
	if !reflect.DeepEqual(r.Accounts(), s.Accounts()) || !reflect.DeepEqual(r.Aliases(), s.Aliases()) ||
		!reflect.DeepEqual(r.Tariffs(), s.Tariffs()) || !bytes.Equal(r.NonceSecret(), s.NonceSecret()) ||
		!reflect.DeepEqual(r.Bindings("1002", t0), s.Bindings("1002", t0)) {
		t.Fatal("restored state differs")
	}

	// A damaged snapshot changes nothing.
	before := r.Counts()
	for _, n := range []int{0, 10, buf.Len() / 2, buf.Len() - 1} {
		if err := r.Restore(bytes.NewReader(buf.Bytes()[:n])); err == nil {
			t.Fatalf("truncated at %d restored", n)
		}
	}
	if r.Counts() != before {
		t.Fatal("failed restore changed the state")
	}
}

// FuzzRestore: arbitrary snapshot bytes never panic and never half-apply.
func FuzzRestore(f *testing.F) {
	s := newTestState(f)
	var buf bytes.Buffer
	s.Snapshot().WriteTo(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte(snapshotMagic + "\x01\xff\x01\x90"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newTestState(t)
		before := r.Counts()
		if err := r.Restore(bytes.NewReader(data)); err != nil && r.Counts() != before {
			t.Fatal("failed restore changed the state")
		}
	})
}
