// Package testkit holds what troika's tests share: a write path that
// applies commands to a local fsm.State as a one-node cluster would
// (Store), MustApply, waiting on a condition with a deadline (WaitFor,
// Holds), an adjustable clock, Prometheus readings (Metric, ParseMetrics), a
// port free for both UDP and TCP (FreePort), and the troika binary built
// once per test run (Binary).
//
// Only tests import it, and the chaos harness and command (tools that
// drive real processes, never part of the troika binary).
package testkit

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
)

// ErrNoLeader is what Store.Propose returns while Fail is set: the error
// of a cluster that lost its leader.
var ErrNoLeader = errors.New("testkit: no leader")

// Store is the replicated write path of a one-node cluster without
// consensus: each command is encoded as the cluster would carry it and
// applied to State. It serves as a sipstack Store and an admin Backend.
type Store struct {
	State *fsm.State
	// Fail makes every Propose fail with ErrNoLeader (a cluster without
	// a leader).
	Fail atomic.Bool
	// Writes counts the calls to Propose.
	Writes atomic.Int64
	// Status is what ClusterStatus returns (an empty object when nil).
	Status any
}

// NewStore returns a Store over st (a new empty state when nil).
func NewStore(st *fsm.State) *Store {
	if st == nil {
		st = fsm.New()
	}
	return &Store{State: st}
}

// Propose encodes cmd and applies it to the state, its clear passwords
// hashed into credentials for Realm first, as a node does.
func (s *Store) Propose(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	cmd = fsm.SecureCommand(cmd, Realm)
	s.Writes.Add(1)
	if s.Fail.Load() {
		return fsm.Result{}, ErrNoLeader
	}
	if err := ctx.Err(); err != nil {
		return fsm.Result{}, err
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return fsm.Result{}, err
	}
	return s.State.Apply(data)
}

// ClusterStatus returns Status.
func (s *Store) ClusterStatus() any {
	if s.Status == nil {
		return map[string]string{}
	}
	return s.Status
}

// MustApply encodes and applies cmd to st, failing the test if the
// command does not decode or the state machine refuses it.
func MustApply(t testing.TB, st *fsm.State, cmd fsm.Command) fsm.Result {
	t.Helper()
	res, err := NewStore(st).Propose(context.Background(), cmd)
	if err != nil || res.Err != nil {
		t.Fatalf("%T: %v %v", cmd, err, res.Err)
	}
	return res
}

// pollEvery is how often WaitFor and Holds look at their condition.
const pollEvery = 10 * time.Millisecond

// WaitFor polls cond until it holds, failing the test (naming what it
// waited for) when timeout passes first.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Eventually(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// WaitNoError waits up to timeout for the error a goroutine sends on done
// (what it ran returning), failing the test when it is not nil or does not
// come in time.
func WaitNoError(t testing.TB, done <-chan error, timeout time.Duration, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(timeout):
		t.Fatalf("%s did not return within %s", what, timeout)
	}
}

// Eventually polls cond until it holds (true) or timeout passes (false).
func Eventually(timeout time.Duration, cond func() bool) bool {
	if cond() {
		return true
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if cond() {
				return true
			}
		case <-deadline.C:
			return cond()
		}
	}
}

// Holds checks that cond stays true for the whole of d (a state that must
// not change while something else happens), failing the test at the
// first sample where it does not.
func Holds(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.NewTimer(d)
	defer end.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if !cond() {
			t.Fatalf("%s stopped holding", what)
		}
		select {
		case <-tick.C:
		case <-end.C:
			if !cond() {
				t.Fatalf("%s stopped holding", what)
			}
			return
		}
	}
}

// Clock is the wall clock shifted by an adjustable offset: hand Now to
// the code under test and Advance it instead of sleeping. Code that
// waits for a time of Now re-arms its timers when the clock jumps
// (Jumps).
type Clock struct {
	off atomic.Int64

	mu     sync.Mutex
	jumped chan struct{} // closed at the next Advance; nil until Jumps asks
}

// Now is time.Now plus the offset.
func (c *Clock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.off.Add(int64(d))
	c.mu.Lock()
	if c.jumped != nil {
		close(c.jumped)
		c.jumped = nil
	}
	c.mu.Unlock()
}

// Jumps returns a channel closed at the next Advance (the B2BUA's
// Config.ClockJumps).
func (c *Clock) Jumps() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jumped == nil {
		c.jumped = make(chan struct{})
	}
	return c.jumped
}

// Metric sums the counters and gauges called name in g whose labels
// include labels (name, value pairs).
func Metric(g prometheus.Gatherer, name string, labels ...string) float64 {
	mfs, _ := g.Gather()
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

// ParseMetrics reads a Prometheus text exposition (a GET /metrics answer)
// and returns every sample's value by its name and labels as printed,
// such as troika_sip_register_total{result="ok"}; a sample absent reads
// as 0.
func ParseMetrics(r io.Reader) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// SDP offers and answers of the call tests: a caller's audio offer
// (PCMU, PCMA) and a callee's answer (PCMU).
const (
	CallerSDP = "v=0\r\no=alice 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
	CalleeSDP = "v=0\r\no=bob 2 2 IN IP4 10.2.2.2\r\ns=-\r\nc=IN IP4 10.2.2.2\r\nt=0 0\r\nm=audio 50000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)

// Resolver answers host-name look-ups from Names (name -> addresses)
// and counts them; any other name does not resolve.
type Resolver struct {
	Names   map[string][]string
	Lookups atomic.Int32
}

// LookupNetIP implements the look-up of net.Resolver that the B2BUA uses.
func (r *Resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.Lookups.Add(1)
	as, ok := r.Names[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	var out []netip.Addr
	for _, a := range as {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

// Realm is the digest realm of the tests' SIP servers.
const Realm = "troika"

// Money parses a decimal amount of money, such as the API shows, into
// micro-units.
func Money(t testing.TB, s string) int64 {
	t.Helper()
	v, err := billing.ParseMoney(s)
	if err != nil {
		t.Fatalf("money %q: %v", s, err)
	}
	return v
}

// Creds are the stored credentials of user's password in Realm.
func Creds(user, password string) fsm.Credentials { return fsm.HashCredentials(user, Realm, password) }
