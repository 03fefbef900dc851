package dispatch

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/troika-sip/troika/sipstack/sipmsg"
)

func procs(ids ...string) []Processor {
	var out []Processor
	for _, id := range ids {
		out = append(out, Processor{ID: id})
	}
	return out
}

// Rendezvous hashing: the same view picks the same node whatever the
// order it is given in; removing a node moves only the keys it had (each
// to some other node), adding one moves keys only to it; keys spread
// evenly.
func TestRendezvousStability(t *testing.T) {
	const keys = 20000
	all := newRing(procs("sip1", "sip2", "sip3", "sip4"))
	shuffled := newRing(procs("sip3", "sip1", "sip4", "sip2", "sip1"))
	without := newRing(procs("sip1", "sip2", "sip4"))
	count := map[string]int{}
	moved := 0
	for i := range keys {
		k := callIDKey(fmt.Appendf(nil, "%d-%x@host", i, i*7919))
		a, _ := all.pick(k, false)
		if b, _ := shuffled.pick(k, false); a != b {
			t.Fatalf("key %d: %s with one order, %s with another", i, a, b)
		}
		count[a]++
		c, _ := without.pick(k, false)
		if a == "sip3" {
			moved++
			if c == "sip3" {
				t.Fatalf("key %d still on the removed node", i)
			}
		} else if c != a {
			t.Fatalf("key %d moved from %s to %s though its node stayed", i, a, c)
		}
	}
	for id, n := range count {
		if share := float64(n) / keys; share < 0.22 || share > 0.28 {
			t.Errorf("node %s has %.1f%% of the keys, want about 25%%", id, 100*share)
		}
	}
	if moved != count["sip3"] {
		t.Fatalf("moved %d, sip3 had %d", moved, count["sip3"])
	}
	if _, ok := newRing(nil).pick(1, false); ok {
		t.Fatal("an empty ring picked a node")
	}
}

// A draining node keeps what hashes to it, except fresh work.
func TestRendezvousDraining(t *testing.T) {
	r := newRing([]Processor{{ID: "a"}, {ID: "b", Draining: true}, {ID: "c"}})
	live := newRing(procs("a", "c"))
	onB := 0
	for i := range 3000 {
		k := callIDKey(fmt.Appendf(nil, "k%d", i))
		old, _ := r.pick(k, false)
		fresh, _ := r.pick(k, true)
		want, _ := live.pick(k, false)
		if fresh != want {
			t.Fatalf("fresh work for key %d went to %s, want %s (the best node not draining)", i, fresh, want)
		}
		if old == "b" {
			onB++
		} else if old != fresh {
			t.Fatalf("key %d: %s, fresh %s", i, old, fresh)
		}
	}
	if onB == 0 {
		t.Fatal("the draining node kept no keys")
	}
	all := newRing([]Processor{{ID: "x", Draining: true}})
	if id, ok := all.pick(5, true); !ok || id != "x" {
		t.Fatalf("only a draining node: got %q %v", id, ok)
	}
}

func TestMarkedCallID(t *testing.T) {
	caller := "a84b4c76e66710@pc33.atlanta.com"
	key := callIDKey([]byte(caller))
	for _, node := range []string{"sip1", "n.2", "node_3-x", strings.Repeat("z", 64)} {
		cid := markedCallID(node, key)
		if len(cid) > sipmsg.MaxCallID || !sipmsg.SafeText(cid) || strings.ContainsAny(cid, " \t") {
			t.Fatalf("%q is not a valid Call-ID", cid)
		}
		n, k, ok := parseMarker([]byte(cid))
		if !ok || string(n) != node || k != key || callIDKey([]byte(cid)) != key {
			t.Fatalf("%q: parsed %q %x %v, want %q %x", cid, n, k, ok, node, key)
		}
	}
	for _, bad := range []string{"tk1.", "tk1.0123456789abcdef.ABCDEFGHIJKLMNOPQRST.", "tk1.0123456789abcdeF.ABCDEFGHIJKLMNOPQRST.n",
		"tk1.0123456789abcdef-ABCDEFGHIJKLMNOPQRST.n", "tk2.0123456789abcdef.ABCDEFGHIJKLMNOPQRST.n", "plain@host"} {
		if _, _, ok := parseMarker([]byte(bad)); ok {
			t.Errorf("%q parsed as a marked Call-ID", bad)
		}
	}
}

