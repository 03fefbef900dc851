package admin

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/troika-sip/troika/fsm"
)

// An account's service policy, static incoming delivery and follow-me list
// are set at creation, shown, and changed or cleared by PATCH.
func TestAccountDeliveryFields(t *testing.T) {
	c, st := newSeededAPI(t, seed{Policies: []ServicePolicy{{ID: "easycall", Redirect: RedirectPolicy{
		TrustedNetworks: []string{"193.148.210.22", "195.111.134.55"}, UntrustedAction: "reject"}}}})
	ctx := context.Background()
	static := Incoming{Mode: "static", Host: "55.55.5.6", Port: 5060, Transport: "udp"}
	fm := []FollowMeTarget{{Target: "1002", TimeoutS: 20}, {Target: "sip:desk@pbx.example.com:5080", TimeoutS: 30}}
	a, err := c.CreateAccount(ctx, Account{ID: "80032555939", Password: testPassword, ServicePolicy: "easycall", Incoming: static, FollowMe: fm})
	if err != nil {
		t.Fatal(err)
	}
	if a.ServicePolicy != "easycall" || a.Incoming != static || !reflect.DeepEqual(a.FollowMe, fm) {
		t.Fatalf("created %+v", a)
	}
	stored, _ := st.Account("80032555939")
	if stored.ServicePolicy != "easycall" || stored.Incoming != (fsm.Incoming{Mode: "static", Host: "55.55.5.6", Port: 5060, Transport: "udp"}) ||
		!reflect.DeepEqual(stored.FollowMe, []fsm.FollowMeTarget{{Target: "1002", TimeoutS: 20}, {Target: "sip:desk@pbx.example.com:5080", TimeoutS: 30}}) {
		t.Fatalf("stored %+v", stored)
	}

	// PATCH of one field leaves the others.
	mc := 2
	if a, err = c.UpdateAccount(ctx, a.ID, AccountPatch{MaxCalls: &mc}); err != nil || a.Incoming != static || len(a.FollowMe) != 2 || a.ServicePolicy != "easycall" {
		t.Fatalf("unrelated patch: %+v %v", a, err)
	}
	// Back to registered phones (host and port go), one follow-me target.
	reg := Incoming{Mode: "registered"}
	one := []FollowMeTarget{{Target: "1003", TimeoutS: 15}}
	if a, err = c.UpdateAccount(ctx, a.ID, AccountPatch{Incoming: &reg, FollowMe: &one}); err != nil || a.Incoming != reg || !reflect.DeepEqual(a.FollowMe, one) {
		t.Fatalf("to registered: %+v %v", a, err)
	}
	// "follow_me": [] clears; null leaves it; "service_policy": "" unsets.
	status, body := raw(t, c, "PATCH", "/v1/accounts/80032555939", `{"follow_me":null}`)
	if status != 200 || len(mustAccount(t, body).FollowMe) != 1 {
		t.Fatalf("null follow_me: %d %s", status, body)
	}
	status, body = raw(t, c, "PATCH", "/v1/accounts/80032555939", `{"follow_me":[],"service_policy":""}`)
	if a := mustAccount(t, body); status != 200 || a.FollowMe == nil || len(a.FollowMe) != 0 || a.ServicePolicy != "" {
		t.Fatalf("clearing: %d %s", status, body)
	}
	if stored, _ := st.Account("80032555939"); len(stored.FollowMe) != 0 || stored.ServicePolicy != "" {
		t.Fatalf("stored after clearing %+v", stored)
	}
	// Static again through PATCH, over TCP on a name.
	tcp := Incoming{Mode: "static", Host: "redirect.example.com", Port: 5070, Transport: "tcp"}
	if a, err = c.UpdateAccount(ctx, a.ID, AccountPatch{Incoming: &tcp}); err != nil || a.Incoming != tcp {
		t.Fatalf("static by PATCH: %+v %v", a, err)
	}
}

