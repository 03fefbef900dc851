package node

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/internal/testkit"
	sipdispatch "github.com/troika-sip/troika/sipstack/dispatch"
)

// The [registrar] keepalive keys: defaults, "0" turning it off, and
// errors naming the key.
func TestKeepaliveConfig(t *testing.T) {
	base := soloConfig + "[registrar]\n"
	cases := []struct {
		name, text string
		want       time.Duration // the interval the SIP server gets
		timeout    time.Duration
		err        string
	}{
		{"defaults", "", 30 * time.Second, 5 * time.Second, ""},
		{"off", `keepalive_interval = "0"`, 0, 0, ""},
		{"short interval: the timeout fits in it", `keepalive_interval = "2s"`, 2 * time.Second, 2 * time.Second, ""},
		{"set", "keepalive_interval = \"20s\"\nkeepalive_timeout = \"3s\"\nkeepalive_failures = 5\nkeepalive_remove_unreachable = true", 20 * time.Second, 3 * time.Second, ""},
		{"too often", `keepalive_interval = "100ms"`, 0, 0, "registrar.keepalive_interval"},
		{"negative", `keepalive_interval = "-1s"`, 0, 0, "registrar.keepalive_interval"},
		{"timeout past the interval", "keepalive_interval = \"10s\"\nkeepalive_timeout = \"20s\"", 0, 0, "registrar.keepalive_timeout"},
		{"no failures", "keepalive_failures = -1", 0, 0, "registrar.keepalive_failures"},
		{"no rate", "keepalive_max_per_second = -1", 0, 0, "registrar.keepalive_max_per_second"},
	}
	for _, c := range cases {
		cfg, err := loadText(t, base+c.text+"\n")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want it to name %s", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		k := cfg.keepaliveConfig()
		if k.Interval != c.want || k.Timeout != c.timeout {
			t.Errorf("%s: interval %v timeout %v, want %v and %v", c.name, k.Interval, k.Timeout, c.want, c.timeout)
		}
		if c.name == "set" && (k.Failures != 5 || !k.RemoveUnreachable || k.MaxPerSecond != DefaultKeepaliveMaxPerSecond) {
			t.Errorf("set: %+v", k)
		}
		if sum := cfg.keepaliveSummary(); (k.Interval == 0) != strings.Contains(sum, "off") {
			t.Errorf("%s: troika agent --check says %q", c.name, sum)
		}
	}
}

// keepalivePhone is a phone on an unconnected UDP socket: it hears
// datagrams from any address, so a keepalive from a socket it did not
// register through would show.
type keepalivePhone struct {
	pc      *net.UDPConn
	ingress string // the node address it registered through
	mu      sync.Mutex
	pings   []receivedPing
}

type receivedPing struct {
	from, callID string
	at           time.Time
}

func (p *keepalivePhone) received() []receivedPing {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]receivedPing(nil), p.pings...)
}

// answerPings answers every OPTIONS with 200 OK, recording it, until pc
// is closed.
func (p *keepalivePhone) answerPings() {
	buf := make([]byte, 65536)
	for {
		n, from, err := p.pc.ReadFromUDP(buf)
		if err != nil {
			return
		}
		m, err := sip.ParseMessage(buf[:n])
		req, ok := m.(*sip.Request)
		if err != nil || !ok || req.Method != sip.OPTIONS {
			continue
		}
		p.mu.Lock()
		p.pings = append(p.pings, receivedPing{from: from.String(), callID: req.CallID().Value(), at: time.Now()})
		p.mu.Unlock()
		var b strings.Builder
		b.WriteString("SIP/2.0 200 OK\r\n")
		for _, h := range req.GetHeaders("Via") {
			fmt.Fprintf(&b, "Via: %s\r\n", h.Value())
		}
		fmt.Fprintf(&b, "From: %s\r\nTo: %s;tag=ph\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n",
			req.From().Value(), req.To().Value(), req.CallID().Value(), req.CSeq().Value())
		p.pc.WriteToUDP([]byte(b.String()), from)
	}
}

// registerFrom registers 1001 at pc's address through server, answering
// the MD5 challenge, and returns the final status.
func registerFrom(t *testing.T, pc *net.UDPConn, server, cid string) int {
	t.Helper()
	to, _ := net.ResolveUDPAddr("udp", server)
	return register1001(t, pc.LocalAddr().String(), server, cid, func(msg string) string {
		if _, err := pc.WriteToUDP([]byte(msg), to); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 65536)
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		defer pc.SetReadDeadline(time.Time{})
		for {
			n, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("REGISTER %s: no answer from %s: %v", cid, server, err)
			}
			if from.String() == server && strings.HasPrefix(string(buf[:n]), "SIP/2.0 ") {
				return string(buf[:n])
			}
		}
	})
}

