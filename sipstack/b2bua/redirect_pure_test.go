package b2bua

import (
	"context"
	"log/slog"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/auth"
	"github.com/troika-sip/troika/sipstack/transport"
)

// headerList is a message with the given raw header lines.
type headerList []string

func (h headerList) GetHeaders(name string) []sip.Header {
	var out []sip.Header
	for _, l := range h {
		n, v, _ := strings.Cut(l, ":")
		if strings.EqualFold(strings.TrimSpace(n), name) {
			out = append(out, sip.NewHeader(n, strings.TrimSpace(v)))
		}
	}
	return out
}

func TestRedirectContactsOrder(t *testing.T) {
	many := headerList{}
	for i := 0; i < 15; i++ {
		many = append(many, "Contact: <sip:"+string(rune('a'+i))+"@192.0.2.1>")
	}
	cases := []struct {
		name string
		msg  headerList
		want []string // URIs with q
	}{
		{"q order, no q is 1.0, ties keep message order",
			headerList{"Contact: <sip:c@h3>;q=0.5, <sip:a@h1>;q=0.9", "Contact: <sip:b@h2>", "Contact: \"PBX\" <sip:d@h4>;q=0.1",
				"Contact: <sip:e@h5>;q=1.0", "Contact: sip:f@h6;q=0.5"},
			[]string{"sip:b@h2 1000", "sip:e@h5 1000", "sip:a@h1 900", "sip:c@h3 500", "sip:f@h6 500", "sip:d@h4 100"}},
		{"duplicates dropped: default port, case of the host, parameters",
			headerList{"Contact: <sip:a@pbx.example.com>", "Contact: <sip:a@PBX.example.com:5060>;q=0.7", "Contact: <sip:a@pbx.example.com;transport=udp>",
				"Contact: <sip:a@pbx.example.com;transport=tcp>", "Contact: <sip:b@pbx.example.com>"},
			[]string{"sip:a@pbx.example.com 1000", "sip:a@pbx.example.com;transport=tcp 1000", "sip:b@pbx.example.com 1000"}},
		{"compact form, unusable contacts skipped",
			headerList{"m: <sip:a@h1>", "Contact: <tel:+12035554433>", "Contact: <sip:@>", "Contact: <sip:x@h;transport=sctp>", "Contact: *",
				"Contact: <sips:s@h2;transport=udp>", "Contact: <sips:t@h3>;q=0.2"},
			[]string{"sip:a@h1 1000", "sips:t@h3 200"}},
		{"at most ten", many, []string{"sip:a@192.0.2.1 1000", "sip:b@192.0.2.1 1000", "sip:c@192.0.2.1 1000", "sip:d@192.0.2.1 1000",
			"sip:e@192.0.2.1 1000", "sip:f@192.0.2.1 1000", "sip:g@192.0.2.1 1000", "sip:h@192.0.2.1 1000", "sip:i@192.0.2.1 1000", "sip:j@192.0.2.1 1000"}},
		{"none", headerList{"Contact: garbage<"}, nil},
	}
	for _, tc := range cases {
		var got []string
		for _, c := range redirectContacts(tc.msg) {
			got = append(got, c.uri.String()+" "+strconv.Itoa(c.q))
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestRequestURI(t *testing.T) {
	cases := []struct {
		in, want, transport string
		port                int
	}{
		{"sip:12035554433@193.148.210.22", "sip:12035554433@193.148.210.22", "udp", 5060},
		{"sip:1@h:5070;transport=TCP;maddr=10.0.0.1?Subject=x", "sip:1@h:5070;transport=tcp", "tcp", 5070},
		{"sips:1@h", "sips:1@h", "tls", 5061},
		{"sip:1@h;transport=tls;user=phone", "sip:1@h;transport=tls", "tls", 5061},
		{"sip:[2001:db8::1]:5080", "sip:[2001:db8::1]:5080", "udp", 5080},
		{"sip:1@h;transport=sctp", "", "", 0},
		{"sips:1@h;transport=tcp", "", "", 0},
		{"tel:+1555", "", "", 0},
	}
	for _, tc := range cases {
		var u sip.Uri
		if err := sip.ParseUri(tc.in, &u); err != nil {
			if tc.want != "" {
				t.Errorf("%s: %v", tc.in, err)
			}
			continue
		}
		ruri, transport, port, ok := requestURI(u)
		if ok != (tc.want != "") || ok && (ruri.String() != tc.want || transport != tc.transport || port != tc.port) {
			t.Errorf("%s: got %q %s %d %v, want %q %s %d", tc.in, ruri.String(), transport, port, ok, tc.want, tc.transport, tc.port)
		}
	}
}

func TestDecideRedirect(t *testing.T) {
	ok := redirectFacts{resolved: true}
	with := func(f func(*redirectFacts)) redirectFacts { r := ok; f(&r); return r }
	cases := []struct {
		name  string
		facts redirectFacts
		want  string
	}{
		{"unresolvable before anything", redirectFacts{own: true, trusted: true}, billing.DecisionUnresolvable},
		{"own address even when trusted", with(func(f *redirectFacts) { f.own, f.loop, f.trusted = true, true, true }), billing.DecisionOwnAddress},
		{"loop even when trusted", with(func(f *redirectFacts) { f.loop, f.overLimit, f.trusted = true, true, true }), billing.DecisionLoop},
		{"over the limit even when trusted", with(func(f *redirectFacts) { f.overLimit, f.trusted = true, true }), billing.DecisionLimit},
		{"trusted", with(func(f *redirectFacts) { f.trusted = true; f.action = billing.RejectRedirect }), billing.DecisionTrusted},
		{"trusted private", with(func(f *redirectFacts) { f.trusted, f.internal = true, true }), billing.DecisionTrusted},
		{"untrusted private, new authorization", with(func(f *redirectFacts) { f.internal = true; f.action = billing.NewCallAuthorization }),
			billing.DecisionPrivate},
		{"untrusted, new authorization", with(func(f *redirectFacts) { f.action = billing.NewCallAuthorization }), billing.DecisionNewAuth},
		{"untrusted, reject", with(func(f *redirectFacts) { f.action = billing.RejectRedirect }), billing.DecisionRejected},
		{"no policy", ok, billing.DecisionRejected},
	}
	for _, tc := range cases {
		if got := decideRedirect(tc.facts); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// pureB2BUA is a B2BUA whose sockets are never opened: main address
// 192.0.2.10 (UDP 5060, TCP 5062), alias 198.51.100.1 with extra UDP
// port 5070.
func pureB2BUA(t *testing.T, res Resolver) *B2BUA {
	t.Helper()
	st := fsm.New()
	testkit.MustApply(t, st, &fsm.PutAlias{Alias: fsm.Alias{IP: "198.51.100.1", Ports: fsm.AliasPorts{UDP: []int{5070}}}})
	return newTestB2BUA(t, st, res)
}

// newTestB2BUA is a B2BUA over st without sockets or dispatcher, on the
// addresses of pureB2BUA.
func newTestB2BUA(t *testing.T, st *fsm.State, res Resolver) *B2BUA {
	t.Helper()
	a, err := auth.New(auth.Config{Realm: "troika", Algorithms: []string{auth.MD5}, NonceTTL: time.Minute}, st)
	if err != nil {
		t.Fatal(err)
	}
	calls, err := CallConfig{}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(context.Background(), Config{Calls: calls, Delivery: DeliveryConfig{Resolver: res}, NodeID: "test",
		Addresses: []string{"192.0.2.10"}, Ports: []int{5060, 5062}, Now: time.Now,
		Logger: slog.New(slog.DiscardHandler), Metrics: NewMetrics(prometheus.NewRegistry())},
		st, testkit.NewStore(st), a, noSockets{}, noRouter{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// noSockets has no socket open.
type noSockets struct{}

func (noSockets) Named(string) *transport.Socket { return nil }
func (noSockets) Main(string) *transport.Socket  { return nil }
func (noSockets) All() []string                  { return nil }

// noRouter is a node alone, without a dispatcher.
type noRouter struct{}

func (noRouter) NewCallID(string) string                                        { return "call-id" }
func (noRouter) Owns(string) (bool, bool)                                       { return false, false }
func (noRouter) ForwardToCallNode(*transport.Socket, string, *sip.Request) bool { return false }
func (noRouter) ForwardFresh(*transport.Socket, *sip.Request) bool              { return false }

func TestOwnAddress(t *testing.T) {
	b := pureB2BUA(t, nil)
	cases := []struct {
		ip   string
		port int
		want bool
	}{
		{"192.0.2.10", 5060, true},
		{"192.0.2.10", 5062, true},
		{"::ffff:192.0.2.10", 5060, true},
		{"192.0.2.10", 5070, false}, // an alias port, not of the main address
		{"192.0.2.11", 5060, false},
		{"198.51.100.1", 5060, true}, // an alias on the main ports
		{"198.51.100.1", 5070, true}, // and its own
		{"198.51.100.1", 5071, false},
		{"0.0.0.0", 5090, true},
	}
	for _, tc := range cases {
		if got := b.ownAddress(netip.MustParseAddr(tc.ip), tc.port); got != tc.want {
			t.Errorf("%s:%d: %v, want %v", tc.ip, tc.port, got, tc.want)
		}
	}
}

func TestTrustedTarget(t *testing.T) {
	res := &testkit.Resolver{Names: map[string][]string{"pbx.example.com": {"203.0.113.5", "2001:db8::5"}}}
	b := pureB2BUA(t, res)
	tn, err := billing.ParseTrustedNetworks([]string{"PBX.example.com.", "10.1.0.0/16", "193.148.210.22", "gone.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		host, ip string
		want     bool
	}{
		{"193.148.210.22", "193.148.210.22", true},
		{"10.1.2.3", "10.1.2.3", true},
		{"pbx.example.com", "198.51.100.99", true},   // by name, whatever it resolved to
		{"203.0.113.5", "203.0.113.5", true},         // an address of a trusted name
		{"[2001:db8::5]", "2001:db8::5", true},       // IPv6 too
		{"other.example.com", "203.0.113.5", true},   // another name for it
		{"203.0.113.6", "203.0.113.6", false},        // next door
		{"pbx.example.com.evil", "192.0.2.1", false}, // no suffix games
	}
	for _, tc := range cases {
		if got := b.trustedTarget(tn, tc.host, netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("%s (%s): %v, want %v", tc.host, tc.ip, got, tc.want)
		}
	}
	// Both names were looked up once: answers and failures are cached.
	if n := res.Lookups.Load(); n != 2 {
		t.Errorf("%d look-ups, want 2 (cached)", n)
	}
}

func TestLookupHost(t *testing.T) {
	res := &testkit.Resolver{Names: map[string][]string{"pbx.example.com": {"::ffff:203.0.113.5", "203.0.113.5", "2001:db8::5"}}}
	b := pureB2BUA(t, res)
	for i := 0; i < 3; i++ {
		got, err := b.lookupHost("PBX.Example.com.")
		if err != nil || !reflect.DeepEqual(got, []netip.Addr{netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("2001:db8::5")}) {
			t.Fatalf("got %v %v", got, err)
		}
		if _, err := b.lookupHost("nowhere.invalid"); err == nil {
			t.Fatal("an unknown name resolved")
		}
	}
	if got, err := b.lookupHost("[2001:db8::1]"); err != nil || got[0] != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("IP literal: %v %v", got, err)
	}
	if n := res.Lookups.Load(); n != 2 {
		t.Errorf("%d look-ups, want 2", n)
	}
	sock := &transport.Socket{IP: "192.0.2.10"}
	if a := pickAddr([]netip.Addr{netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("203.0.113.5")}, sock); a.String() != "203.0.113.5" {
		t.Errorf("picked %s for an IPv4 socket", a)
	}
}

func TestDeliveryPlan(t *testing.T) {
	b := pureB2BUA(t, nil)
	acct := fsm.Account{ID: "44123"}
	plan := func(a fsm.Account) []string {
		var out []string
		for _, st := range b.deliveryPlan(a, "0044123") {
			out = append(out, st.followMe+"/"+st.timeout.String()+"/"+st.cld)
		}
		return out
	}
	if got := plan(acct); !reflect.DeepEqual(got, []string{"/0s/0044123"}) {
		t.Errorf("no follow-me: %v", got)
	}
	acct.FollowMe = []fsm.FollowMeTarget{{Target: "sip:mobile@gw", TimeoutS: 25}, {Target: "1002", TimeoutS: 15}}
	if got := plan(acct); !reflect.DeepEqual(got, []string{"/20s/0044123", "sip:mobile@gw/25s/0044123", "1002/15s/0044123"}) {
		t.Errorf("follow-me: %v", got)
	}
	acct.FollowMe = []fsm.FollowMeTarget{{Target: "sip:mobile@gw", TimeoutS: 25}, {Target: "44123", TimeoutS: 10}}
	if got := plan(acct); !reflect.DeepEqual(got, []string{"sip:mobile@gw/25s/0044123", "44123/10s/0044123"}) {
		t.Errorf("own account listed: %v", got)
	}
	b.cfg.Delivery.OwnRing = 5 * time.Second
	acct.FollowMe = acct.FollowMe[:1]
	if got := plan(acct); got[0] != "/5s/0044123" {
		t.Errorf("own ring: %v", got)
	}
}
