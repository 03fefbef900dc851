package auth

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func TestNCCache(t *testing.T) {
	c := newNCCache(3, 60_000)
	mac := func(b byte) (m [nonceMACLen]byte) { m[0] = b; return m }
	const t0 = 1_000_000
	steps := []struct {
		name   string
		mac    byte
		issued int64
		nc     uint32
		req    uint64
		now    int64
		want   ncVerdict
	}{
		{"first use", 1, t0, 1, 100, t0, ncFresh},
		{"retransmission of it", 1, t0, 1, 100, t0 + 500, ncRepeat},
		{"same nc, another request: a replay", 1, t0, 1, 101, t0 + 600, ncReplayed},
		{"next nc", 1, t0, 2, 102, t0 + 700, ncFresh},
		{"an older nc", 1, t0, 1, 103, t0 + 800, ncReplayed},
		{"another nonce", 2, t0 + 10, 1, 200, t0 + 900, ncFresh},
		{"third", 3, t0 + 20, 1, 300, t0 + 1000, ncFresh},
		{"a fourth evicts the oldest", 4, t0 + 30, 1, 400, t0 + 1100, ncFresh},
		{"the evicted nonce is not new again", 1, t0, 3, 104, t0 + 1200, ncForgotten},
		{"a nonce issued after the floor is new", 5, t0 + 40, 1, 500, t0 + 1300, ncFresh},
	}
	for _, s := range steps {
		if got := c.use(mac(s.mac), s.issued, s.nc, s.req, s.now); got != s.want {
			t.Fatalf("%s: got %d, want %d", s.name, got, s.want)
		}
	}
	// Nonces past their TTL are dropped, bounding the cache in time too.
	c.use(mac(9), t0+200_000, 1, 900, t0+200_000)
	if n := c.size(); n != 1 {
		t.Errorf("%d nonces kept after the others expired, want 1", n)
	}
}

func TestAccountGuard(t *testing.T) {
	g := newAccountGuard(6, 3, time.Hour) // 3 at once, then one every 10 s
	t0 := time.Unix(1_700_000_000, 0)
	phone := netip.MustParseAddr("192.0.2.10")
	if ok, _ := g.allow("1001", phone, t0); !ok {
		t.Fatal("a first attempt waits")
	}
	g.succeeded("1001", phone, t0)
	for i := range 50 { // guesses from many sources
		src := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		if ok, _ := g.allow("1001", src, t0); ok {
			g.failed("1001", src, t0)
		}
	}
	if ok, wait := g.allow("1001", netip.MustParseAddr("203.0.113.5"), t0); ok || wait <= 0 || wait > 10*time.Second {
		t.Fatalf("after the burst: allowed %v, wait %s; want refused for up to 10 s", ok, wait)
	}
	if ok, _ := g.allow("1001", phone, t0); !ok {
		t.Fatal("the account's own phone is locked out by the guessing")
	}
	if ok, _ := g.allow("1002", netip.MustParseAddr("203.0.113.5"), t0); !ok {
		t.Fatal("another account is held up")
	}
	if ok, _ := g.allow("1001", netip.MustParseAddr("203.0.113.5"), t0.Add(10*time.Second)); !ok {
		t.Fatal("no token back after 10 s")
	}
	later := t0.Add(2 * time.Hour)
	for i := range 3 {
		g.failed("1001", netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), later)
	}
	if ok, _ := g.allow("1001", phone, later); ok {
		t.Fatal("a trust past its time still passes an empty bucket")
	}
	off := newAccountGuard(0, 0, time.Hour)
	for range 100 {
		off.failed("1001", netip.MustParseAddr("203.0.113.5"), t0)
	}
	if ok, _ := off.allow("1001", netip.MustParseAddr("203.0.113.5"), t0); !ok {
		t.Fatal("a disabled guard refused")
	}
}

