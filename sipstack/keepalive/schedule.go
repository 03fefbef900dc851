package keepalive

import (
	"slices"
	"strconv"
	"time"

	"github.com/troika-sip/troika/fsm"
)

// The pure decisions of the keepalive: which bindings this node pings,
// when each is due, which due ones go in a tick, and what an outcome does
// to a binding's reachability.

// Pings reports whether the node holding the sockets in held pings b at
// unix ms now: b is unexpired and its ingress socket is one this node
// holds. Address ownership gives each socket one holder, so each binding
// has one pinger.
func Pings(b fsm.Binding, held map[string]bool, now int64) bool {
	return b.ExpiresAt > now && b.Ingress != "" && held[b.Ingress]
}

// bindingID identifies a binding across refreshes: its account and, as
// the registrar keys it, its instance (RFC 5626) or else its contact.
func bindingID(b fsm.Binding) string {
	if b.Instance != "" {
		return b.AOR + "\x00i:" + b.Instance + ";" + strconv.Itoa(b.RegID)
	}
	return b.AOR + "\x00c:" + b.Contact
}

// phaseOf is where in each interval the binding id is pinged: a hash of
// the id (FNV-1a, mixed) modulo the interval, so that many bindings spread
// evenly over it and each keeps its place across refreshes and restarts.
func phaseOf(id string, interval time.Duration) time.Duration {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= prime
	}
	h ^= h >> 33 // FNV's low bits mix poorly: fold the high ones in
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return time.Duration(h % uint64(interval))
}

// slotOf numbers the interval that t falls in, for a binding of phase
// phase: slot k runs from k*interval+phase (unix time) for one interval.
// A binding is due once per slot.
func slotOf(t time.Time, phase, interval time.Duration) int64 {
	x := t.UnixNano() - int64(phase)
	k := x / int64(interval)
	if x < 0 && x%int64(interval) != 0 {
		k-- // floor
	}
	return k
}

// firstSlot is the slot a binding first seen at now counts as pinged in:
// it is first pinged at its phase in the next slot. A binding registered
// within the last interval is first pinged a whole interval after its
// REGISTER, which has just opened the pinhole (and a phone busy
// registering, or a test phone waiting for its first call, is not
// disturbed); one registered earlier (seen after a restart, or after its
// socket moved here) at its next phase, so its pings go on.
func firstSlot(now, registered time.Time, phase, interval time.Duration) int64 {
	return max(slotOf(now, phase, interval), slotOf(registered.Add(interval), phase, interval))
}

// dueAt is when a binding last pinged (or first seen) in slot last is
// due again: the start of the next slot.
func dueAt(last int64, phase, interval time.Duration) time.Time {
	return time.Unix(0, (last+1)*int64(interval)+int64(phase))
}

// candidate is a binding as plan sees it.
type candidate struct {
	due  time.Time // when its next ping is due
	busy bool      // a ping of it is still waiting for an answer
}

// plan picks the bindings to ping at now: those due by now with no ping
// outstanding, the longest-waiting first (ties in list order), at most
// limit of them. It returns their indexes in cs, and how many due ones
// were left for a later tick.
func plan(cs []candidate, now time.Time, limit int) (picked []int, deferred int) {
	for i, c := range cs {
		if !c.busy && !c.due.After(now) {
			picked = append(picked, i)
		}
	}
	if len(picked) <= limit {
		return picked, 0
	}
	slices.SortStableFunc(picked, func(a, b int) int { return cs[a].due.Compare(cs[b].due) })
	return picked[:max(limit, 0)], len(picked) - max(limit, 0)
}

// outcome is what became of one ping.
type outcome int

const (
	outcomeOK         outcome = iota // a final response, whatever its code: the phone is there
	outcomeTimeout                   // no final response in time
	outcomeNoFlow                    // TCP/TLS: the phone's connection is gone, nothing can reach it
	outcomeSendError                 // this node could not send it (socket gone, bad contact): says nothing of the phone
	outcomeRegistered                // not a ping: the phone registered (again)
)

// label is the outcome's "result" label of troika_sip_keepalive_total.
func (o outcome) label() string {
	switch o {
	case outcomeOK:
		return resultOK
	case outcomeTimeout:
		return resultTimeout
	default:
		return resultError
	}
}

// reach is a binding's reachability as this node sees it.
type reach struct {
	failures    int  // failed pings in a row
	unreachable bool // failures reached the limit
}

// change is what step did to reachability, for the log and the gauge.
type change int

const (
	unchanged change = iota
	becameUnreachable
	becameReachable
)

// step applies an outcome to r: an answer or a registration clears the
// failures (and makes an unreachable binding reachable); a timeout or a
// lost connection adds one, and the limit-th in a row makes it
// unreachable; a send error of this node's changes nothing.
func step(r reach, o outcome, limit int) (reach, change) {
	switch o {
	case outcomeOK, outcomeRegistered:
		was := r.unreachable
		r = reach{}
		if was {
			return r, becameReachable
		}
		return r, unchanged
	case outcomeTimeout, outcomeNoFlow:
		r.failures++
		if !r.unreachable && r.failures >= limit {
			r.unreachable = true
			return r, becameUnreachable
		}
		return r, unchanged
	default:
		return r, unchanged
	}
}

// perTick is how many pings one tick may start: maxPerSecond spread over
// the ticks of a second, at least one.
func perTick(maxPerSecond int, tick time.Duration) int {
	return max(1, int((int64(maxPerSecond)*int64(tick)+int64(time.Second)-1)/int64(time.Second)))
}

// maxOutstanding bounds the pings waiting for an answer: at perTick a
// tick, each waiting at most timeout, no more than this many can be
// waiting at once.
func maxOutstanding(perTick int, timeout, tick time.Duration) int {
	return perTick * (int((timeout+tick-1)/tick) + 1)
}
