package sipstack

import (
	"context"
	"crypto/md5"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/sipstack/auth"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// gatedStore holds every Propose until the test sends on release,
// telling entered first.
type gatedStore struct {
	*testkit.Store
	entered chan struct{}
	release chan struct{}
}

func (g *gatedStore) Propose(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	g.entered <- struct{}{}
	<-g.release // one Propose released per send
	return g.Store.Propose(ctx, cmd)
}

// settableClock is the REGISTER queue's clock in a test.
type settableClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *settableClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *settableClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// REGISTERs over UDP go to the registrar's workers without a sipgo
// transaction. A retransmission of one being written is absorbed (one
// write, one answer). When the queue stays long, what waited too long in
// it is answered 503 with Retry-After unread; and as soon as the wait is
// short again the next REGISTER is served as usual.
func TestUDPRegisterQueue(t *testing.T) {
	st := newTestState(t, false)
	store := &gatedStore{Store: testkit.NewStore(st), entered: make(chan struct{}, 8), release: make(chan struct{})}
	now := time.UnixMilli(1_700_000_000_000)
	reg := prometheus.NewRegistry()
	s, err := New(Config{Addresses: []string{"127.0.0.1"}, UDPPorts: []int{5060},
		Registrar: RegistrarConfig{Realm: "troika", MaxInFlight: 1, ShedAfter: 20 * time.Millisecond},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: reg, Now: func() time.Time { return now }}, st, store)
	if err != nil {
		t.Fatal(err)
	}
	clock := &settableClock{t: now}
	s.regs.now = clock.now
	ctx, cancel := context.WithCancel(context.Background())
	s.regs.start(ctx)
	defer s.wg.Wait()
	defer cancel()

	ft := &fuzzTarget{s: s, now: now, placeholders: func(nonce, uri string) []string {
		return []string{"@NONCE@", nonce, "@MD5@", auth.Response(md5.New, "1001", "troika", "pw1001", "REGISTER", uri, nonce, "00000001", "c0ffee", "auth")}
	}}
	sock := &transport.Socket{Name: "udp:127.0.0.1:5060", Transport: "udp", IP: "127.0.0.1", Port: 5060}
	from := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5060}
	out := &capturedConn{}
	send := func(data []byte) {
		t.Helper()
		if pass, reply, _ := s.screen(sock, out, data, from); pass != nil || reply != nil {
			t.Fatalf("a REGISTER went to sipgo or was refused by the screen: %q", data)
		}
	}
	register := func(callID string, authed bool) []byte {
		m := "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK" + callID + "\r\n" +
			"From: <sip:1001@127.0.0.1>;tag=f\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: " + callID + "\r\nCSeq: 2 REGISTER\r\n" +
			"Contact: <sip:1001@10.0.0.1:5060>\r\nMax-Forwards: 70\r\n"
		if authed {
			m += `Authorization: Digest username="1001",realm="troika",nonce="@NONCE@",uri="sip:127.0.0.1",response="@MD5@",algorithm=MD5,cnonce="c0ffee",qop=auth,nc=00000001` + "\r\n"
		}
		return ft.fill([]byte(m + "Content-Length: 0\r\n\r\n"))
	}
	answers := map[string][]*sip.Response{}
	collect := func(n int) {
		t.Helper()
		got := 0
		testkit.WaitFor(t, 10*time.Second, "the answers", func() bool {
			for _, d := range out.take() {
				m, err := sip.ParseMessage(d)
				if err != nil {
					t.Fatalf("answer does not parse: %v: %q", err, d)
				}
				r := m.(*sip.Response)
				answers[r.CallID().Value()] = append(answers[r.CallID().Value()], r)
				got++
			}
			return got >= n
		})
	}
	code := func(callID string) int {
		if rs := answers[callID]; len(rs) == 1 {
			return rs[0].StatusCode
		}
		return -len(answers[callID]) // none, or more than one
	}

	// The one worker writes a's binding; a is retransmitted meanwhile, and
	// b, c and d queue up behind it.
	send(register("a", true))
	<-store.entered
	send(register("a", true))
	send(register("b", true))
	send(register("c", false))
	send(register("d", false))
	if n := len(s.regs.queue); n != 3 {
		t.Fatalf("%d REGISTERs queued, want b, c and d (a's retransmission absorbed)", n)
	}
	// b is picked up 150 ms later: a long wait, but the first, a burst
	// maybe. It is written, and takes another 150 ms.
	clock.add(150 * time.Millisecond)
	store.release <- struct{}{}
	<-store.entered
	clock.add(150 * time.Millisecond)
	store.release <- struct{}{}
	// The queue has stayed for a whole interval: c and d are shed.
	collect(4)
	if code("a") != 200 || code("b") != 200 || code("c") != 503 || code("d") != 503 {
		t.Fatalf("answers a %d, b %d, c %d, d %d: want 200, 200, 503, 503 (one each)", code("a"), code("b"), code("c"), code("d"))
	}
	for _, id := range []string{"c", "d"} {
		if answers[id][0].GetHeader("Retry-After") == nil {
			t.Errorf("503 to %s without Retry-After", id)
		}
	}
	if w := store.Writes.Load(); w != 2 {
		t.Errorf("%d writes, want 2 (the retransmission was written again?)", w)
	}
	if n := testkit.Metric(reg, "troika_sip_register_total", "result", sipmsg.ResultOverloaded); n != 2 {
		t.Errorf("overloaded count %v, want 2", n)
	}
	// The queue is empty again: the next REGISTERs are served at once.
	send(register("e", false))
	send(register("f", true))
	<-store.entered
	store.release <- struct{}{}
	collect(2)
	if code("e") != 401 || code("f") != 200 {
		t.Errorf("after the overload: e %d, f %d, want 401 and 200", code("e"), code("f"))
	}
}

// The shedder sheds only while a queue stays: a burst whose wait falls
// back under the target within the interval is served.
func TestShedder(t *testing.T) {
	ms := time.Millisecond
	t0 := time.UnixMilli(1_700_000_000_000)
	d := shedder{target: 20 * ms, interval: 100 * ms}
	steps := []struct {
		at     time.Duration
		wait   time.Duration
		authed bool
		want   bool
	}{
		{0, 0, false, false},
		{10 * ms, 500 * ms, false, false},  // a burst: not shed
		{50 * ms, 5 * ms, false, false},    // caught up within the interval
		{120 * ms, 300 * ms, false, false}, // the last interval's shortest wait was 0
		{150 * ms, 40 * ms, false, false},
		{230 * ms, 60 * ms, false, true}, // waits above 20 ms for an interval: shed
		{240 * ms, 60 * ms, true, false}, // with credentials: only past 100 ms
		{250 * ms, 110 * ms, true, true},
		{260 * ms, 10 * ms, false, false}, // a short wait is served even now
		{340 * ms, 30 * ms, false, false}, // the interval had a short wait: no longer shedding
	}
	for i, s := range steps {
		if got := d.shed(t0.Add(s.at), s.wait, s.authed); got != s.want {
			t.Errorf("step %d (at %v, wait %v, authed %v): shed %v, want %v", i, s.at, s.wait, s.authed, got, s.want)
		}
	}
	never := shedder{target: -1, interval: 100 * ms}
	for i := range 5 {
		if never.shed(t0.Add(time.Duration(i)*time.Second), time.Minute, false) {
			t.Fatal("a negative target sheds")
		}
	}
}
