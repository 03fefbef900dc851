package keepalive

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/troika-sip/troika/fsm"
)

// Which node pings a binding: the one holding its ingress socket, so
// that across a cluster whose nodes hold disjoint sockets every live
// binding has exactly one pinger.
func TestPingsByHolderOfTheIngress(t *testing.T) {
	const now = 1_000_000
	alias := "udp:127.0.0.2:5070"
	holds := map[string]map[string]bool{
		"n1": {"udp:127.0.0.1:5060": true, "tcp:127.0.0.1:5060": true},
		"n2": {alias: true, "udp:127.0.0.2:5060": true},
		"n3": {},
	}
	cases := []struct {
		name string
		b    fsm.Binding
		want []string // the nodes that ping it
	}{
		{"main socket", fsm.Binding{Ingress: "udp:127.0.0.1:5060", ExpiresAt: now + 1}, []string{"n1"}},
		{"alias extra port", fsm.Binding{Ingress: alias, ExpiresAt: now + 1}, []string{"n2"}},
		{"alias on the main port", fsm.Binding{Ingress: "udp:127.0.0.2:5060", ExpiresAt: now + 1}, []string{"n2"}},
		{"tcp: the holder has the connection", fsm.Binding{Ingress: "tcp:127.0.0.1:5060", Transport: "tcp", ExpiresAt: now + 1}, []string{"n1"}},
		{"a socket nobody holds (address moving)", fsm.Binding{Ingress: "udp:127.0.0.9:5060", ExpiresAt: now + 1}, nil},
		{"the same IP on another transport", fsm.Binding{Ingress: "tcp:127.0.0.2:5070", ExpiresAt: now + 1}, nil},
		{"expired, not yet purged", fsm.Binding{Ingress: alias, ExpiresAt: now}, nil},
		{"no ingress (older record)", fsm.Binding{ExpiresAt: now + 1}, nil},
	}
	for _, c := range cases {
		var got []string
		for _, n := range []string{"n1", "n2", "n3"} {
			if Pings(c.b, holds[n], now) {
				got = append(got, n)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: pinged by %v, want %v", c.name, got, c.want)
		}
	}
}

func TestSlotsAndDue(t *testing.T) {
	const iv = 30 * time.Second
	at := func(s float64) time.Time { return time.Unix(0, int64(s*float64(time.Second))) }
	cases := []struct {
		t     time.Time
		phase time.Duration
		slot  int64
	}{
		{at(0), 0, 0},
		{at(29.999), 0, 0},
		{at(30), 0, 1},
		{at(30), 10 * time.Second, 0}, // slot 0 runs 10 s..40 s
		{at(9.999), 10 * time.Second, -1},
		{at(40), 10 * time.Second, 1},
		{at(-0.001), 0, -1}, // floor, not truncation
	}
	for _, c := range cases {
		if got := slotOf(c.t, c.phase, iv); got != c.slot {
			t.Errorf("slotOf(%v, %v) = %d, want %d", c.t.Sub(at(0)), c.phase, got, c.slot)
		}
	}
	// Pinged (or first seen) in a slot, due at the start of the next:
	// exactly one interval later at the same phase.
	ph := 7 * time.Second
	last := slotOf(at(100), ph, iv) // slot 3: 97 s..127 s
	if due := dueAt(last, ph, iv); !due.Equal(at(127)) {
		t.Errorf("due at %v, want 127 s", due.Sub(at(0)))
	}
	if slotOf(at(126.999), ph, iv) != last || slotOf(at(127), ph, iv) != last+1 {
		t.Error("the slot does not turn over at the due time")
	}
}

// Phases spread bindings evenly over the interval: over 10,000 bindings
// and 30 one-second ticks, no tick gets much more than its share (a
// thundering herd would put them all in one).
func TestPhasesSpreadOverTheInterval(t *testing.T) {
	const n, iv = 10000, 30 * time.Second
	per := make([]int, 30)
	for i := range n {
		id := bindingID(fsm.Binding{AOR: fmt.Sprintf("%d", 1000+i/3), Contact: fmt.Sprintf("sip:%d@10.0.%d.%d:5060", i, i/250, i%250)})
		ph := phaseOf(id, iv)
		if ph < 0 || ph >= iv {
			t.Fatalf("phase %v outside the interval", ph)
		}
		per[ph/time.Second]++
	}
	share := n / 30
	for s, k := range per {
		if k < share*3/4 || k > share*5/4 {
			t.Errorf("second %d of the interval has %d bindings, share %d: %v", s, k, share, per)
			break
		}
	}
	// The same binding keeps its phase.
	id := bindingID(fsm.Binding{AOR: "1001", Contact: "sip:1001@10.0.0.1"})
	if phaseOf(id, iv) != phaseOf(id, iv) {
		t.Error("phase not stable")
	}
}

// When a binding new to this node is first pinged: a whole interval
// after a fresh REGISTER, at its next phase otherwise.
func TestFirstPing(t *testing.T) {
	const iv = 30 * time.Second
	at := func(s float64) time.Time { return time.Unix(1000, 0).Add(time.Duration(s * float64(time.Second))) }
	ph := phaseOf("x", iv)
	base := slotOf(at(0), ph, iv)
	boundary := dueAt(base-1, ph, iv) // the start of the slot of at(0)
	cases := []struct {
		name            string
		now, registered time.Time
		min, max        time.Time // the first ping falls in [min, max)
	}{
		{"registered just now", at(0), at(0), at(30), at(60)},
		{"registered 20 s ago", at(0), at(-20), at(10), at(40)},
		{"registered long ago (a restart, an address move)", at(0), at(-3600), at(0), at(30)},
		{"registered 30 s ago exactly", at(0), at(-30), at(0), at(30)},
	}
	for _, c := range cases {
		first := dueAt(firstSlot(c.now, c.registered, ph, iv), ph, iv)
		if first.Before(c.min) || !first.Before(c.max) {
			t.Errorf("%s: first ping %v after now, want within [%v, %v) (phase %v, slot start %v)", c.name, first.Sub(c.now),
				c.min.Sub(c.now), c.max.Sub(c.now), ph, boundary.Sub(at(0)))
		}
	}
}

func TestPlan(t *testing.T) {
	now := time.Unix(1000, 0)
	ago := func(s int) time.Time { return now.Add(-time.Duration(s) * time.Second) }
	cases := []struct {
		name     string
		cs       []candidate
		limit    int
		picked   []int
		deferred int
	}{
		{"nothing due", []candidate{{due: now.Add(time.Second)}}, 10, nil, 0},
		{"due exactly now", []candidate{{due: now}}, 10, []int{0}, 0},
		{"a ping still outstanding waits", []candidate{{due: ago(5), busy: true}, {due: ago(1)}}, 10, []int{1}, 0},
		{"within the cap: list order", []candidate{{due: ago(1)}, {due: ago(9)}, {due: now.Add(1)}}, 2, []int{0, 1}, 0},
		{"over the cap: longest waiting first", []candidate{{due: ago(1)}, {due: ago(9)}, {due: ago(5)}, {due: ago(5)}}, 2, []int{1, 2}, 2},
		{"no room at all", []candidate{{due: ago(1)}}, 0, []int{}, 1},
	}
	for _, c := range cases {
		picked, deferred := plan(c.cs, now, c.limit)
		if !slices.Equal(picked, c.picked) && !(len(picked) == 0 && len(c.picked) == 0) || deferred != c.deferred {
			t.Errorf("%s: picked %v deferred %d, want %v and %d", c.name, picked, deferred, c.picked, c.deferred)
		}
	}
}

// What outcomes do to reachability, with a limit of 3 failures.
func TestStep(t *testing.T) {
	cases := []struct {
		name string
		from reach
		o    outcome
		to   reach
		ch   change
	}{
		{"answer", reach{}, outcomeOK, reach{}, unchanged},
		{"answer clears failures", reach{failures: 2}, outcomeOK, reach{}, unchanged},
		{"first timeout", reach{}, outcomeTimeout, reach{failures: 1}, unchanged},
		{"third timeout in a row", reach{failures: 2}, outcomeTimeout, reach{failures: 3, unreachable: true}, becameUnreachable},
		{"more timeouts: still unreachable, said once", reach{failures: 3, unreachable: true}, outcomeTimeout, reach{failures: 4, unreachable: true}, unchanged},
		{"lost TCP connection counts", reach{failures: 2}, outcomeNoFlow, reach{failures: 3, unreachable: true}, becameUnreachable},
		{"this node's send error says nothing", reach{failures: 2}, outcomeSendError, reach{failures: 2}, unchanged},
		{"answer after unreachable", reach{failures: 5, unreachable: true}, outcomeOK, reach{}, becameReachable},
		{"REGISTER after unreachable", reach{failures: 5, unreachable: true}, outcomeRegistered, reach{}, becameReachable},
	}
	for _, c := range cases {
		to, ch := step(c.from, c.o, 3)
		if to != c.to || ch != c.ch {
			t.Errorf("%s: %+v, %v; want %+v, %v", c.name, to, ch, c.to, c.ch)
		}
	}
	// Any final response is an answer; the result labels.
	for o, want := range map[outcome]string{outcomeOK: "ok", outcomeTimeout: "timeout", outcomeNoFlow: "error", outcomeSendError: "error"} {
		if o.label() != want {
			t.Errorf("outcome %d labelled %q, want %q", o, o.label(), want)
		}
	}
}

func TestBounds(t *testing.T) {
	if got := perTick(2000, time.Second); got != 2000 {
		t.Errorf("perTick 1 s: %d", got)
	}
	if got := perTick(2000, 10*time.Millisecond); got != 20 {
		t.Errorf("perTick 10 ms: %d", got)
	}
	if got := perTick(1, 10*time.Millisecond); got != 1 {
		t.Errorf("perTick of a tiny rate: %d, want at least 1", got)
	}
	// 5 s timeout, 1 s ticks: pings of 6 ticks can be waiting at once.
	if got := maxOutstanding(2000, 5*time.Second, time.Second); got != 12000 {
		t.Errorf("maxOutstanding %d", got)
	}
}

func TestConfigDefaults(t *testing.T) {
	base := Config{Logger: nil}
	if c, err := base.WithDefaults(); err != nil || c.Interval != 0 {
		t.Errorf("off: %+v %v", c, err)
	}
	if _, err := (Config{Interval: time.Second, Timeout: 2 * time.Second}).WithDefaults(); err == nil {
		t.Error("a timeout longer than the interval accepted")
	}
	if _, err := (Config{Interval: -time.Second}).WithDefaults(); err == nil {
		t.Error("a negative interval accepted")
	}
}
