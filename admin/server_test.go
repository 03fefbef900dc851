package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

const token = "test-token-0123456789"

// testPassword passes the password policy for every account, vendor and
// connection of these tests.
const testPassword = "Tr0ika-test-pw"

var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func newTestAPI(t *testing.T) (*Client, *fsm.State) {
	t.Helper()
	st := fsm.New()
	srv, err := New(Config{Token: token, Now: func() time.Time { return now }}, st, testkit.NewStore(st))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return NewClient(hs.URL, token), st
}

// seed is what a test API starts with, created in this order (a
// connection names its vendor, an account its tariffs and policy).
type seed struct {
	Tariffs     []Tariff
	Policies    []ServicePolicy
	Accounts    []Account
	Vendors     []Vendor
	Connections []Connection
}

// newSeededAPI is newTestAPI with what sd holds already created.
func newSeededAPI(t *testing.T, sd seed) (*Client, *fsm.State) {
	t.Helper()
	c, st := newTestAPI(t)
	ctx := context.Background()
	createAll(t, ctx, c.PutTariff, sd.Tariffs)
	createAll(t, ctx, c.PutServicePolicy, sd.Policies)
	createAll(t, ctx, c.CreateAccount, sd.Accounts)
	createAll(t, ctx, c.PutVendor, sd.Vendors)
	createAll(t, ctx, c.PutConnection, sd.Connections)
	return c, st
}

// createAll creates each of items with create, failing the test at the
// first error.
func createAll[T any](t *testing.T, ctx context.Context, create func(context.Context, T) (T, error), items []T) {
	t.Helper()
	for _, item := range items {
		if _, err := create(ctx, item); err != nil {
			t.Fatal(err)
		}
	}
}

// doRequest sends a request outside the Client, with the bearer token tok
// ("" for none), and returns the response.
func doRequest(t *testing.T, base, tok, method, path, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func apiErr(t *testing.T, err error) *APIError {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want an API error, got %v", err)
	}
	return ae
}

