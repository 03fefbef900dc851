package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

const readToken = "read-token-0123456789"

// scopedAPI serves the API with the legacy admin token (token) and a
// read-only one (readToken, named "noc").
func scopedAPI(t *testing.T) (string, *fsm.State) {
	t.Helper()
	st := fsm.New()
	srv, err := New(Config{Token: token, Tokens: []Token{{Name: "noc", Scope: ScopeRead, Secret: readToken}},
		Metrics: http.NotFoundHandler(), Now: func() time.Time { return now }}, st, testkit.NewStore(st))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return hs.URL, st
}

func request(t *testing.T, base, tok, method, path, body string) (int, Error) {
	t.Helper()
	resp := doRequest(t, base, tok, method, path, body)
	var e Error
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") == "application/json" {
		decodeJSON(t, resp, &e)
	} else {
		resp.Body.Close()
	}
	return resp.StatusCode, e
}

// A read token reads everything under /v1/ and changes nothing: every
// write, the dry run, the drain and the profiles answer 403 saying the
// token is read-only. The admin token does all of it.
func TestReadTokenReadsAndCannotWrite(t *testing.T) {
	base, st := scopedAPI(t)
	ops := NewClient(base, token)
	ctx := context.Background()
	if _, err := ops.PutTariff(ctx, Tariff{ID: "t", Currency: "USD", Rates: []Rate{{PerMinute: "0.1"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.CreateAccount(ctx, Account{ID: "1001", Password: testPassword, TariffOut: "t"}); err != nil {
		t.Fatal(err)
	}
	before := st.Counts()
	for _, path := range []string{"/v1/accounts", "/v1/accounts/1001", "/v1/tariffs", "/v1/aliases", "/v1/service-policies",
		"/v1/vendors", "/v1/connections", "/v1/registrations", "/v1/calls", "/v1/xdrs", "/v1/xdrs?format=csv", "/v1/cluster"} {
		if status, e := request(t, base, readToken, "GET", path, ""); status != http.StatusOK {
			t.Errorf("GET %s with the read token: %d %s", path, status, e.Error)
		}
	}
	for _, w := range []struct{ method, path, body string }{
		{"POST", "/v1/accounts", `{"id":"1002","password":"` + testPassword + `"}`},
		{"POST", "/v1/accounts/import", `{"accounts":[{"id":"1003","password":"` + testPassword + `"}]}`},
		{"PATCH", "/v1/accounts/1001", `{"max_calls":1}`},
		{"DELETE", "/v1/accounts/1001", ""},
		{"POST", "/v1/accounts/1001/topup", `{"amount":"1"}`},
		{"POST", "/v1/tariffs", `{"id":"t2","currency":"USD","rates":[{"per_minute":"1"}]}`},
		{"DELETE", "/v1/tariffs/t", ""},
		{"POST", "/v1/aliases", `{"ip":"127.0.0.9"}`},
		{"POST", "/v1/vendors", `{"id":"v"}`},
		{"POST", "/v1/connections/c/translate", `{"cld":"1"}`},
		{"POST", "/v1/cluster/drain", ""},
		{"GET", "/debug/pprof/heap", ""},
		{"GET", "/debug/pprof/profile?seconds=1", ""},
	} {
		status, e := request(t, base, readToken, w.method, w.path, w.body)
		want := "this token is read-only: " + w.method + " " + strings.Split(w.path, "?")[0] + " needs a token of scope admin"
		if status != http.StatusForbidden || !strings.HasPrefix(e.Error, want) || !strings.Contains(e.Error, `"noc"`) {
			t.Errorf("%s %s with the read token: %d %q, want 403 %q", w.method, w.path, status, e.Error, want)
		}
		if strings.Contains(e.Error, readToken) {
			t.Errorf("the 403 shows the token: %s", e.Error)
		}
	}
	if st.Counts() != before {
		t.Fatalf("the read token changed the state: %v, was %v", st.Counts(), before)
	}
	if status, e := request(t, base, token, "GET", "/debug/pprof/heap", ""); status != http.StatusOK {
		t.Fatalf("profile with the admin token: %d %s", status, e.Error)
	}
	blocked := true
	if _, err := ops.UpdateAccount(ctx, "1001", AccountPatch{Blocked: &blocked}); err != nil {
		t.Fatalf("write with the admin token: %v", err)
	}
	for _, path := range []string{"/healthz", "/metrics"} { // as before: no token
		if status, _ := request(t, base, "", "GET", path, ""); status == http.StatusUnauthorized || status == http.StatusForbidden {
			t.Errorf("GET %s without a token: %d", path, status)
		}
	}
	for _, tok := range []string{"", "wrong", readToken + "x", readToken[:16], "Bearer " + readToken} {
		if status, _ := request(t, base, tok, "GET", "/v1/accounts", ""); status != http.StatusUnauthorized {
			t.Errorf("token %q: %d, want 401", tok, status)
		}
	}
}

func TestTokenSetIsChecked(t *testing.T) {
	st := fsm.New()
	long := func(c string) string { return strings.Repeat(c, MinTokenLength) }
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"none":         {Config{}, "at least 16 characters"},
		"short legacy": {Config{Token: "short"}, "at least 16 characters"},
		"short":        {Config{Tokens: []Token{{Name: "a", Scope: ScopeAdmin, Secret: "short"}}}, "at least 16 characters"},
		"read only":    {Config{Tokens: []Token{{Name: "noc", Scope: ScopeRead, Secret: long("a")}}}, "no token of scope admin"},
		"bad scope":    {Config{Tokens: []Token{{Name: "a", Scope: "write", Secret: long("a")}}}, `scope "write"`},
		"no name":      {Config{Tokens: []Token{{Scope: ScopeAdmin, Secret: long("a")}}}, "needs a name"},
		"same name": {Config{Tokens: []Token{{Name: "a", Scope: ScopeAdmin, Secret: long("a")}, {Name: "a", Scope: ScopeRead, Secret: long("b")}}},
			`two tokens are named "a"`},
		"same secret": {Config{Token: long("a"), Tokens: []Token{{Name: "noc", Scope: ScopeRead, Secret: long("a")}}},
			`"token" and "noc" are the same secret`},
	} {
		_, err := New(tc.cfg, st, testkit.NewStore(st))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
	if _, err := New(Config{Tokens: []Token{{Name: "ops", Scope: ScopeAdmin, Secret: long("a")}}}, st, testkit.NewStore(st)); err != nil {
		t.Fatalf("one admin token: %v", err)
	}
}
