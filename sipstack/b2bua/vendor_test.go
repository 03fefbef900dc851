package b2bua

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/auth"
)

// The record of a refused vendor call: a fresh Call-ID gets one xDR
// without charge; the Call-ID of a call in progress is left alone (never
// ended by someone else's refused INVITE).
func TestRefusedVendorCallRecord(t *testing.T) {
	t.Parallel()
	st := fsm.New()
	for _, c := range []fsm.Command{
		&fsm.PutTariff{Tariff: fsm.Tariff{ID: "vcost", Currency: "USD", Rates: []fsm.Rate{{PerMinute: 1, FirstInterval: 60, NextInterval: 60}}}},
		&fsm.CreateAccount{Now: 1, Account: fsm.Account{ID: "1001", Credentials: testkit.Creds("1001", "pw1001"), Billing: fsm.Prepaid, TariffOut: "vcost"}},
		&fsm.CreateAccount{Now: 1, Account: fsm.Account{ID: "44123", Credentials: testkit.Creds("44123", "pw44123"), Billing: fsm.Prepaid}},
		&fsm.PutVendor{Vendor: fsm.Vendor{ID: "v1", Name: "Carrier One"}},
		&fsm.PutConnection{Connection: fsm.Connection{ID: "c1", Vendor: "v1", Kind: fsm.ConnectionFromVendorSIP,
			RemoteIPs: []string{"10.9.0.0/16"}, Tariff: "vcost", TranslationCLD: ukRules}},
	} {
		testkit.MustApply(t, st, c)
	}
	b := newTestB2BUA(t, st, nil)
	testkit.MustApply(t, st, &fsm.StartCall{ID: "live@x", Direction: fsm.DirOutgoing, Account: "1001", CLI: "1001", CLD: "44123",
		MaxSeconds: 60, Now: 1, Node: "other"})
	cn, _ := st.Connection("c1")
	v, _ := st.Vendor("v1")
	vr := &vendorRoute{conn: cn, vendor: v, by: auth.ByVendorIP, dialed: "0044999", cli: "+44207"}
	for _, id := range []string{"fresh@x", "live@x"} {
		req := vendorInvite(t, id)
		b.recordRefusedVendorCall(req, vr, "44999", 404, "the translated number is not an account", time.Now(), b.log)
	}
	x, ok := st.XDRForCall("fresh@x")
	if !ok || x.Account != "" || x.Direction != fsm.DirFromVendor || x.Cause != 404 || x.CLD != "0044999" || x.CLDTranslated != "44999" ||
		x.CLI != "+44207" || x.Vendor != "v1" || x.Connection != "c1" || len(x.Charges) != 0 || x.Amount != 0 ||
		x.CauseText != "Not Found: the translated number is not an account" {
		t.Errorf("xDR %+v %v", x, ok)
	}
	if _, live := st.Call("live@x"); !live {
		t.Error("a refused INVITE ended the call in progress with its Call-ID")
	}
	if _, ok := st.XDRForCall("live@x"); ok {
		t.Error("an xDR was filed for the call in progress")
	}
	if len(st.Calls()) != 1 {
		t.Errorf("calls left: %+v", st.Calls())
	}
}

// Translation results and the numbers accepted for it.
func TestTranslateNumber(t *testing.T) {
	t.Parallel()
	rules := &rulesCache{m: map[string]*billing.Rules{}}
	cases := []struct {
		rules, in, out, result string
	}{
		{ukRules, "0044123", "44123", ""},
		{ukRules, "+44123", "44123", ""},
		{"", "44123", "44123", ""},
		{`s/^(?=1)/44/`, "123", "44123", ""},
		{`s/(a+)+$/x/`, strings.Repeat("a", 40) + "!", "", VendorRuleTimeout},
		{`s/(/x/`, "1", "", VendorRuleError}, // a rule set that no longer parses
		{`s/^/` + strings.Repeat("9", 100) + `/; s/^/` + strings.Repeat("9", 100) + `/`, "1", "", VendorRuleError}, // result too long
	}
	for _, c := range cases {
		out, result, err := rules.translate(c.rules, c.in)
		if out != c.out || result != c.result || (err != nil) != (c.result != "") {
			t.Errorf("%q on %q: %q %q %v; want %q %q", c.rules, c.in, out, result, err, c.out, c.result)
		}
	}
	a, _ := rules.get(ukRules)
	b, _ := rules.get(ukRules)
	if a == nil || a != b {
		t.Error("parsed rules not cached")
	}
	for s, ok := range map[string]bool{"0044123": true, "+44-20.7*1": true, "anonymous": true, "": false,
		"44 123": false, "44;x=1": false, "44\n": false, strings.Repeat("1", billing.MaxNumberLength+1): false} {
		if usableNumber(s, billing.MaxNumberLength) != ok {
			t.Errorf("usableNumber(%q) = %v", s, !ok)
		}
	}
}

const ukRules = `s/^00/+/; s/^\+44/44/`

// vendorInvite is an INVITE from a vendor gateway at 10.9.1.1 with
// Call-ID callID.
func vendorInvite(t *testing.T, callID string) *sip.Request {
	t.Helper()
	raw := "INVITE sip:0044999@192.0.2.200 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.1.1:5060;branch=z9hG4bKvendor\r\n" +
		"From: <sip:00442071234567@10.9.1.1>;tag=f1\r\nTo: <sip:0044999@192.0.2.200>\r\nCall-ID: " + callID + "\r\n" +
		"CSeq: 1 INVITE\r\nContact: <sip:gw@10.9.1.1:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	req.SetSource("10.9.1.1:5060")
	return req
}