// deleteGone deletes id with del and checks that get then finds nothing.
func deleteGone[T any](t *testing.T, ctx context.Context, id string, del func(context.Context, string) error,
	get func(context.Context, string) (T, error)) {
	t.Helper()
	if err := del(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := get(ctx, id); !IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestAccountsLifecycle(t *testing.T) {
	c, st := newTestAPI(t)
	ctx := context.Background()
	if _, err := c.PutTariff(ctx, Tariff{ID: "std", Currency: "USD", Rates: []Rate{{Prefix: "", PerMinute: "0.10"}}}); err != nil {
		t.Fatal(err)
	}
	a, err := c.CreateAccount(ctx, Account{ID: "1001", Password: "S3cret-account", Balance: "10.00", TariffOut: "std"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Password != "" || a.Balance != "10.00" || a.Billing != "prepaid" || a.Incoming.Mode != "registered" || a.CreatedAt == nil {
		t.Fatalf("created %+v", a)
	}
	if got, _ := st.Account("1001"); got.Balance != 10_000_000 || !reflect.DeepEqual(got.Credentials, testkit.Creds("1001", "S3cret-account")) {
		t.Fatalf("stored %+v", got)
	}
	_, err = c.CreateAccount(ctx, Account{ID: "1001", Password: "0ther-Password"})
	if ae := apiErr(t, err); ae.Status != http.StatusConflict || ae.Field != "id" {
		t.Fatalf("duplicate: %+v", ae)
	}
	mc := 3
	a, err = c.UpdateAccount(ctx, "1001", AccountPatch{MaxCalls: &mc})
	if err != nil || a.MaxCalls != 3 || a.Balance != "10.00" {
		t.Fatalf("update: %+v %v", a, err)
	}
	bal := "99"
	_, err = c.UpdateAccount(ctx, "1001", AccountPatch{Balance: &bal})
	if ae := apiErr(t, err); ae.Status != http.StatusBadRequest || ae.Field != "balance" {
		t.Fatalf("balance patch: %+v", ae)
	}
	if err := c.DeleteTariff(ctx, "std"); apiErr(t, err).Status != http.StatusConflict {
		t.Fatalf("deleting a used tariff: %v", err)
	}
	// It holds 10.00: deleting it needs force.
	if err := c.DeleteAccount(ctx, "1001"); apiErr(t, err).Status != http.StatusConflict || !strings.Contains(err.Error(), "10.00") {
		t.Fatalf("deleting an account holding money: %v", err)
	}
	if _, err := c.Account(ctx, "1001"); err != nil {
		t.Fatalf("a refused delete deleted: %v", err)
	}
	deleteGone(t, ctx, "1001", c.ForceDeleteAccount, c.Account)
}

func TestBadInputNamesTheFieldAndChangesNothing(t *testing.T) {
	c, st := newTestAPI(t)
	cases := []struct {
		method, path, body string
		status             int
		field              string
	}{
		{"POST", "/v1/accounts", `{"id":"1","password":"` + testPassword + `","max_calls":"x"}`, 400, "max_calls"},
		{"POST", "/v1/accounts", `{"id":"1","password":"` + testPassword + `","colour":"red"}`, 400, "colour"},
		{"POST", "/v1/accounts", `{"id":"1","password":"` + testPassword + `","balance":"1e3"}`, 400, "balance"},
		{"POST", "/v1/accounts", `{"id":"1","password":"` + testPassword + `","billing":"weekly"}`, 400, "billing"},
		{"POST", "/v1/accounts", `{"id":"bad id","password":"` + testPassword + `"}`, 400, "id"},
		{"POST", "/v1/accounts", `{"id":"1","password":""}`, 400, "password"},
		{"POST", "/v1/accounts", `{"id":"1","password":"` + testPassword + `","tariff_out":"nope"}`, 400, "tariff_out"},
		{"POST", "/v1/accounts", `{"id":"1","password":"` + testPassword + `","incoming":{"mode":"static","host":"h","port":0,"transport":"udp"}}`, 400, "incoming.port"},
		{"POST", "/v1/accounts", `{"id":"1","password":"` + testPassword + `"} {"id":"2"}`, 400, ""},
		{"POST", "/v1/accounts", `{"id":`, 400, ""},
		{"POST", "/v1/accounts", ``, 400, ""},
		{"POST", "/v1/accounts/import", `{"accounts":[{"id":"7","password":"` + testPassword + `"},{"id":"8","password":"` + testPassword + `","balance":"x"}]}`, 400, "accounts[1].balance"},
		{"POST", "/v1/tariffs", `{"id":"t","currency":"usd","rates":[{"per_minute":"0.1"}]}`, 400, "currency"},
		{"POST", "/v1/tariffs", `{"id":"t","currency":"USD","rates":[{"per_minute":"-1"}]}`, 400, "rates[0].per_minute"},
		{"POST", "/v1/tariffs", `{"id":"t","currency":"USD","rates":[{"per_minute":"1","first_interval":-5}]}`, 400, "rates[0].first_interval"},
		{"POST", "/v1/aliases", `{"ip":"300.1.1.1"}`, 400, "ip"},
		{"POST", "/v1/aliases", `{"ip":"127.0.0.2","ports":{"udp":[70000]}}`, 400, "ports.udp"},
		{"DELETE", "/v1/aliases/127.0.0.9", ``, 404, "ip"},
	}
	for _, tc := range cases {
		resp := doRequest(t, c.BaseURL, token, tc.method, tc.path, tc.body)
		var e Error
		decodeJSON(t, resp, &e)
		if resp.StatusCode != tc.status || e.Field != tc.field || e.Error == "" {
			t.Errorf("%s %s %s: got %d field=%q %q; want %d field=%q", tc.method, tc.path, tc.body, resp.StatusCode, e.Field, e.Error, tc.status, tc.field)
		}
	}
	if n := st.Counts(); n != (fsm.Counts{}) {
		t.Fatalf("bad input changed the state: %v", n)
	}
}

func TestTokenRequired(t *testing.T) {
	c, st := newTestAPI(t)
	for _, tok := range []string{"", "wrong", token + "x"} {
		bad := NewClient(c.BaseURL, tok)
		_, err := bad.CreateAccount(context.Background(), Account{ID: "1", Password: testPassword})
		if apiErr(t, err).Status != http.StatusUnauthorized {
			t.Fatalf("token %q: %v", tok, err)
		}
	}
	if st.Counts().Accounts != 0 {
		t.Fatal("unauthenticated request changed the state")
	}
	if _, err := New(Config{Token: "short"}, st, testkit.NewStore(st)); err == nil {
		t.Fatal("a short token was accepted")
	}
}

// GET /, unknown paths and methods a path does not have are a JSON 404
// that names the API's description, docs/API.md, without a token.
func TestUnknownEndpointNamesTheAPIDoc(t *testing.T) {
	c, _ := newTestAPI(t)
	for _, tc := range []struct{ method, path string }{{"GET", "/nothing"}, {"GET", "/v1/nothing"}, {"PUT", "/v1/accounts"}, {"POST", "/"}} {
		resp := doRequest(t, c.BaseURL, "", tc.method, tc.path, "")
		var e map[string]string
		decodeJSON(t, resp, &e)
		want := "no such endpoint: " + tc.method + " " + tc.path + " (see docs/API.md for the API)"
		if resp.StatusCode != http.StatusNotFound || len(e) != 1 || e["error"] != want {
			t.Errorf("%s %s: %d %q, want 404 {\"error\": %q}", tc.method, tc.path, resp.StatusCode, e, want)
		}
	}
}

func TestImportAndRegistrations(t *testing.T) {
	c, st := newTestAPI(t)
	ctx := context.Background()
	var as []Account
	for _, id := range []string{"u1", "u2", "u3"} {
		as = append(as, Account{ID: id, Password: testPassword + "-" + id})
	}
	if err := c.ImportAccounts(ctx, as); err != nil {
		t.Fatal(err)
	}
	if err := c.ImportAccounts(ctx, as); err != nil {
		t.Fatalf("re-running the same import: %v", err)
	}
	st.ApplyCommand(&fsm.Register{AOR: "u2", CallID: "c", CSeq: 1, Now: now.UnixMilli(), Bindings: []fsm.Binding{{
		Contact: "sip:u2@10.1.1.1:5062", Source: "10.1.1.1:5062", Transport: "udp", Ingress: "udp:127.0.0.2:5070",
		ExpiresAt: now.Add(time.Hour).UnixMilli(), Q: 500}}})
	regs, err := c.Registrations(ctx, "u2")
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 1 || regs[0].Ingress != "udp:127.0.0.2:5070" || regs[0].Expires != 3600 || regs[0].Q != "0.5" {
		t.Fatalf("registrations %+v", regs)
	}
	if all, _ := c.Registrations(ctx, ""); len(all) != 1 {
		t.Fatalf("all registrations %+v", all)
	}
}
func decodeJSON(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decode %d answer: %v", resp.StatusCode, err)
	}
}

// A backend without the optional parts (operator actions, drain, raft
// changes, snapshots) answers each of their routes 501 saying what this
// node cannot do, and nothing reaches the backend.
func TestMissingBackendPartsAnswer501(t *testing.T) {
	st := fsm.New()
	srv, err := New(Config{Token: token, Now: func() time.Time { return now }}, st, testkit.NewStore(st))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	routes := []struct{ method, path, want string }{
		{"DELETE", "/v1/calls/c1", noOperator},
		{"GET", "/v1/auth/blocks", noOperator},
		{"DELETE", "/v1/auth/blocks/sources/192.0.2.1", noOperator},
		{"DELETE", "/v1/auth/blocks/users/1001", noOperator},
		{"POST", "/v1/cluster/drain", noDrainer},
		{"GET", "/v1/operator/raft/peers", noRaftOperator},
		{"POST", "/v1/operator/raft/add-voter", noRaftOperator},
		{"POST", "/v1/operator/raft/remove-peer", noRaftOperator},
		{"POST", "/v1/snapshot/save", noSnapshots},
		{"POST", "/v1/snapshot/restore", noSnapshots},
	}
	for _, r := range routes {
		req, err := http.NewRequest(r.method, hs.URL+r.path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(string(body), r.want) {
			t.Errorf("%s %s: %d %s, want 501 saying %q", r.method, r.path, resp.StatusCode, body, r.want)
		}
	}
}