func TestAccountDeliveryBadInputNamesTheFieldAndChangesNothing(t *testing.T) {
	c, st := newSeededAPI(t, seed{Accounts: []Account{{ID: "1001", Password: testPassword}}})
	before, _ := st.Account("1001")
	static := `"incoming":{"mode":"static","host":"55.55.5.6","port":5060,"transport":"udp"}`
	cases := []struct {
		method, path, body string
		field              string
	}{
		{"POST", "/v1/accounts", `{"id":"2","password":"` + testPassword + `","service_policy":"nope"}`, "service_policy"},
		{"POST", "/v1/accounts", `{"id":"2","password":"` + testPassword + `","incoming":{"mode":"redirect"}}`, "incoming.mode"},
		{"POST", "/v1/accounts", `{"id":"2","password":"` + testPassword + `","incoming":{"host":"55.55.5.6","port":5060,"transport":"udp"}}`, "incoming.mode"},
		{"POST", "/v1/accounts", `{"id":"2","password":"` + testPassword + `","incoming":{"mode":"static","port":5060,"transport":"udp"}}`, "incoming.host"},
		{"POST", "/v1/accounts", `{"id":"2","password":"` + testPassword + `","incoming":{"mode":"static","host":"55.55.5.6","port":70000,"transport":"udp"}}`, "incoming.port"},
		{"POST", "/v1/accounts", `{"id":"2","password":"` + testPassword + `","incoming":{"mode":"static","host":"55.55.5.6","port":5060,"transport":"sctp"}}`, "incoming.transport"},
		{"POST", "/v1/accounts", `{"id":"2","password":"` + testPassword + `","incoming":{"mode":"static","host":"55.55.5.6","port":"5060","transport":"udp"}}`, "incoming.port"},
		{"POST", "/v1/accounts", `{"id":"2","password":"` + testPassword + `",` + static + `,"follow_me":[{"target":"1002","timeout_s":0}]}`, "follow_me[0].timeout_s"},
		{"POST", "/v1/accounts", `{"id":"2","password":"` + testPassword + `","follow_me":[{"target":"1002","timeout_s":20},{"target":"","timeout_s":20}]}`, "follow_me[1].target"},
		{"POST", "/v1/accounts", `{"id":"2","password":"` + testPassword + `","follow_me":[{"target":"1002","timeout":20}]}`, "timeout"},
		{"POST", "/v1/accounts", `{"id":"2","password":"` + testPassword + `","follow_me":{"target":"1002","timeout_s":20}}`, "follow_me"},
		{"PATCH", "/v1/accounts/1001", `{"service_policy":"nope"}`, "service_policy"},
		{"PATCH", "/v1/accounts/1001", `{"incoming":{"mode":"static","host":"55.55.5.6","port":5060}}`, "incoming.transport"},
		{"PATCH", "/v1/accounts/1001", `{"incoming":{"mode":"registered","host":"55.55.5.6"}}`, "incoming.mode"},
		{"PATCH", "/v1/accounts/1001", `{"follow_me":[{"target":"1002","timeout_s":601}]}`, "follow_me[0].timeout_s"},
		{"PATCH", "/v1/accounts/1001", `{"max_calls":1,"follow_me":[{"target":"two\nlines","timeout_s":20}]}`, "follow_me[0].target"},
	}
	for _, tc := range cases {
		status, body := raw(t, c, tc.method, tc.path, tc.body)
		var e Error
		if err := json.Unmarshal(body, &e); err != nil || status != 400 || e.Field != tc.field || e.Error == "" {
			t.Errorf("%s %s %s: got %d %s; want 400 on %q", tc.method, tc.path, tc.body, status, body, tc.field)
		}
	}
	if n := st.Counts(); n.Accounts != 1 {
		t.Fatalf("bad input created accounts: %+v", n)
	}
	if after, _ := st.Account("1001"); !reflect.DeepEqual(after, before) {
		t.Fatalf("bad patches changed the account: %+v, was %+v", after, before)
	}
}

func mustAccount(t *testing.T, body []byte) Account {
	t.Helper()
	var a Account
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return a
}
