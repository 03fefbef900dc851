package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/troika-sip/troika/internal/testkit"
)

func TestCheckPassword(t *testing.T) {
	for _, tc := range []struct {
		password string
		users    []string
		want     string // in the error; "" for none
	}{
		{"", nil, "is required"},
		{"Ab1-short", nil, "too short: 9 characters, at least 10"},
		{strings.Repeat("Ab1-", 32) + "x", nil, "too long: 129 characters, at most 128"},
		{"Abcdefgh1-\x01", nil, "printable ASCII"},
		{"Abcdefgh1-é", nil, "printable ASCII"},
		{"abcdefghij", nil, "has 1 of the 4 character classes"},
		{"abcdefgh12", nil, "has 2 of the 4 character classes"},
		{"abcdefgh12X", nil, ""},          // 3 classes
		{"abcdefgh-2", nil, ""},           // lower, digit, other
		{"abc defgh 2", nil, ""},          // a space is an other character
		{"abcdefghijklmnop", nil, ""},     // 16: no classes needed
		{"abcdefghijklmno", nil, "has 1"}, // 15
		{"Carrier1-secret", []string{"carrier1"}, `must not contain the user name "carrier1"`},
		{"xx1001-Secret", []string{"1001"}, `"1001"`},
		{"Secret-1-pass", []string{"1"}, ""}, // names under 3 characters are not looked for
		{"Secret-44123-x", []string{"v1", "44123"}, `"44123"`},
		{"Secret-pass-9", []string{"", "carrier1"}, ""},
	} {
		err := CheckPassword(tc.password, tc.users...)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q %q: %v", tc.password, tc.users, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "password: ")):
			t.Errorf("%q %q: %v, want an error on password with %q", tc.password, tc.users, err, tc.want)
		case err != nil && tc.password != "" && strings.Contains(err.Error(), tc.password):
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		p := GeneratePassword("abc")
		if len(p) != GeneratedPasswordLength || CheckPassword(p, "abc") != nil || strings.Contains(strings.ToLower(p), "abc") || seen[p] {
			t.Fatalf("generated %q", p)
		}
		seen[p] = true
	}
}

// Weak passwords are refused with a 400 naming the field and the rule, in
// every write that sets one; nothing changes.
func TestWeakPasswordsAreRefused(t *testing.T) {
	c, st := vendorAPI(t)
	before := st.Counts()
	for _, tc := range []struct {
		method, path, body string
		field, msg         string
	}{
		{"POST", "/v1/accounts", `{"id":"2001","password":"s3cret"}`, "password", "too short: 6 characters, at least 10"},
		{"POST", "/v1/accounts", `{"id":"2001","password":"pw-2001-Secret"}`, "password", `user name "2001"`},
		{"POST", "/v1/accounts", `{"id":"2001","password":"alllowercase"}`, "password", "3 of them, or at least 16"},
		{"POST", "/v1/accounts", `{"id":"2001","password":"Abcdefgh1-","generate_password":true}`, "generate_password", "not both"},
		{"POST", "/v1/accounts/import", `{"accounts":[{"id":"2001","password":"` + testPassword + `"},{"id":"2002","password":"pw2002"}]}`,
			"accounts[1].password", "too short"},
		{"POST", "/v1/accounts/import", `{"accounts":[{"id":"2001","generate_password":true}]}`, "accounts[0].generate_password", "not in an import"},
		{"PATCH", "/v1/accounts/44123", `{"password":"short"}`, "password", "too short"},
		{"PATCH", "/v1/accounts/44123", `{"password":"x-44123-Secret"}`, "password", `"44123"`},
		{"POST", "/v1/vendors", `{"id":"v2","username":"v2user","password":"weak"}`, "password", "too short"},
		{"POST", "/v1/vendors", `{"id":"v2","username":"v2user","password":"V2user-pass-9"}`, "password", `"v2user"`},
		{"POST", "/v1/vendors", `{"id":"vendor2","username":"v2u","password":"Vendor2-pass-9"}`, "password", `"vendor2"`},
		{"POST", "/v1/connections", `{"id":"x","vendor":"carrier1","username":"cx1","password":"weak","remote_ips":["198.51.100.1"],"tariff":"cost"}`,
			"password", "too short"},
		{"POST", "/v1/connections", `{"id":"x","vendor":"carrier1","username":"cx1","password":"x-cx1-Secret","remote_ips":["198.51.100.1"],"tariff":"cost"}`,
			"password", `"cx1"`},
	} {
		status, body := raw(t, c, tc.method, tc.path, tc.body)
		var e Error
		if err := json.Unmarshal(body, &e); err != nil || status != http.StatusBadRequest || e.Field != tc.field ||
			!strings.HasPrefix(e.Error, tc.field+": ") || !strings.Contains(e.Error, tc.msg) {
			t.Errorf("%s %s %s: %d %s; want 400 on %s with %q", tc.method, tc.path, tc.body, status, body, tc.field, tc.msg)
		}
	}
	if st.Counts() != before {
		t.Fatalf("refused passwords changed the state: %v, was %v", st.Counts(), before)
	}
	if a, _ := st.Account("44123"); !reflect.DeepEqual(a.Credentials, testkit.Creds("44123", testPassword)) {
		t.Fatalf("44123's password changed: %+v", a.Credentials)
	}
}