// The dispatcher's routing: a marked Call-ID goes to its node while it is
// a processor, else by its key, like its caller's Call-ID; other
// Call-IDs by their hash; unroutable messages stay here.
func TestDispatchRoute(t *testing.T) {
	d := &Dispatcher{self: "a"}
	msg := func(cid string, extra string) []byte {
		return []byte("BYE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n" + extra + "Call-ID: " + cid + "\r\nCSeq: 2 BYE\r\n\r\n")
	}
	if n, remote := d.route(msg("c1", "")); remote || n != "a" {
		t.Fatalf("no processors known: %s %v", n, remote)
	}
	d.ring.Store(newRing(procs("a", "b", "c")))
	caller := "caller-1@phone"
	want, _ := d.ring.Load().pick(callIDKey([]byte(caller)), false)
	if n, remote := d.route(msg(caller, "To: <sip:x>;tag=1\r\n")); n != want || remote != (want != "a") {
		t.Fatalf("caller Call-ID: %s %v, want %s", n, remote, want)
	}
	callee := markedCallID("c", callIDKey([]byte(caller)))
	if n, remote := d.route(msg(callee, "")); n != "c" || !remote {
		t.Fatalf("marked Call-ID of live node c: %s %v", n, remote)
	}
	d.ring.Store(newRing(procs("a", "b")))
	want, _ = d.ring.Load().pick(callIDKey([]byte(caller)), false)
	if n, _ := d.route(msg(callee, "")); n != want {
		t.Fatalf("marked Call-ID of a gone node: %s, want %s (where its caller's Call-ID goes)", n, want)
	}
	if n, remote := d.route([]byte("\r\n\r\n")); remote || n != "a" {
		t.Fatalf("keepalive: %s %v", n, remote)
	}
}

func TestDispatchFrameRoundTrip(t *testing.T) {
	for _, peer := range []string{"192.0.2.7:5062", "[2001:db8::1]:5060"} {
		f := dispatchFrame{kind: frameIn, stamp: 12345, socket: "udp:198.51.100.10:5060", peer: netip.MustParseAddrPort(peer), payload: []byte("REGISTER ...")}
		b := appendFrame(nil, f)
		if len(b) > frameSize(f) {
			t.Fatalf("frame of %d bytes over its size bound %d", len(b), frameSize(f))
		}
		g, err := decodeFrame(b)
		if err != nil || g.kind != f.kind || g.stamp != f.stamp || g.socket != f.socket || g.peer != f.peer || string(g.payload) != string(f.payload) {
			t.Fatalf("round trip: %+v %v", g, err)
		}
	}
	for _, name := range []string{"sctp:1.2.3.4:5060", "udp:0.0.0.0:5060", "udp:1.2.3.4:0", "udp:[::ffff:1.2.3.4]:5060", "udp:01.2.3.4:5060", "udp:h:5060"} {
		b := appendFrame(nil, dispatchFrame{kind: frameOut, socket: name, peer: netip.MustParseAddrPort("1.1.1.1:1"), payload: []byte("x")})
		if _, err := decodeFrame(b); err == nil {
			t.Errorf("socket name %q accepted", name)
		}
	}
}

// FuzzDispatchFrame: decoding any bytes never panics, and what decodes
// encodes back to the same bytes. Seeds: testdata/fuzz/FuzzDispatchFrame.
func FuzzDispatchFrame(f *testing.F) {
	f.Add(appendFrame(nil, dispatchFrame{kind: frameIn, stamp: 1, socket: "udp:10.0.0.1:5060", peer: netip.MustParseAddrPort("10.0.0.9:5062"), payload: []byte("OPTIONS")}))
	f.Add(appendFrame(nil, dispatchFrame{kind: frameOut, stamp: -1, socket: "udp:[::1]:5070", peer: netip.MustParseAddrPort("[::2]:9"), payload: []byte("SIP/2.0 200 OK\r\n\r\n")}))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := decodeFrame(data)
		if err != nil {
			return
		}
		if got := appendFrame(nil, fr); string(got) != string(data) {
			t.Fatalf("re-encoded %x, was %x", got, data)
		}
	})
}
