// The two modes: rate (phases of new registrations) and storm (phones
// that all want a binding at once).

package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// runRate starts new registrations at each phase's rate and reports each
// phase once its registrations have ended (answered, or given up after
// Timer F). A phone does not retry in this mode: a refusal or a timeout
// is counted against its phase.
func (l *load) runRate(ps []phase, drain time.Duration) {
	all := make([]*stats, len(ps))
	n := l.cfg.first
	l.start = time.Now()
	for i, ph := range ps {
		st := &stats{}
		all[i] = st
		start := time.Now()
		total := int(ph.d.Seconds() * float64(ph.rate))
		for k := 0; k < total; k++ {
			// Paced in steps of 1 ms: the k-th phone starts at k/rate.
			if d := time.Until(start.Add(time.Duration(float64(k) / float64(ph.rate) * float64(time.Second)))); d > time.Millisecond {
				time.Sleep(d)
			}
			p := l.newPhone(n)
			p.stats = st
			l.mu.Lock()
			l.phones = append(l.phones, p)
			l.mu.Unlock()
			st.started.Add(1)
			p.begin()
			n++
		}
		fmt.Fprintf(os.Stderr, "sipload: phase %d (%d/s for %s) sent, %d ok so far\n", i+1, ph.rate, ph.d, st.ok.Load())
	}
	// Wait until every registration has ended.
	end := time.Now().Add(drain)
	for time.Now().Before(end) {
		pending := int64(0)
		for _, st := range all {
			pending += st.started.Load() - st.ok.Load() - st.unavailable.Load() - st.timeouts.Load() - st.rechallenged.Load() - st.otherCodes.Load()
		}
		if pending <= 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, st := range all {
		ph := ps[i]
		codes := ""
		for c, k := range st.codes {
			codes += fmt.Sprintf(" code_%d=%d", c, k)
		}
		fmt.Printf("phase=%d offered=%d seconds=%.0f started=%d ok=%d rate=%.0f s503=%d timeouts=%d rechallenged=%d other=%d retrans=%d "+
			"p50_ms=%s p99_ms=%s max_ms=%s challenge_p99_ms=%s register_p99_ms=%s shed_p99_ms=%s%s\n",
			i+1, ph.rate, ph.d.Seconds(), st.started.Load(), st.ok.Load(), float64(st.ok.Load())/ph.d.Seconds(),
			st.unavailable.Load(), st.timeouts.Load(), st.rechallenged.Load(), st.otherCodes.Load(), st.retrans.Load(),
			st.okLat.pct(50), st.okLat.pct(99), st.okLat.pct(100), st.challenge.pct(99), st.regLat.pct(99), st.shedLat.pct(99), codes)
	}
}

// runStorm makes n phones register at once, their first REGISTERs spread
// over spread, each retrying until it holds a binding or deadline passes.
func (l *load) runStorm(n int, spread, deadline time.Duration) {
	st := &stats{}
	var registered, backoffs atomic.Int64
	var lastOK atomic.Int64 // ns since start
	l.start = time.Now()
	allDone := make(chan struct{})
	var once sync.Once
	onSuccess := func(p *phone) {
		lastOK.Store(int64(time.Since(l.start)))
		if registered.Add(1) == int64(n) {
			once.Do(func() { close(allDone) })
		}
	}
	onFailure := func(p *phone, retryAfter time.Duration) {
		// RFC 5626 §4.5: wait min(max-time, base-time * 2^failures),
		// times a random factor in [0.5, 1]; a Retry-After from the server
		// is honoured instead (RFC 3261 §21.5.4).
		wait := retryAfter
		if wait <= 0 {
			exp := min(p.failures, 16)
			wait = min(l.cfg.backMax, l.cfg.backBase*time.Duration(1<<exp))
			wait = time.Duration(float64(wait) * (0.5 + rand.Float64()/2))
		}
		backoffs.Add(1)
		time.AfterFunc(wait, p.begin)
	}
	phones := make([]*phone, n)
	for i := range phones {
		p := l.newPhone(l.cfg.first + i)
		p.stats, p.onSuccess, p.onFailure = st, onSuccess, onFailure
		phones[i] = p
	}
	l.mu.Lock()
	l.phones = phones
	l.mu.Unlock()
	go func() {
		for i, p := range phones {
			if d := time.Until(l.start.Add(spread * time.Duration(i) / time.Duration(n))); d > time.Millisecond {
				time.Sleep(d)
			}
			st.started.Add(1)
			p.begin()
		}
	}()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	timeout := time.After(deadline)
wait:
	for {
		select {
		case <-allDone:
			break wait
		case <-timeout:
			break wait
		case <-tick.C:
			fmt.Fprintf(os.Stderr, "sipload: storm %4.0fs: registered %d/%d, 503 %d, timeouts %d, back-offs %d\n",
				time.Since(l.start).Seconds(), registered.Load(), n, st.unavailable.Load(), st.timeouts.Load(), backoffs.Load())
		}
	}
	maxAttempts := 0
	for _, p := range phones {
		p.mu.Lock()
		maxAttempts = max(maxAttempts, p.attempts)
		p.mu.Unlock()
	}
	fmt.Printf("phones=%d registered=%d given_up=%d time_all_s=%.1f sent=%d retrans=%d s503=%d timeouts=%d rechallenged=%d other=%d "+
		"backoffs=%d max_attempts=%d register_p50_ms=%s register_p99_ms=%s spread_s=%.0f\n",
		n, registered.Load(), int64(n)-registered.Load(), time.Duration(lastOK.Load()).Seconds(), l.sent.Load(), l.retrans.Load(),
		st.unavailable.Load(), st.timeouts.Load(), st.rechallenged.Load(), st.otherCodes.Load(), backoffs.Load(), maxAttempts,
		st.regLat.pct(50), st.regLat.pct(99), spread.Seconds())
}
