package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// vendorAPI is a test API with a cost tariff "cost", an account 44123, a
// vendor "carrier1" (with digest credentials) and its connection "c1"
// from 203.0.113.0/24 translating s/^00/+/; s/^\+44/44/.
func vendorAPI(t *testing.T) (*Client, *fsm.State) {
	t.Helper()
	return newSeededAPI(t, seed{
		Tariffs:  []Tariff{{ID: "cost", Currency: "USD", Rates: []Rate{{PerMinute: "0.005"}}}},
		Accounts: []Account{{ID: "44123", Password: testPassword}},
		Vendors:  []Vendor{{ID: "carrier1", Name: "Carrier One", Username: "carrier1", Password: "S3cret-vendor"}},
		Connections: []Connection{{ID: "c1", Vendor: "carrier1", RemoteIPs: []string{"203.0.113.0/24"}, Tariff: "cost",
			Translation: Translation{CLD: `s/^00/+/; s/^\+44/44/`}}},
	})
}

// The password is stored but never shown; has_password says whether there
// is one; replacing a vendor replaces every field.
func TestVendorLifecycle(t *testing.T) {
	c, st := newTestAPI(t)
	ctx := context.Background()
	out, err := c.PutVendor(ctx, Vendor{ID: "carrier1", Name: "Carrier One", Username: "carrier1", Password: "S3cret-vendor"})
	if err != nil || out != (Vendor{ID: "carrier1", Name: "Carrier One", Username: "carrier1", HasPassword: true}) {
		t.Fatalf("created %+v %v", out, err)
	}
	if v, _ := st.Vendor("carrier1"); !reflect.DeepEqual(v.Credentials, testkit.Creds("carrier1", "S3cret-vendor")) {
		t.Fatalf("stored %+v", v)
	}
	for _, path := range []string{"/v1/vendors/carrier1", "/v1/vendors"} {
		status, body := raw(t, c, "GET", path, "")
		if status != 200 || strings.Contains(string(body), "S3cret-vendor") || strings.Contains(string(body), `"password"`) ||
			!strings.Contains(string(body), `"has_password": true`) {
			t.Fatalf("GET %s: %d %s", path, status, body)
		}
	}
	// Without credentials (a vendor recognised by address only).
	if out, err := c.PutVendor(ctx, Vendor{ID: "carrier2", Name: "Carrier Two"}); err != nil || out.HasPassword || out.Username != "" {
		t.Fatalf("no credentials: %+v %v", out, err)
	}
	// Replace: a new name and password.
	if out, err := c.PutVendor(ctx, Vendor{ID: "carrier1", Name: "Carrier 1", Username: "carrier1", Password: "N3w-vendor-pw"}); err != nil || out.Name != "Carrier 1" {
		t.Fatalf("replace %+v %v", out, err)
	}
	if v, _ := st.Vendor("carrier1"); !reflect.DeepEqual(v.Credentials, testkit.Creds("carrier1", "N3w-vendor-pw")) {
		t.Fatalf("replaced password not stored: %+v", v)
	}
	list, err := c.Vendors(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "carrier1" || !list[0].HasPassword || list[1].HasPassword {
		t.Fatalf("list %+v %v", list, err)
	}
	deleteGone(t, ctx, "carrier2", c.DeleteVendor, c.Vendor)
}

// A connection is stored with the default kind, shown with its rules, and
// its vendor cannot be deleted while it exists.
func TestConnectionLifecycle(t *testing.T) {
	c, st := vendorAPI(t)
	ctx := context.Background()
	got, err := c.Connection(ctx, "c1")
	want := Connection{ID: "c1", Vendor: "carrier1", Kind: "from_vendor_sip", RemoteIPs: []string{"203.0.113.0/24"}, Tariff: "cost",
		Translation: Translation{CLD: `s/^00/+/; s/^\+44/44/`}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("get %+v %v, want %+v", got, err, want)
	}
	// By user name only, with CLI rules: remote_ips lists as [].
	in := Connection{ID: "c2", Vendor: "carrier1", Kind: "from_vendor_sip", Username: "carrier1-b", Password: "B-s3cret-conn", Tariff: "cost",
		Translation: Translation{CLD: `s/^(?=1)/+/`, CLI: `s/^\+//`}}
	out, err := c.PutConnection(ctx, in)
	in.RemoteIPs, in.Password, in.HasPassword = []string{}, "", true
	if err != nil || !reflect.DeepEqual(out, in) {
		t.Fatalf("by user name %+v %v", out, err)
	}
	status, body := raw(t, c, "GET", "/v1/connections/c2", "")
	var m map[string]any
	if err := json.Unmarshal(body, &m); status != 200 || err != nil || m["remote_ips"] == nil || m["translation"].(map[string]any)["cli"] != `s/^\+//` {
		t.Fatalf("raw get %d %s", status, body)
	}
	list, err := c.Connections(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "c1" || list[1].ID != "c2" {
		t.Fatalf("list %+v %v", list, err)
	}

	err = c.DeleteVendor(ctx, "carrier1")
	if ae := apiErr(t, err); ae.Status != http.StatusConflict || ae.Field != "id" || !strings.Contains(ae.Msg, "c1") {
		t.Fatalf("deleting a vendor with connections: %+v", ae)
	}
	err = c.DeleteTariff(ctx, "cost")
	if ae := apiErr(t, err); ae.Status != http.StatusConflict {
		t.Fatalf("deleting a connection's tariff: %+v", ae)
	}
	if n := st.Counts(); n.Vendors != 1 || n.Connections != 2 || n.Tariffs != 1 {
		t.Fatalf("refused deletes changed the state: %+v", n)
	}
	for _, id := range []string{"c1", "c2"} {
		if err := c.DeleteConnection(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteConnection(ctx, "c1"); !IsNotFound(err) {
		t.Fatalf("deleting twice: %v", err)
	}
	if err := c.DeleteVendor(ctx, "carrier1"); err != nil {
		t.Fatal(err)
	}
}

func TestVendorAndConnectionBadInputNamesTheFieldAndChangesNothing(t *testing.T) {
	c, st := vendorAPI(t)
	before := st.Counts()
	conn := func(extra string) string {
		return `{"id":"x","vendor":"carrier1","remote_ips":["198.51.100.1"],"tariff":"cost"` + extra + `}`
	}
	cases := []struct {
		path, body string
		status     int
		field      string
		msg        string // in the error, if set
	}{
		{"/v1/vendors", `{"id":"v","username":"u"}`, 400, "password", ""},
		{"/v1/vendors", `{"id":"v","name":"two\nlines"}`, 400, "name", ""},
		{"/v1/vendors", `{"id":"v","username":"44123","password":"` + testPassword + `"}`, 409, "username", "account 44123"},
		{"/v1/vendors", `{"id":"v","has_pasword":true}`, 400, "has_pasword", ""},
		{"/v1/vendors", `{"id":"bad id"}`, 400, "id", ""},
		{"/v1/connections", `{"id":"x","vendor":"carrier1","remote_ips":["1.2.3"],"tariff":"cost"}`, 400, "remote_ips[0]", `"1.2.3"`},
		{"/v1/connections", `{"id":"x","vendor":"carrier1","remote_ips":["1.2.3.4","10.0.0.0/33"],"tariff":"cost"}`, 400, "remote_ips[1]", ""},
		{"/v1/connections", `{"id":"x","vendor":"nope","remote_ips":["1.2.3.4"],"tariff":"cost"}`, 400, "vendor", "no vendor nope"},
		{"/v1/connections", `{"id":"x","remote_ips":["1.2.3.4"],"tariff":"cost"}`, 400, "vendor", ""},
		{"/v1/connections", `{"id":"x","vendor":"carrier1","remote_ips":["1.2.3.4"],"tariff":"nope"}`, 400, "tariff", "no tariff nope"},
		{"/v1/connections", `{"id":"x","vendor":"carrier1","remote_ips":["1.2.3.4"]}`, 400, "tariff", ""},
		{"/v1/connections", conn(`,"kind":"to_vendor"`), 400, "kind", ""},
		{"/v1/connections", conn(`,"username":"44123"`), 409, "username", ""},
		{"/v1/connections", conn(`,"translation":{"cld":"s/(/x/"}`), 400, "translation.cld", `rule 1 "s/(/x/"`},
		{"/v1/connections", conn(`,"translation":{"cld":"s/^00/+/; s/^\\+44/44/; s/a/b/q"}`), 400, "translation.cld", `rule 3 "s/a/b/q"`},
		{"/v1/connections", conn(`,"translation":{"cli":"s/^00/+"}`), 400, "translation.cli", `rule 1 "s/^00/+"`},
		{"/v1/connections", conn(`,"translation":{"cld":"s/^00/+/","clid":""}`), 400, "clid", ""},
		{"/v1/connections", conn(`,"translation":"s/^00/+/"`), 400, "translation", ""},
	}
	for _, tc := range cases {
		status, body := raw(t, c, "POST", tc.path, tc.body)
		var e Error
		if err := json.Unmarshal(body, &e); err != nil || status != tc.status || e.Field != tc.field || e.Error == "" ||
			!strings.Contains(e.Error, tc.msg) {
			t.Errorf("%s %s: got %d %s; want %d on %q with %q", tc.path, tc.body, status, body, tc.status, tc.field, tc.msg)
		}
	}
	// The rule's message reaches a Client caller intact.
	_, err := c.PutConnection(context.Background(), Connection{ID: "x", Vendor: "carrier1", RemoteIPs: []string{"1.2.3.4"}, Tariff: "cost",
		Translation: Translation{CLD: `s/^00/+/; s/(?<=x/y/`}})
	if ae := apiErr(t, err); ae.Status != 400 || ae.Field != "translation.cld" || !strings.HasPrefix(ae.Msg, `translation.cld: rule 2 "s/(?<=x/y/": pattern: `) {
		t.Fatalf("client error %+v", ae)
	}
	if n := st.Counts(); n != before {
		t.Fatalf("bad input changed the state: %+v, was %+v", n, before)
	}
	if c1, _ := st.Connection("c1"); c1.TranslationCLD != `s/^00/+/; s/^\+44/44/` {
		t.Fatalf("c1 changed: %+v", c1)
	}
}

// The dry run applies the stored rules, names the account the called
// number reaches (or null), and stops a hostile rule by its timeout.
func TestTranslateDryRun(t *testing.T) {
	c, st := vendorAPI(t)
	ctx := context.Background()
	res, err := c.Translate(ctx, "c1", TranslateRequest{CLD: "0044123", CLI: "0012065551201"})
	if err != nil || res.CLD != "44123" || res.CLI != "0012065551201" || res.CLDAccount == nil || *res.CLDAccount != "44123" {
		t.Fatalf("to an account: %+v %v", res, err)
	}
	status, body := raw(t, c, "POST", "/v1/connections/c1/translate", `{"cld":"0044999"}`)
	if status != 200 || !strings.Contains(string(body), `"cld": "44999"`) || !strings.Contains(string(body), `"cld_account": null`) {
		t.Fatalf("to no account: %d %s", status, body)
	}

	// Lookahead and backreferences, CLI only.
	if _, err := c.PutConnection(ctx, Connection{ID: "c2", Vendor: "carrier1", RemoteIPs: []string{"198.51.100.7"}, Tariff: "cost",
		Translation: Translation{CLD: `s/^(?=44)(\d)\1/00$1$1/`, CLI: `s/^(\d{3})(\d+)$/+1-$1-$2/`}}); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Translate(ctx, "c2", TranslateRequest{CLI: "2065551201"}); err != nil || res.CLI != "+1-206-5551201" || res.CLD != "" || res.CLDAccount != nil {
		t.Fatalf("cli only: %+v %v", res, err)
	}
	if res, err := c.Translate(ctx, "c2", TranslateRequest{CLD: "44123"}); err != nil || res.CLD != "0044123" {
		t.Fatalf("backreference: %+v %v", res, err)
	}

	// A catastrophic-backtracking rule: an error naming it, quickly.
	if _, err := c.PutConnection(ctx, Connection{ID: "evil", Vendor: "carrier1", RemoteIPs: []string{"198.51.100.8"}, Tariff: "cost",
		Translation: Translation{CLD: `s/(a+)+$/x/`}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Translate(ctx, "evil", TranslateRequest{CLD: strings.Repeat("a", 40) + "!"})
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the hostile rule took %s", took)
	}
	if ae := apiErr(t, err); ae.Status != http.StatusUnprocessableEntity || ae.Field != "translation.cld" ||
		!strings.Contains(ae.Msg, `rule 1 "s/(a+)+$/x/"`) || !strings.Contains(ae.Msg, "timed out") {
		t.Fatalf("hostile rule: %+v", ae)
	}

	for _, tc := range []struct {
		path, body string
		status     int
		field      string
	}{
		{"/v1/connections/c1/translate", `{}`, 400, "cld"},
		{"/v1/connections/c1/translate", `{"cld":""}`, 400, "cld"},
		{"/v1/connections/c1/translate", `{"cld":44123}`, 400, "cld"},
		{"/v1/connections/c1/translate", `{"cld":"` + strings.Repeat("1", 129) + `"}`, 400, "cld"},
		{"/v1/connections/c1/translate", `{"cld":"1","cli":"a\nb"}`, 400, "cli"},
		{"/v1/connections/c1/translate", `{"cld":"1","clid":"2"}`, 400, "clid"},
		{"/v1/connections/nope/translate", `{"cld":"1"}`, 404, ""},
	} {
		status, body := raw(t, c, "POST", tc.path, tc.body)
		var e Error
		if err := json.Unmarshal(body, &e); err != nil || status != tc.status || e.Field != tc.field || e.Error == "" {
			t.Errorf("%s %s: got %d %s; want %d on %q", tc.path, tc.body, status, body, tc.status, tc.field)
		}
	}
	if n := st.Counts(); n.Connections != 3 || n.Calls != 0 || n.XDRs != 0 {
		t.Fatalf("a dry run changed the state: %+v", n)
	}
}