// generate_password makes a strong password, stored (as its digest) and
// shown once, in the answer to the write that made it; no read ever shows
// one.
func TestGeneratedPasswordsAreShownOnce(t *testing.T) {
	c, st := vendorAPI(t)
	ctx := context.Background()
	stores := func(id, password string) bool {
		a, _ := st.Account(id)
		return reflect.DeepEqual(a.Credentials, testkit.Creds(id, password))
	}
	a, err := c.CreateAccount(ctx, Account{ID: "2001", GeneratePassword: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Password) != GeneratedPasswordLength || !stores("2001", a.Password) || CheckPassword(a.Password, "2001") != nil {
		t.Fatalf("answered %q", a.Password)
	}
	first := a.Password
	a, err = c.UpdateAccount(ctx, "2001", AccountPatch{GeneratePassword: true})
	if err != nil || a.Password == "" || a.Password == first || !stores("2001", a.Password) {
		t.Fatalf("regenerated %q: %v", a.Password, err)
	}
	mc := 2
	if a, err = c.UpdateAccount(ctx, "2001", AccountPatch{MaxCalls: &mc}); err != nil || a.Password != "" {
		t.Fatalf("an update without a new password answers %q: %v", a.Password, err)
	}
	v, err := c.PutVendor(ctx, Vendor{ID: "carrier2", Username: "carrier2", GeneratePassword: true})
	sv, _ := st.Vendor("carrier2")
	if err != nil || !v.HasPassword || len(v.Password) != GeneratedPasswordLength || !reflect.DeepEqual(sv.Credentials, testkit.Creds("carrier2", v.Password)) {
		t.Fatalf("vendor %+v: %v", v, err)
	}
	cn, err := c.PutConnection(ctx, Connection{ID: "c9", Vendor: "carrier1", Username: "c9user", GeneratePassword: true, Tariff: "cost"})
	sc, _ := st.Connection("c9")
	if err != nil || !cn.HasPassword || len(cn.Password) != GeneratedPasswordLength || !reflect.DeepEqual(sc.Credentials, testkit.Creds("c9user", cn.Password)) {
		t.Fatalf("connection %+v: %v", cn, err)
	}
	for _, path := range []string{"/v1/accounts", "/v1/accounts/2001", "/v1/vendors", "/v1/vendors/carrier2", "/v1/connections", "/v1/connections/c9"} {
		status, body := raw(t, c, "GET", path, "")
		if status != http.StatusOK || strings.Contains(string(body), `"password"`) || strings.Contains(string(body), v.Password) ||
			strings.Contains(string(body), cn.Password) {
			t.Errorf("GET %s shows a password: %s", path, body)
		}
	}
	// An account created with its own password is answered without it.
	status, body := raw(t, c, "POST", "/v1/accounts", `{"id":"2002","password":"`+testPassword+`"}`)
	if status != http.StatusCreated || strings.Contains(string(body), `"password"`) {
		t.Fatalf("create with a password: %d %s", status, body)
	}
}

// A password (or generate_password) without a username is refused for a
// vendor and a connection, rather than dropped: nothing would use it.
func TestPasswordWithoutUsernameIsRefused(t *testing.T) {
	c, st := vendorAPI(t)
	before := st.Counts()
	for _, tc := range []struct{ path, body, field string }{
		{"/v1/vendors", `{"id":"v2","password":"` + testPassword + `"}`, "password"},
		{"/v1/vendors", `{"id":"v2","generate_password":true}`, "generate_password"},
		{"/v1/connections", `{"id":"x","vendor":"carrier1","password":"` + testPassword + `","remote_ips":["198.51.100.1"],"tariff":"cost"}`, "password"},
		{"/v1/connections", `{"id":"x","vendor":"carrier1","generate_password":true,"remote_ips":["198.51.100.1"],"tariff":"cost"}`, "generate_password"},
	} {
		status, raw := raw(t, c, "POST", tc.path, tc.body)
		var e Error
		if err := json.Unmarshal(raw, &e); err != nil || status != http.StatusBadRequest || e.Field != tc.field || !strings.Contains(e.Error, "only with a username") {
			t.Errorf("%s %s: %d %s", tc.path, tc.body, status, raw)
		}
	}
	if st.Counts() != before {
		t.Fatal("a refused write changed the state")
	}
}
