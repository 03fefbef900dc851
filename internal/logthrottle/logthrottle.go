// Package logthrottle decides which of many similar log lines to write:
// at most one per key (a source address and a reason, say) in a period,
// the others counted and reported by the next line written. A scan or an
// attack then costs a few lines, not one per packet, and nothing is
// hidden: the count of the lines not written is in the next one.
package logthrottle

import (
	"sync"
	"time"
)

// Gate lets one line per key through every period. It is safe for
// concurrent use.
type Gate struct {
	every   time.Duration
	maxKeys int

	mu   sync.Mutex
	seen map[Key]*seen
}

// Key is what lines are throttled by: who caused them (a source address)
// and what they say (a reason).
type Key struct{ Who, What string }

type seen struct {
	at         time.Time
	suppressed int
}

// Overflow is the Who all keys share (per What) once a Gate remembers
// maxKeys keys and none has been quiet for a period.
const Overflow = "*"

// New returns a Gate letting one line per key through every period,
// remembering at most maxKeys keys.
func New(every time.Duration, maxKeys int) *Gate {
	return &Gate{every: every, maxKeys: max(maxKeys, 1), seen: map[Key]*seen{}}
}

// Every is the Gate's period.
func (g *Gate) Every() time.Duration { return g.every }

// Allow reports whether a line for key may be written at now and, when
// it may, how many lines for key were held back since the last one
// written. Past maxKeys remembered keys, key is counted as
// {Overflow, key.What}.
func (g *Gate) Allow(key Key, now time.Time) (ok bool, suppressed int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.seen[key]
	if s == nil && len(g.seen) >= g.maxKeys {
		for k, v := range g.seen {
			if now.Sub(v.at) >= g.every && v.suppressed == 0 {
				delete(g.seen, k)
			}
		}
		if len(g.seen) >= g.maxKeys {
			key.Who = Overflow
			s = g.seen[key]
		}
	}
	if s == nil {
		// The overflow entries may take the keys past maxKeys, by at most
		// one per What.
		g.seen[key] = &seen{at: now}
		return true, 0
	}
	if now.Sub(s.at) < g.every {
		s.suppressed++
		return false, 0
	}
	suppressed, s.at, s.suppressed = s.suppressed, now, 0
	return true, suppressed
}

// Len is how many keys the Gate remembers.
func (g *Gate) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.seen)
}