// Three nodes on the real cluster link, each holding its own address;
// two phones register through each address (the dispatcher has their
// REGISTERs processed all over the cluster). Every phone gets its
// keepalives from the address it registered through, each from the node
// holding that address (the Call-ID names the node that sent it), about
// one per interval and never two pingers; each node pings its own two;
// each node's admin API shows reachability for the bindings it pings and
// names the pinging node for the others.
func TestKeepaliveEachBindingPingedByOneNode(t *testing.T) {
	const iv = time.Second
	dc := startDispatchNodesWith(t, func(c *Config) {
		d := iv
		c.Registrar.KeepaliveInterval = &d
		c.Registrar.KeepaliveTimeout = 500 * time.Millisecond
	})
	n1 := dc.nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dc.createAccount1001(t, ctx)

	var phones []*keepalivePhone
	for i, server := range dc.sip {
		for k := range 2 {
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.1")})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			if code := registerFrom(t, pc, server, fmt.Sprintf("ka-%d-%d@phone", i, k)); code != 200 {
				t.Fatalf("REGISTER through %s: %d", server, code)
			}
			p := &keepalivePhone{pc: pc, ingress: server}
			go p.answerPings()
			phones = append(phones, p)
		}
	}
	testkit.WaitFor(t, 20*time.Second, "three keepalives at every phone", func() bool {
		for _, p := range phones {
			if len(p.received()) < 3 {
				return false
			}
		}
		return true
	})

	// The admin API of d1: its own bindings with their reachability, the
	// others with the node that pings them.
	regs, err := admin.NewClient(n1.AdminAddr(), "dispatch-test-token-0123456789").Registrations(ctx, "1001")
	if err != nil || len(regs) != 6 {
		t.Fatalf("registrations %+v, %v", regs, err)
	}
	for _, r := range regs {
		holder := fmt.Sprintf("d%d", indexOfString(dc.sip, strings.TrimPrefix(r.Ingress, "udp:"))+1)
		if r.KeepaliveNode != holder {
			t.Errorf("binding through %s: keepalive_node %q, want %s", r.Ingress, r.KeepaliveNode, holder)
		}
		mine := holder == "d1"
		if mine != (r.Reachable != nil && *r.Reachable && r.LastSeen != nil) || !mine && (r.Reachable != nil || r.LastSeen != nil) {
			t.Errorf("d1's view of a binding through %s (pinged by %s): reachable %s, last_seen %s", r.Ingress, holder, orNil(r.Reachable), orNil(r.LastSeen))
		}
	}
	for i, n := range dc.nodes {
		if got := metric(t, n, "troika_sip_keepalive_bindings", ""); got != 2 {
			t.Errorf("d%d pings %v bindings, want its 2", i+1, got)
		}
		if got := metric(t, n, "troika_sip_keepalive_total", `result="ok"`); got < 6 {
			t.Errorf("d%d counted %v answers, want at least 3 for each of its 2", i+1, got)
		}
	}

	for _, p := range phones {
		p.pc.Close()
	}
	for _, p := range phones {
		pings := p.received()
		holder := fmt.Sprintf("d%d", indexOfString(dc.sip, p.ingress)+1)
		ids := map[string]bool{}
		for _, g := range pings {
			ids[g.callID] = true
			if g.from != p.ingress {
				t.Errorf("phone registered through %s got a keepalive from %s", p.ingress, g.from)
			}
			if node, ok := sipdispatch.MarkedNode(g.callID); !ok || node != holder {
				t.Errorf("phone registered through %s (held by %s) got a keepalive from node %q", p.ingress, holder, node)
			}
		}
		span := pings[len(pings)-1].at.Sub(pings[0].at)
		if max := int(span/iv) + 2; len(ids) > max {
			t.Errorf("phone through %s got %d keepalives in %v: more than one pinger (at most %d expected)", p.ingress, len(ids), span, max)
		}
		t.Logf("phone through %s: %d keepalives in %v, all from %s", p.ingress, len(ids), span.Round(time.Millisecond), holder)
	}
}

func indexOfString(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func orNil[T any](p *T) string {
	if p == nil {
		return "absent"
	}
	return fmt.Sprint(*p)
}
