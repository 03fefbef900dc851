package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// billingAPI is a test API with tariffs "out" (1/1 at 0.06/min, connect
// fee 0.01) and "in" (60/60 at 0.02/min), prepaid 1001 (1.00, outgoing
// only) and 1002 (1.00, outgoing and incoming). Tariff money is sent with
// trailing zeros on purpose: the API must answer with exact, trimmed
// decimals.
func billingAPI(t *testing.T) (*Client, *fsm.State) {
	t.Helper()
	return newSeededAPI(t, seed{
		Tariffs: []Tariff{
			{ID: "out", Currency: "USD", Rates: []Rate{{PerMinute: "0.060000", ConnectFee: "0.010", FirstInterval: 1, NextInterval: 1}}},
			{ID: "in", Currency: "USD", Rates: []Rate{{PerMinute: "0.02", FirstInterval: 60, NextInterval: 60}}},
		},
		Accounts: []Account{
			{ID: "1001", Password: testPassword, Balance: "1.00", TariffOut: "out"},
			{ID: "1002", Password: testPassword, Balance: "1.00", TariffOut: "out", TariffIn: "in"},
		},
	})
}

func startCall(id, from, to string, at time.Time) *fsm.StartCall {
	return &fsm.StartCall{ID: id, Direction: fsm.DirOutgoing, Account: from, CLI: from, CLD: to, MaxSeconds: 14400,
		Now: at.UnixMilli(), Node: "n1", Charges: []fsm.ChargeRequest{
			{Account: from, Role: fsm.RoleOutgoing, Number: to}, {Account: to, Role: fsm.RoleIncoming, Number: to}}}
}

// raw sends a request outside the Client and returns the status and body.
func raw(t *testing.T, c *Client, method, path, body string) (int, []byte) {
	t.Helper()
	return rawAs(t, c, token, method, path, body)
}