// With more registered phones than the guard keeps buckets for, every
// phone stays trusted and an attack on any account is still slowed: the
// guard used to keep a phone's trust in its account's bucket, so past
// 200,000 accounts new phones were not trusted, attacks on their accounts
// went unguarded, and each of their REGISTERs swept the whole table.
func TestAccountGuardWithManyAccounts(t *testing.T) {
	g := newAccountGuard(6, 3, time.Hour)
	g.maxTracked = 1000
	t0 := time.Unix(1_700_000_000, 0)
	const phones = 5000
	phone := func(i int) (string, netip.Addr) {
		return fmt.Sprintf("u%06d", i), netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	for i := range phones {
		u, src := phone(i)
		g.succeeded(u, src, t0)
	}
	victim, victimPhone := phone(phones - 1)
	for i := range 50 {
		src := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		if ok, _ := g.allow(victim, src, t0); ok {
			g.failed(victim, src, t0)
		}
	}
	if ok, _ := g.allow(victim, netip.MustParseAddr("203.0.113.5"), t0); ok {
		t.Fatal("the guessing on the last account is not slowed")
	}
	if ok, _ := g.allow(victim, victimPhone, t0); !ok {
		t.Fatal("the last account's own phone is locked out")
	}
	for i := range phones {
		if u, src := phone(i); !g.trust.has(u, src, t0.Add(59*time.Minute)) {
			t.Fatalf("phone %d not trusted", i)
		}
	}
	if len(g.users) != 1 {
		t.Errorf("%d buckets kept, want 1 (only the attacked account's)", len(g.users))
	}
}

// The trusted pairs are bounded in time and in number: a generation older
// than the trust period, or full, is the last one kept.
func TestTrustSetBounded(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	ts := newTrustSet(time.Hour, 100)
	ip := netip.MustParseAddr("192.0.2.1")
	for i := range 250 {
		ts.add(fmt.Sprint(i), ip, t0)
	}
	if n := ts.size(); n > 200 {
		t.Errorf("%d pairs held, want at most two generations of 100", n)
	}
	if !ts.has("249", ip, t0) || ts.has("0", ip, t0) {
		t.Error("the newest pair should be trusted and the oldest forgotten")
	}
	ts.add("late", ip, t0.Add(61*time.Minute))
	ts.add("later", ip, t0.Add(122*time.Minute))
	if n := ts.size(); n != 2 {
		t.Errorf("%d pairs held two trust periods on, want 2", n)
	}
	if ts.has("late", ip, t0.Add(122*time.Minute)) || !ts.has("later", ip, t0.Add(122*time.Minute)) {
		t.Error("a trust past its time still holds, or a fresh one does not")
	}
	if ts.has("later", netip.MustParseAddr("192.0.2.2"), t0.Add(122*time.Minute)) {
		t.Error("trust for one source holds for another")
	}
}

// One account logging in from many addresses cannot fill the trusted set
// and push the other accounts' phones out of it.
func TestTrustSetCapsEachUser(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	ts := newTrustSet(time.Hour, 100)
	phone := netip.MustParseAddr("192.0.2.1")
	ts.add("victim", phone, t0)
	for i := range 1000 {
		ts.add("abuser", netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), t0)
	}
	if !ts.has("victim", phone, t0) {
		t.Fatal("one account's logins from many addresses pushed another's phone out")
	}
	if n := ts.size(); n != 1+guardMaxTrusted {
		t.Errorf("%d pairs held, want the victim's 1 and the abuser's first %d", n, guardMaxTrusted)
	}
	ts.add("abuser", netip.AddrFrom4([4]byte{198, 51, 0, 0}), t0) // a source it already has: refreshed
	if !ts.has("abuser", netip.AddrFrom4([4]byte{198, 51, 0, 0}), t0) {
		t.Error("a trusted source's new login is not trusted")
	}
}

