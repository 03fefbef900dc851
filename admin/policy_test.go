package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/troika-sip/troika/fsm"
)

// A policy is stored as sent, shown with the hop limit in effect, listed,
// assigned to an account, refused deletion while in use and then deleted.
func TestServicePolicyLifecycle(t *testing.T) {
	c, st := newTestAPI(t)
	ctx := context.Background()
	in := ServicePolicy{ID: "easycall", Redirect: RedirectPolicy{
		TrustedNetworks: []string{"193.148.210.22", "195.111.134.55", "10.0.0.0/8", "2001:db8::/32", "pbx.example.com"},
		UntrustedAction: "reject",
	}}
	out, err := c.PutServicePolicy(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.Redirect.MaxRedirects = 3 // the default, shown
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("created %+v, want %+v", out, want)
	}
	if p, _ := st.ServicePolicy("easycall"); p.Redirect.MaxRedirects != 0 || len(p.Redirect.TrustedNetworks) != 5 {
		t.Fatalf("stored %+v: 0 must stay 'the default'", p)
	}
	if got, err := c.ServicePolicy(ctx, "easycall"); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("get %+v %v", got, err)
	}

	// Replace: an explicit hop limit and the other action; no networks
	// lists as [] rather than null.
	out, err = c.PutServicePolicy(ctx, ServicePolicy{ID: "strict", Redirect: RedirectPolicy{UntrustedAction: "new_call_authorization", MaxRedirects: 1}})
	if err != nil || out.Redirect.MaxRedirects != 1 || out.Redirect.UntrustedAction != "new_call_authorization" {
		t.Fatalf("second policy %+v %v", out, err)
	}
	status, body := raw(t, c, "GET", "/v1/service-policies/strict", "")
	var m struct{ Redirect map[string]any }
	if err := json.Unmarshal(body, &m); status != 200 || err != nil || m.Redirect["trusted_networks"] == nil {
		t.Fatalf("raw get %d %s", status, body)
	}
	list, err := c.ServicePolicies(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "easycall" || list[1].ID != "strict" {
		t.Fatalf("list %+v %v", list, err)
	}

	// In use by an account: 409, and the policy stays.
	if _, err := c.CreateAccount(ctx, Account{ID: "80032555939", Password: testPassword, ServicePolicy: "easycall"}); err != nil {
		t.Fatal(err)
	}
	err = c.DeleteServicePolicy(ctx, "easycall")
	if ae := apiErr(t, err); ae.Status != http.StatusConflict || ae.Field != "id" {
		t.Fatalf("deleting a policy in use: %+v", ae)
	}
	if _, err := c.ServicePolicy(ctx, "easycall"); err != nil {
		t.Fatalf("policy gone after a refused delete: %v", err)
	}
	none := ""
	if _, err := c.UpdateAccount(ctx, "80032555939", AccountPatch{ServicePolicy: &none}); err != nil {
		t.Fatal(err)
	}
	deleteGone(t, ctx, "easycall", c.DeleteServicePolicy, c.ServicePolicy)
	if err := c.DeleteServicePolicy(ctx, "easycall"); !IsNotFound(err) {
		t.Fatalf("deleting twice: %v", err)
	}
}

func TestServicePolicyBadInputNamesTheFieldAndChangesNothing(t *testing.T) {
	c, st := newTestAPI(t)
	ok := `"untrusted_action":"reject"`
	cases := []struct {
		body  string
		field string
	}{
		{`{"id":"p","redirect":{"trusted_networks":["1.2.3.4/33"],` + ok + `}}`, "redirect.trusted_networks"},
		{`{"id":"p","redirect":{"trusted_networks":["not a host!"],` + ok + `}}`, "redirect.trusted_networks"},
		{`{"id":"p","redirect":{"trusted_networks":[""],` + ok + `}}`, "redirect.trusted_networks"},
		{`{"id":"p","redirect":{"trusted_networks":"1.2.3.4",` + ok + `}}`, "redirect.trusted_networks"},
		{`{"id":"p","redirect":{"untrusted_action":"follow"}}`, "redirect.untrusted_action"},
		{`{"id":"p","redirect":{}}`, "redirect.untrusted_action"},
		{`{"id":"p"}`, "redirect.untrusted_action"},
		{`{"id":"p","redirect":{` + ok + `,"max_redirects":-1}}`, "redirect.max_redirects"},
		{`{"id":"p","redirect":{` + ok + `,"max_redirects":11}}`, "redirect.max_redirects"},
		{`{"id":"p","redirect":{` + ok + `,"max_redirects":"3"}}`, "redirect.max_redirects"},
		{`{"id":"p","redirect":{` + ok + `,"max_hops":3}}`, "max_hops"},
		{`{"id":"bad id","redirect":{` + ok + `}}`, "id"},
	}
	for _, tc := range cases {
		status, body := raw(t, c, "POST", "/v1/service-policies", tc.body)
		var e Error
		if err := json.Unmarshal(body, &e); err != nil || status != 400 || e.Field != tc.field || e.Error == "" {
			t.Errorf("%s: got %d %s; want 400 on %q", tc.body, status, body, tc.field)
		}
	}
	if status, _ := raw(t, c, "DELETE", "/v1/service-policies/nope", ""); status != 404 {
		t.Errorf("deleting an unknown policy: %d", status)
	}
	if n := st.Counts(); n != (fsm.Counts{}) {
		t.Fatalf("bad input changed the state: %+v", n)
	}
}
