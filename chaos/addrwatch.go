//go:build linux

package chaos

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/troika-sip/troika/internal/tick"
)

// SampleEvery is how often the harness lists every namespace's addresses.
const SampleEvery = 50 * time.Millisecond

// Round is one sample of every node and client namespace: the addresses
// each held, read one namespace after the other within well under a
// millisecond, stamped with the round's start.
type Round struct {
	At   time.Time
	Held map[string][]NSAddr // host name -> its addresses (all of them, loopback included)
	Errs map[string]string   // host name -> why it could not be read this round
}

// DoubleHolder is an address held by more than one namespace in a round.
type DoubleHolder struct {
	At      time.Time
	Addr    netip.Addr
	Holders []string
}

func (d DoubleHolder) String() string {
	return fmt.Sprintf("%s held by %s at %s", d.Addr, strings.Join(d.Holders, " and "), d.At.Format("15:04:05.000"))
}

// Hold is an interval during which a host held an address: from the first
// round that saw it to the first round that did not (or the last round).
type Hold struct {
	Host     string
	From, To time.Time
	Open     bool // still held at the last round
}

// watched reports whether the checkers consider the address: a unicast
// address that could be another host's (not loopback, not link-local).
func watched(a netip.Addr) bool {
	return a.IsValid() && !a.IsLoopback() && !a.IsLinkLocalUnicast() && !a.IsMulticast() && !a.IsUnspecified()
}

// CheckSingleHolder returns, for every round, every watched address held
// by two or more hosts. Rounds are not atomic snapshots: a handover that
// completes within the few hundred microseconds a round takes can show up
// as a double holder (never the reverse), so a clean report is a true one.
func CheckSingleHolder(rounds []Round) []DoubleHolder {
	var out []DoubleHolder
	for _, r := range rounds {
		holders := map[netip.Addr][]string{}
		for host, addrs := range r.Held {
			seen := map[netip.Addr]bool{}
			for _, a := range addrs {
				ip := a.Prefix.Addr()
				if watched(ip) && !seen[ip] {
					seen[ip] = true
					holders[ip] = append(holders[ip], host)
				}
			}
		}
		var dups []DoubleHolder
		for ip, hs := range holders {
			if len(hs) > 1 {
				sort.Strings(hs)
				dups = append(dups, DoubleHolder{At: r.At, Addr: ip, Holders: hs})
			}
		}
		sort.Slice(dups, func(i, j int) bool { return dups[i].Addr.Less(dups[j].Addr) })
		out = append(out, dups...)
	}
	return out
}

// Ownership returns who held address a over the rounds, as intervals in
// time order.
func Ownership(rounds []Round, a netip.Addr) []Hold {
	var out []Hold
	open := map[string]int{} // host -> index in out
	for _, r := range rounds {
		now := map[string]bool{}
		for host, addrs := range r.Held {
			for _, x := range addrs {
				if x.Prefix.Addr() == a {
					now[host] = true
				}
			}
		}
		for host, i := range open {
			if !now[host] {
				if _, unreadable := r.Errs[host]; unreadable {
					continue // unknown this round: keep it open
				}
				out[i].To, out[i].Open = r.At, false
				delete(open, host)
			} else {
				out[i].To = r.At
			}
		}
		hosts := make([]string, 0, len(now))
		for h := range now {
			hosts = append(hosts, h)
		}
		sort.Strings(hosts)
		for _, host := range hosts {
			if _, ok := open[host]; !ok {
				open[host] = len(out)
				out = append(out, Hold{Host: host, From: r.At, To: r.At, Open: true})
			}
		}
	}
	return out
}

// WatchedAddrs lists every watched address any host held in the rounds.
func WatchedAddrs(rounds []Round) []netip.Addr {
	seen := map[netip.Addr]bool{}
	for _, r := range rounds {
		for _, addrs := range r.Held {
			for _, a := range addrs {
				if watched(a.Prefix.Addr()) {
					seen[a.Prefix.Addr()] = true
				}
			}
		}
	}
	out := make([]netip.Addr, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// sampler lists the addresses of every host every SampleEvery.
type sampler struct {
	hosts []*Host
	socks []*netlinkSock
	mu    sync.Mutex
	ring  []Round
}

func (c *Cluster) startSampler(ctx context.Context) error {
	s := &sampler{hosts: c.Hosts()}
	for _, h := range s.hosts {
		sock, err := openNetlink(h.NS)
		if err != nil {
			s.close()
			return err
		}
		s.socks = append(s.socks, sock)
	}
	c.sampler = s
	s.sample() // a first round before anything starts
	c.bgWG.Add(1)
	go func() {
		defer c.bgWG.Done()
		tick.Every(ctx.Done(), SampleEvery, s.sample)
	}()
	return nil
}

func (s *sampler) sample() {
	r := Round{At: time.Now(), Held: make(map[string][]NSAddr, len(s.hosts))}
	for i, h := range s.hosts {
		addrs, err := s.socks[i].addrs()
		if err != nil {
			if r.Errs == nil {
				r.Errs = map[string]string{}
			}
			r.Errs[h.Name] = err.Error()
			continue
		}
		r.Held[h.Name] = addrs
	}
	s.mu.Lock()
	s.ring = append(s.ring, r)
	s.mu.Unlock()
}

func (s *sampler) close() {
	for _, sock := range s.socks {
		sock.close()
	}
}

// AddrTimeline returns the address samples so far (every SampleEvery,
// since New).
func (c *Cluster) AddrTimeline() []Round {
	if c.sampler == nil {
		return nil
	}
	c.sampler.mu.Lock()
	defer c.sampler.mu.Unlock()
	return append([]Round(nil), c.sampler.ring...)
}

// WaitSamples waits until the sampler has taken n more rounds, so that
// the state of the hosts' addresses meanwhile is in the timeline.
func (c *Cluster) WaitSamples(n int) error {
	start := len(c.AddrTimeline())
	timeout := time.Duration(n+20) * SampleEvery
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(SampleEvery / 4)
	defer tick.Stop()
	for len(c.AddrTimeline()) < start+n {
		select {
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("the address sampler took %d of %d rounds in %s", len(c.AddrTimeline())-start, n, timeout)
		}
	}
	return nil
}

// DoubleHolders checks the whole timeline so far: every sampled instant
// at which two namespaces held the same address. Empty is the invariant.
func (c *Cluster) DoubleHolders() []DoubleHolder { return CheckSingleHolder(c.AddrTimeline()) }

// Holders returns the hosts that held address a at the latest sample.
func (c *Cluster) Holders(a netip.Addr) []string {
	tl := c.AddrTimeline()
	if len(tl) == 0 {
		return nil
	}
	var out []string
	for host, addrs := range tl[len(tl)-1].Held {
		for _, x := range addrs {
			if x.Prefix.Addr() == a {
				out = append(out, host)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// WaitHolders waits until the latest sample shows address a held by
// exactly the given hosts (none: nobody holds it).
func (c *Cluster) WaitHolders(a netip.Addr, timeout time.Duration, hosts ...string) error {
	want := append([]string(nil), hosts...)
	sort.Strings(want)
	deadline := time.Now().Add(timeout)
	for {
		got := c.Holders(a)
		if slices.Equal(got, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: held by %v, want %v, after %v", a, got, want, timeout)
		}
		time.Sleep(SampleEvery / 2)
	}
}