// rawAs is raw with the bearer token tok ("" for none).
func rawAs(t *testing.T, c *Client, tok, method, path, body string) (int, []byte) {
	t.Helper()
	resp := doRequest(t, c.BaseURL, tok, method, path, body)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// The same key twice moves the money once; the answer says which key was
// used; keys are scoped to the account; a missing key is generated and
// reported.
func TestTopupIsIdempotentPerKey(t *testing.T) {
	c, st := billingAPI(t)
	ctx := context.Background()
	req := TopupRequest{Amount: "5.000000", Key: "inv-2026-001", Note: "bank transfer"}
	for i := range 2 {
		res, err := c.Topup(ctx, "1001", req)
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		if res.ID != "1001" || res.Balance != "6.00" || res.Reserved != "0.00" ||
			res.Topup != (TopupReceipt{Amount: "5.00", Key: "inv-2026-001", Note: "bank transfer"}) {
			t.Fatalf("attempt %d: %+v", i, res)
		}
	}
	if a, _ := st.Account("1001"); a.Balance != 6_000_000 {
		t.Fatalf("balance after a repeated top-up: %d", a.Balance)
	}
	// Another account may use the same key (an invoice number, say).
	if res, err := c.Topup(ctx, "1002", req); err != nil || res.Balance != "6.00" {
		t.Fatalf("same key, other account: %+v %v", res, err)
	}
	// No key: one is made up and reported.
	res, err := c.Topup(ctx, "1001", TopupRequest{Amount: "-0.000001"})
	if err != nil || !res.Topup.KeyGenerated || !strings.HasPrefix(res.Topup.Key, "auto-") || res.Balance != "5.999999" || res.Topup.Amount != "-0.000001" {
		t.Fatalf("generated key: %+v %v", res, err)
	}
	// The raw answer is an account plus a "topup" object.
	status, body := raw(t, c, "POST", "/v1/accounts/1001/topup", `{"amount":"1","key":"k2"}`)
	var m map[string]any
	if err := json.Unmarshal(body, &m); status != 200 || err != nil || m["balance"] != "6.999999" || m["reserved"] != "0.00" ||
		m["topup"].(map[string]any)["key"] != "k2" || m["password"] != nil {
		t.Fatalf("raw answer %d %s", status, body)
	}
}

func TestTopupBadInputNamesTheFieldAndChangesNothing(t *testing.T) {
	c, st := billingAPI(t)
	before := st.Accounts()
	cases := []struct {
		path, body string
		status     int
		field      string
	}{
		{"/v1/accounts/1001/topup", `{}`, 400, "amount"},
		{"/v1/accounts/1001/topup", `{"amount":""}`, 400, "amount"},
		{"/v1/accounts/1001/topup", `{"amount":5}`, 400, "amount"},
		{"/v1/accounts/1001/topup", `{"amount":"5,00"}`, 400, "amount"},
		{"/v1/accounts/1001/topup", `{"amount":"1e3"}`, 400, "amount"},
		{"/v1/accounts/1001/topup", `{"amount":"0.0000001"}`, 400, "amount"},
		{"/v1/accounts/1001/topup", `{"amount":"0"}`, 400, "amount"},
		{"/v1/accounts/1001/topup", `{"amount":"-0.00"}`, 400, "amount"},
		{"/v1/accounts/1001/topup", `{"amount":"99999999999999"}`, 400, "amount"},
		{"/v1/accounts/1001/topup", `{"amount":"1","key":"has space"}`, 400, "key"},
		{"/v1/accounts/1001/topup", `{"amount":"1","key":"` + strings.Repeat("k", 129) + `"}`, 400, "key"},
		{"/v1/accounts/1001/topup", `{"amount":"1","note":"two\nlines"}`, 400, "note"},
		{"/v1/accounts/1001/topup", `{"amount":"1","amout":"2"}`, 400, "amout"},
		{"/v1/accounts/1001/topup", `{"amount":"1"} {"amount":"1"}`, 400, ""},
		{"/v1/accounts/nobody/topup", `{"amount":"1","key":"x"}`, 404, "account"},
		{"/v1/accounts/bad%20id/topup", `{"amount":"1","key":"x"}`, 404, ""},
		// A prepaid balance cannot go negative.
		{"/v1/accounts/1001/topup", `{"amount":"-1.000001","key":"x"}`, 409, "amount"},
	}
	for _, tc := range cases {
		status, body := raw(t, c, "POST", tc.path, tc.body)
		var e Error
		if err := json.Unmarshal(body, &e); err != nil || status != tc.status || e.Field != tc.field || e.Error == "" {
			t.Errorf("%s %s: got %d %s; want %d field=%q", tc.path, tc.body, status, body, tc.status, tc.field)
		}
	}
	if after := st.Accounts(); !reflect.DeepEqual(before, after) {
		t.Fatalf("bad top-ups changed accounts:\n%+v\n%+v", before, after)
	}
	// The refused keys were not used up: the same key with a good amount works.
	if res, err := c.Topup(context.Background(), "1001", TopupRequest{Amount: "-1.00", Key: "x"}); err != nil || res.Balance != "0.00" {
		t.Fatalf("key of a refused top-up: %+v %v", res, err)
	}
}

// Money held by a call shows as "reserved", and a negative top-up cannot
// take it.
func TestTopupCannotTakeReservedMoney(t *testing.T) {
	c, st := billingAPI(t)
	ctx := context.Background()
	if _, err := c.Topup(ctx, "1001", TopupRequest{Amount: "1.50", Key: "a"}); err != nil {
		t.Fatal(err)
	}
	testkit.MustApply(t, st, startCall("c1", "1001", "1002", now))
	a, err := c.Account(ctx, "1001")
	if err != nil || a.Balance != "2.50" || a.Reserved != "2.50" {
		t.Fatalf("account with a call: %+v %v", a, err)
	}
	_, err = c.Topup(ctx, "1001", TopupRequest{Amount: "-0.01", Key: "b"})
	ae := apiErr(t, err)
	if ae.Status != http.StatusConflict || ae.Field != "amount" || !strings.Contains(ae.Msg, "less than the 2.50 its calls in progress hold: take at most 0.00") {
		t.Fatalf("taking reserved money: %+v", ae)
	}
	as, _ := c.Accounts(ctx)
	if as[0].Reserved != "2.50" || as[1].Reserved != "1.00" {
		t.Fatalf("account list: %+v", as)
	}
}

func TestCallsInProgress(t *testing.T) {
	c, st := billingAPI(t)
	ctx := context.Background()
	id := "a84b4c76e66710@pc33.example.com/x" // Call-IDs may hold '@' and '/'
	testkit.MustApply(t, st, startCall(id, "1001", "1002", now.Add(-90*time.Second)))

	calls, err := c.Calls(ctx, "")
	if err != nil || len(calls) != 1 {
		t.Fatalf("calls: %+v %v", calls, err)
	}
	got := calls[0]
	// 1.00 - 0.01 fee at 0.001/s buys 990 s (reserving all of 1.00); 1002's
	// 1.00 buys 50 minutes of incoming at 0.02.
	want := Call{
		ID: id, Direction: "outgoing", Account: "1001", CLI: "1001", CLD: "1002", Parties: []string{"1001", "1002"},
		Charges: []CallCharge{
			{Account: "1001", Role: "outgoing", Number: "1002", Tariff: "out", PerMinute: "0.06", Reserved: "1.00", MaxDuration: 990},
			{Account: "1002", Role: "incoming", Number: "1002", Tariff: "in", PerMinute: "0.02", Reserved: "1.00", MaxDuration: 3000},
		},
		MaxDuration: 990, SetupAt: Timestamp{now.Add(-90 * time.Second)}, Node: "n1", Legs: []CallLeg{}, Redirects: []Redirect{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ringing call\n got %+v\nwant %+v", got, want)
	}
	status, body := raw(t, c, "GET", "/v1/calls", "")
	if status != 200 || !bytes.Contains(body, []byte(`"connect_at": null`)) || !bytes.Contains(body, []byte(`"setup_at": "2026-11-22T09:58:30.000Z"`)) {
		t.Fatalf("raw ringing call %d %s", status, body)
	}

	testkit.MustApply(t, st, &fsm.AnswerCall{ID: id, ConnectAt: now.Add(-61500 * time.Millisecond).UnixMilli(), Legs: []fsm.Leg{
		{Role: "caller", CallID: id, Ingress: "udp:127.0.0.1:5060", Destination: "10.0.0.5:5060", Transport: "udp", LocalTag: "secret"},
		{Role: "callee", CallID: "b2b-1", Ingress: "udp:127.0.0.2:5070", Destination: "10.0.0.6:5062", Transport: "udp"},
	}})
	got, err = c.Call(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.ConnectAt == nil || got.ConnectAt.String() != "2026-11-22T09:58:58.500Z" || got.Duration != 61 ||
		!reflect.DeepEqual(got.Legs, []CallLeg{
			{Role: "caller", CallID: id, Ingress: "udp:127.0.0.1:5060", Destination: "10.0.0.5:5060", Transport: "udp"},
			{Role: "callee", CallID: "b2b-1", Ingress: "udp:127.0.0.2:5070", Destination: "10.0.0.6:5062", Transport: "udp"},
		}) {
		t.Fatalf("answered call %+v", got)
	}
	if cs, _ := c.Calls(ctx, "1002"); len(cs) != 1 {
		t.Fatalf("calls of a party: %+v", cs)
	}
	if cs, _ := c.Calls(ctx, "1003"); cs == nil || len(cs) != 0 {
		t.Fatalf("calls of an uninvolved account: %#v", cs)
	}
	if _, err := c.Call(ctx, "nope"); !IsNotFound(err) {
		t.Fatalf("unknown call: %v", err)
	}
	if status, body := raw(t, c, "GET", "/v1/calls?acount=1001", ""); status != 400 || !bytes.Contains(body, []byte(`"field": "acount"`)) {
		t.Fatalf("unknown parameter: %d %s", status, body)
	}
}

// A call reserved by chunks shows its quota: the chunk, how many more
// were reserved, and whether the money ran short; its charges hold a
// chunk's worth.
func TestCallInProgressShowsItsQuota(t *testing.T) {
	c, st := billingAPI(t)
	sc := startCall("q1", "1001", "1002", now.Add(-30*time.Second))
	sc.Chunk = 60
	testkit.MustApply(t, st, sc)
	testkit.MustApply(t, st, &fsm.AnswerCall{ID: "q1", ConnectAt: now.Add(-20 * time.Second).UnixMilli()})
	testkit.MustApply(t, st, &fsm.ExtendCall{ID: "q1", Seq: 1})
	got, err := c.Call(context.Background(), "q1")
	if err != nil {
		t.Fatal(err)
	}
	// 0.01 + 120 s at 0.001/s; the callee's 2 minutes of incoming at 0.02.
	if got.Quota == nil || *got.Quota != (CallQuota{Chunk: 60, Extensions: 1}) || got.MaxDuration != 120 ||
		got.Charges[0].Reserved != "0.13" || got.Charges[1].Reserved != "0.04" {
		t.Fatalf("call %+v, quota %+v", got, got.Quota)
	}
}

// endedCalls files xDRs through the state machine: n answered calls that
// last 61.4 s each (ids 1..n), alternately 1001->1002 and 1002->1001, one
// second apart, then a cancelled call whose cause text needs CSV quoting.
func endedCalls(t *testing.T, st *fsm.State, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		from, to := "1001", "1002"
		if i%2 == 0 {
			from, to = "1002", "1001"
		}
		// Top up the caller so a long run never runs dry.
		testkit.MustApply(t, st, &fsm.Topup{Account: from, Amount: 1_000_000, Key: fmt.Sprint("t", i), Now: 1})
		at := now.Add(time.Duration(i) * time.Second)
		id := fmt.Sprintf("call-%d", i)
		testkit.MustApply(t, st, startCall(id, from, to, at))
		testkit.MustApply(t, st, &fsm.AnswerCall{ID: id, ConnectAt: at.Add(2 * time.Second).UnixMilli()})
		testkit.MustApply(t, st, &fsm.EndCall{ID: id, DisconnectAt: at.Add(2*time.Second + 61400*time.Millisecond).UnixMilli(),
			Cause: 200, CauseText: "BYE", DisconnectedBy: "caller"})
	}
	at := now.Add(time.Duration(n+1) * time.Second)
	testkit.MustApply(t, st, startCall("cancelled", "1001", "1002", at))
	testkit.MustApply(t, st, &fsm.EndCall{ID: "cancelled", DisconnectAt: at.Add(250 * time.Millisecond).UnixMilli(),
		Cause: 487, CauseText: "Request \"Terminated\",\nby caller", DisconnectedBy: "caller"})
}

func TestXDRFieldsAndFilters(t *testing.T) {
	c, st := billingAPI(t)
	ctx := context.Background()
	endedCalls(t, st, 4)

	xs, err := c.XDRs(ctx, XDRQuery{})
	if err != nil || len(xs) != 5 {
		t.Fatalf("xdrs: %d %v", len(xs), err)
	}
	connect := Timestamp{now.Add(3 * time.Second)}
	want := XDR{
		ID: 1, CallID: "call-1", Account: "1001", Direction: "outgoing", CLI: "1001", CLD: "1002",
		SetupAt: Timestamp{now.Add(time.Second)}, ConnectAt: &connect, DisconnectAt: Timestamp{now.Add(64400 * time.Millisecond)},
		// 61 s: 1001 pays 0.01 + 61 * 0.001 (exactly 0.071, written so), 1002 two minutes at 0.02.
		Duration: 61, ChargedSeconds: 61, Amount: "0.111",
		Charges: []XDRCharge{
			{Account: "1001", Role: "outgoing", Number: "1002", Tariff: "out", Seconds: 61, Amount: "0.071"},
			{Account: "1002", Role: "incoming", Number: "1002", Tariff: "in", Seconds: 120, Amount: "0.04"},
		},
		Cause: 200, CauseText: "BYE", DisconnectedBy: "caller", VendorCost: "0.00", Redirects: []Redirect{}, Node: "n1",
	}
	if !reflect.DeepEqual(xs[0], want) {
		t.Fatalf("xdr 1\n got %+v\nwant %+v", xs[0], want)
	}
	if x := xs[1]; x.Account != "1002" || x.ChargedSeconds != 61 || x.Charges[0].Account != "1002" {
		t.Fatalf("xdr 2: primary charge is the xDR account's: %+v", x)
	}
	if x := xs[4]; x.CallID != "cancelled" || x.ConnectAt != nil || x.Duration != 0 || x.Amount != "0.00" || x.ChargedSeconds != 0 || x.Cause != 487 {
		t.Fatalf("cancelled call's xdr %+v", x)
	}
	status, body := raw(t, c, "GET", "/v1/xdrs?limit=1", "")
	for _, s := range []string{`"id": 1,`, `"connect_at": "2026-11-22T10:00:03.000Z"`, `"disconnect_at": "2026-11-22T10:01:04.400Z"`, `"amount": "0.071"`} {
		if status != 200 || !strings.Contains(string(body), s) {
			t.Fatalf("raw xdr %d lacks %s: %s", status, s, body)
		}
	}

	ids := func(xs []XDR) []uint64 {
		out := []uint64{}
		for _, x := range xs {
			out = append(out, x.ID)
		}
		return out
	}
	for name, tc := range map[string]struct {
		q    XDRQuery
		want []uint64
	}{
		"account":             {XDRQuery{Account: "1002"}, []uint64{1, 2, 3, 4, 5}}, // 1002 pays incoming on 1 and 3
		"after":               {XDRQuery{After: 3}, []uint64{4, 5}},
		"limit":               {XDRQuery{Limit: 2}, []uint64{1, 2}},
		"after+limit":         {XDRQuery{After: 1, Limit: 2}, []uint64{2, 3}},
		"since":               {XDRQuery{Since: now.Add(66400 * time.Millisecond)}, []uint64{3, 4}},
		"since in another tz": {XDRQuery{Since: now.Add(66400 * time.Millisecond).In(time.FixedZone("X", 3*3600))}, []uint64{3, 4}},
		// 4 is 1002 calling 1001, which pays nothing for incoming calls
		"since+account": {XDRQuery{Since: now.Add(66400 * time.Millisecond), Account: "1001"}, []uint64{3}},
		"nothing":       {XDRQuery{After: 5}, []uint64{}},
	} {
		xs, err := c.XDRs(ctx, tc.q)
		if err != nil || !reflect.DeepEqual(ids(xs), tc.want) {
			t.Errorf("%s: %v %v, want %v", name, ids(xs), err, tc.want)
		}
	}
	// "cancelled" disconnected at now+5.25 s: before since=now+66.4 s but its
	// id is last. since compares disconnect times, so it is left out above.

	for _, tc := range []struct{ query, field string }{
		{"limit=0", "limit"}, {"limit=x", "limit"}, {"limit=100001", "limit"}, {"limit=-1&format=csv", "limit"},
		{"after=-1", "after"}, {"after=1.5", "after"},
		{"since=yesterday", "since"}, {"since=2026-01-01T00:00:00+02:00", "since"}, // '+' unescaped reads as a space
		{"format=xml", "format"}, {"account=bad%20id", "account"},
		{"acount=1001", "acount"}, {"account=1001&account=1002", "account"},
	} {
		status, body := raw(t, c, "GET", "/v1/xdrs?"+tc.query, "")
		var e Error
		if err := json.Unmarshal(body, &e); err != nil || status != 400 || e.Field != tc.field {
			t.Errorf("?%s: %d %s, want 400 naming %s", tc.query, status, body, tc.field)
		}
	}
	if xs, err := c.XDRs(ctx, XDRQuery{Since: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}); err != nil || len(xs) != 5 {
		t.Fatalf("since a date: %d %v", len(xs), err)
	}
	if status, _ := raw(t, c, "GET", "/v1/xdrs?since=2026-11-22", ""); status != 200 {
		t.Fatalf("since=DATE: %d", status)
	}
}

func TestXDRExportCSVAndJSONLines(t *testing.T) {
	c, st := billingAPI(t)
	ctx := context.Background()
	const n = 2*exportPage + 17 // several pages of the server's export loop
	endedCalls(t, st, n)
	all := []XDR{}
	for after := uint64(0); ; {
		page, err := c.XDRs(ctx, XDRQuery{After: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].ID
	}
	if len(all) != n+1 {
		t.Fatalf("paging with after= found %d xDRs, want %d", len(all), n+1)
	}

	// CSV: a header, then one row per xDR, parsed back field by field.
	var buf bytes.Buffer
	calls := 0
	got, err := c.ExportXDRs(ctx, &buf, XDRQuery{}, FormatCSV, func(int) { calls++ })
	if err != nil || got != n+1 || calls == 0 {
		t.Fatalf("csv export: %d xDRs (progress called %d times), %v", got, calls, err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rows[0], XDRCSVHeader) || len(rows) != n+2 {
		t.Fatalf("csv header %v, %d rows", rows[0], len(rows))
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	r1 := rows[1]
	for k, v := range map[string]string{
		"id": "1", "call_id": "call-1", "account": "1001", "connect_at": "2026-11-22T10:00:03.000Z",
		"disconnect_at": "2026-11-22T10:01:04.400Z", "duration": "61", "charged_seconds": "61", "amount": "0.111",
		"charges": "1001:outgoing:0.071;1002:incoming:0.04", "cause": "200", "vendor_cost": "0.00", "redirects": "", "node": "n1",
	} {
		if r1[col[k]] != v {
			t.Errorf("csv row 1 %s = %q, want %q", k, r1[col[k]], v)
		}
	}
	last := rows[len(rows)-1]
	if last[col["call_id"]] != "cancelled" || last[col["connect_at"]] != "" || last[col["cause_text"]] != "Request \"Terminated\",\nby caller" ||
		last[col["charges"]] != "1001:outgoing:0.00;1002:incoming:0.00" {
		t.Fatalf("csv last row %q", last)
	}
	for i, row := range rows[1:] {
		if row[col["id"]] != fmt.Sprint(all[i].ID) || row[col["amount"]] != all[i].Amount {
			t.Fatalf("csv row %d differs from the JSON listing: %q vs %+v", i+1, row, all[i])
		}
	}

	// JSON lines: each line a complete xDR, equal to the JSON listing.
	buf.Reset()
	got, err = c.ExportXDRs(ctx, &buf, XDRQuery{Account: "1002", After: 10}, FormatJSONL, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	lines := 0
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var x XDR
		if err := dec.Decode(&x); err != nil {
			t.Fatalf("line %d: %v: %s", lines+1, err, sc.Bytes())
		}
		if want := all[x.ID-1]; x.ID <= 10 || !reflect.DeepEqual(x, want) {
			t.Fatalf("line %d: %+v, want %+v", lines+1, x, want)
		}
		lines++
	}
	if lines != got || lines != n+1-10 { // 1002 pays for every call
		t.Fatalf("jsonl: %d lines, client counted %d", lines, got)
	}

	// A limit bounds an export; an empty one still has its CSV header.
	buf.Reset()
	if got, err := c.ExportXDRs(ctx, &buf, XDRQuery{Limit: 3}, FormatCSV, nil); err != nil || got != 3 {
		t.Fatalf("limited export: %d %v", got, err)
	}
	buf.Reset()
	if got, err := c.ExportXDRs(ctx, &buf, XDRQuery{After: 1 << 40}, FormatCSV, nil); err != nil || got != 0 ||
		buf.String() != strings.Join(XDRCSVHeader, ",")+"\n" {
		t.Fatalf("empty export: %d %v %q", got, err, buf.String())
	}
	if _, err := c.ExportXDRs(ctx, io.Discard, XDRQuery{Account: "no such"}, FormatCSV, nil); apiErr(t, err).Field != "account" {
		t.Fatalf("bad export query: %v", err)
	}
	if _, err := c.ExportXDRs(ctx, io.Discard, XDRQuery{}, "xml", nil); err == nil {
		t.Fatal("export format xml accepted")
	}
}

func TestXDRQueryEncodesSince(t *testing.T) {
	q := XDRQuery{Since: time.Date(2026, 1, 1, 2, 0, 0, 0, time.FixedZone("X", 2*3600)), Account: "a+b"}
	v, err := url.ParseQuery(q.values().Encode())
	if err != nil || v.Get("since") != "2026-01-01T00:00:00Z" || v.Get("account") != "a+b" {
		t.Fatalf("query %v %v", v, err)
	}
	var ts Timestamp
	if err := json.Unmarshal([]byte(`"2026-01-01T02:00:00.5+02:00"`), &ts); err != nil || ts.String() != "2026-01-01T00:00:00.500Z" {
		t.Fatalf("timestamp %v %v", ts, err)
	}
}
