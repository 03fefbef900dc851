package dispatch

import (
	"encoding/hex"
	"slices"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Choosing the processing node of a message (dispatcher.go).
//
// A Call-ID maps to a 64-bit key: for the Call-IDs of phones, the FNV-1a
// hash of its bytes; for the Call-IDs the switch makes (its callee legs,
// and anything it originates), the key written into the Call-ID itself.
// The node is chosen by rendezvous (highest random weight) hashing of the
// key over the processing nodes: every dispatcher with the same view of
// the healthy nodes picks the same node, and when a node leaves only the
// keys it had move, each to the next best node.
//
// Call-IDs the switch makes also name their node:
//
//	tk1.<16 hex digits: the key>.<20 random characters>.<node id>
//
// A message with such a Call-ID goes to that node while it is a
// processor, and otherwise by its key like any other. A callee leg's key
// is the key of its caller's Call-ID, so when its node is gone both legs
// of the call reach the same new node, which adopts the call from the
// cluster state (sipstack/b2bua, adoption).

const (
	markerPrefix = "tk1."
	markerKeyLen = 16
	markerRandom = 20
)

// callIDKey is the rendezvous key of a Call-ID.
func callIDKey(callID []byte) uint64 {
	if _, key, ok := parseMarker(callID); ok {
		return key
	}
	return fnvHash(callID)
}

// fnvHash is FNV-1a (64 bits), without allocating.
func fnvHash(b []byte) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for _, c := range b {
		h ^= uint64(c)
		h *= prime
	}
	return h
}

// markedCallID makes a Call-ID that routes to node (and, when node is
// gone, with key).
func markedCallID(node string, key uint64) string {
	var b strings.Builder
	b.Grow(len(markerPrefix) + markerKeyLen + markerRandom + 2 + len(node))
	b.WriteString(markerPrefix)
	var k [8]byte
	for i := range k {
		k[i] = byte(key >> (56 - 8*i))
	}
	b.WriteString(hex.EncodeToString(k[:]))
	b.WriteByte('.')
	b.WriteString(sip.GenerateTagN(markerRandom))
	b.WriteByte('.')
	b.WriteString(node)
	return b.String()
}

// parseMarker reads the node and key of a Call-ID made by markedCallID.
func parseMarker(callID []byte) (node []byte, key uint64, ok bool) {
	const head = len(markerPrefix) + markerKeyLen + 1 + markerRandom + 1
	if len(callID) <= head || string(callID[:len(markerPrefix)]) != markerPrefix {
		return nil, 0, false
	}
	hx := callID[len(markerPrefix) : len(markerPrefix)+markerKeyLen]
	for _, c := range hx {
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		default:
			return nil, 0, false
		}
		key = key<<4 | uint64(v)
	}
	if callID[len(markerPrefix)+markerKeyLen] != '.' || callID[head-1] != '.' {
		return nil, 0, false
	}
	return callID[head:], key, true
}

// mix64 is splitmix64's finalizer: a bijective scramble of 64 bits.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func nodeHash(id string) uint64 { return mix64(fnvHash([]byte(id))) }

// Processor is a node that may process SIP messages, as the cluster's
// health view sees it (node/dispatch.go builds the list from gossip).
type Processor struct {
	ID string
	// Draining: the node finishes its dialogs but takes no new ones: it
	// still gets the messages of Call-IDs that hash to it, except
	// requests that would start something (no To tag; not ACK or CANCEL),
	// which go to the next best node.
	Draining bool
}

// ring is an immutable set of processors, ready for picking.
type ring struct {
	nodes []ringNode
}

type ringNode struct {
	id       string
	h        uint64
	draining bool
}

func newRing(ps []Processor) *ring {
	r := &ring{}
	seen := map[string]bool{}
	for _, p := range ps {
		if p.ID == "" || seen[p.ID] {
			continue
		}
		seen[p.ID] = true
		r.nodes = append(r.nodes, ringNode{id: p.ID, h: nodeHash(p.ID), draining: p.Draining})
	}
	slices.SortFunc(r.nodes, func(a, b ringNode) int { return strings.Compare(a.id, b.id) })
	return r
}

// has reports whether id is a processor (draining or not).
func (r *ring) has(id []byte) bool {
	for i := range r.nodes {
		if r.nodes[i].id == string(id) {
			return true
		}
	}
	return false
}

// serves reports whether id is a processor, and may take fresh requests
// (it is not draining) when fresh is set.
func (r *ring) serves(id []byte, fresh bool) bool {
	for i := range r.nodes {
		if r.nodes[i].id == string(id) {
			return !fresh || !r.nodes[i].draining
		}
	}
	return false
}

// pick returns the node with the highest score for key; with fresh, the
// best node that is not draining, if there is one. ok is false for an
// empty ring.
func (r *ring) pick(key uint64, fresh bool) (id string, ok bool) {
	best, bestLive := -1, -1
	var bs, bls uint64
	for i := range r.nodes {
		s := mix64(key ^ r.nodes[i].h)
		if best < 0 || s > bs {
			best, bs = i, s
		}
		if !r.nodes[i].draining && (bestLive < 0 || s > bls) {
			bestLive, bls = i, s
		}
	}
	if best < 0 {
		return "", false
	}
	if fresh && bestLive >= 0 {
		return r.nodes[bestLive].id, true
	}
	return r.nodes[best].id, true
}

func (r *ring) ids() []string {
	out := make([]string, len(r.nodes))
	for i, n := range r.nodes {
		out[i] = n.id
	}
	return out
}

// Route returns the processor among ps that the messages of callID go to
// (fresh: a request that starts something, which a draining node does not
// take), as every dispatcher with that view of the cluster picks it.
func Route(ps []Processor, callID string, fresh bool) (string, bool) {
	r := newRing(ps)
	if n, k, ok := parseMarker([]byte(callID)); ok {
		if r.serves(n, fresh) {
			return string(n), true
		}
		return r.pick(k, fresh)
	}
	return r.pick(callIDKey([]byte(callID)), fresh)
}

// RouteByHash is where callID would go were it an ordinary Call-ID (not
// one naming its node): by the hash of its bytes.
func RouteByHash(ps []Processor, callID string, fresh bool) (string, bool) {
	return newRing(ps).pick(fnvHash([]byte(callID)), fresh)
}

// MarkedNode returns the node a Call-ID made by the switch names.
func MarkedNode(callID string) (string, bool) {
	n, _, ok := parseMarker([]byte(callID))
	return string(n), ok
}