// A table full of buckets in use fails open for new user names, sweeping
// for room at most once per guardSweepEvery; once buckets refill, new
// names are guarded again.
func TestAccountGuardFullTable(t *testing.T) {
	g := newAccountGuard(60, 1, time.Hour) // one guess, one back per second
	g.maxTracked = 2
	t0 := time.Unix(1_700_000_000, 0)
	src := netip.MustParseAddr("198.51.100.1")
	g.failed("a", src, t0)
	g.failed("b", src, t0)
	g.failed("c", src, t0) // no room: not guarded
	if ok, _ := g.allow("c", src, t0); !ok {
		t.Fatal("a user name with no bucket waits")
	}
	if g.nextSweep != t0.Add(guardSweepEvery) {
		t.Fatalf("next sweep at %v, want one period on", g.nextSweep)
	}
	later := t0.Add(2 * time.Second) // a and b have refilled
	g.failed("c", src, later)
	if ok, _ := g.allow("c", src, later); ok {
		t.Fatal("after the sweep made room, c's guess was not counted")
	}
	if len(g.users) != 1 {
		t.Errorf("%d buckets after the sweep, want 1 (c's)", len(g.users))
	}
}

func TestSameURI(t *testing.T) {
	parse := func(s string) sip.Uri {
		var u sip.Uri
		if err := sip.ParseUri(s, &u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	cases := []struct {
		digest, ruri string
		want         bool
	}{
		{"sip:1002@127.0.0.1", "sip:1002@127.0.0.1", true},
		{"sip:1002@127.0.0.1:5060", "sip:1002@127.0.0.1", true},
		{"sip:1002@EXAMPLE.com;transport=udp", "sip:1002@example.com", true},
		{"sip:127.0.0.1", "sip:127.0.0.1:5060", true},
		{"sip:1003@127.0.0.1", "sip:1002@127.0.0.1", false},
		{"sip:1002@127.0.0.2", "sip:1002@127.0.0.1", false},
		{"sip:1002@127.0.0.1:5070", "sip:1002@127.0.0.1", true}, // the port does not change who is called
		{"sips:1002@127.0.0.1", "sip:1002@127.0.0.1", false},
		{"sip:127.0.0.1:5060", "sip:1002@127.0.0.1", true}, // SIPp's form: the host alone
		{"sip:127.0.0.2:5060", "sip:1002@127.0.0.1", false},
		{"not a uri", "sip:1002@127.0.0.1", false},
	}
	for _, c := range cases {
		if got := sameURI(c.digest, parse(c.ruri)); got != c.want {
			t.Errorf("%q vs %q: %v, want %v", c.digest, c.ruri, got, c.want)
		}
	}
}

// The engineer on call sees what this node blocks, and lifts a block.
func TestBlocksListedAndLifted(t *testing.T) {
	a, err := New(Config{Realm: "troika", Algorithms: []string{MD5}, NonceTTL: time.Minute, FailuresPerMinute: 2, BlockFor: time.Minute,
		AccountGuessesPerMinute: 6, AccountGuessBurst: 2}, oneAccount{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	bad := netip.MustParseAddr("198.51.100.7")
	for range 3 {
		a.limiter.Fail(bad, t0)
	}
	for i := range 3 {
		a.guard.failed("1001", netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), t0)
	}
	srcs, users := a.Blocks(t0)
	if len(srcs) != 1 || srcs[0].Source != "198.51.100.7" || !srcs[0].Until.Equal(t0.Add(time.Minute)) {
		t.Errorf("blocked sources %+v", srcs)
	}
	if len(users) != 1 || users[0].User != "1001" || !users[0].RetryAt.After(t0) {
		t.Errorf("throttled users %+v", users)
	}
	if !a.UnblockSource(bad) || a.limiter.Blocked(bad, t0) || a.UnblockSource(bad) {
		t.Error("unblocking a source")
	}
	if !a.UnthrottleUser("1001", t0) || a.UnthrottleUser("1001", t0) {
		t.Error("unthrottling a user name")
	}
	if ok, _ := a.guard.allow("1001", netip.MustParseAddr("203.0.113.99"), t0); !ok {
		t.Error("an unthrottled user name still waits")
	}
	if srcs, users := a.Blocks(t0); len(srcs) != 0 || len(users) != 0 {
		t.Errorf("after lifting: %+v %+v", srcs, users)
	}
}
