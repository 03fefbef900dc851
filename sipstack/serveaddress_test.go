package sipstack

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// The ownership feed: ServeAddress opens an address's sockets (main ports
// plus an alias's extra ports), reconciles them when the ports change,
// and CloseAddress closes them; phones register through a fed address
// and are recorded with it as ingress. A configured address cannot be
// fed, and the alias reconcile loop leaves fed addresses alone.
func TestServeAddressFeed(t *testing.T) {
	t.Parallel()
	st := newTestState(t, false)
	ts := startServer(t, st, nil)
	vip := testIP()
	if err := ts.ServeAddress(vip, nil); err != nil {
		t.Fatal(err)
	}
	main := socketsOn(ts, vip)
	if len(main) != 2 { // udp and tcp on the main (test) ports
		t.Fatalf("sockets on the fed address: %v", ts.Sockets())
	}
	p := newPhone(t, "UDP", strings.TrimPrefix(ts.addr(t, "udp", vip), "udp:"), "1001", "pw1001")
	wantStatus(t, p.register([]string{"<sip:1001@10.0.0.1>"}), 200, "OK")
	if bs := st.Bindings("1001", time.Now().UnixMilli()); len(bs) != 1 || !strings.Contains(bs[0].Ingress, vip) {
		t.Errorf("bindings %+v", bs)
	}

	alias := testIP()
	port := testkit.FreePort(t, alias)
	if err := ts.ServeAddress(alias, &fsm.AliasPorts{UDP: []int{port}}); err != nil {
		t.Fatal(err)
	}
	if !contains(ts.Sockets(), fmt.Sprintf("udp:%s:%d", alias, port)) || len(socketsOn(ts, alias)) != 3 {
		t.Fatalf("alias sockets: %v", ts.Sockets())
	}
	// New ports: the old extra socket closes, the new one opens.
	port2 := testkit.FreePort(t, alias)
	if err := ts.ServeAddress(alias, &fsm.AliasPorts{TCP: []int{port2}}); err != nil {
		t.Fatal(err)
	}
	if contains(ts.Sockets(), fmt.Sprintf("udp:%s:%d", alias, port)) || !contains(ts.Sockets(), fmt.Sprintf("tcp:%s:%d", alias, port2)) {
		t.Fatalf("after the port change: %v", ts.Sockets())
	}
	ts.CloseAddress(alias)
	if s := socketsOn(ts, alias); len(s) != 0 {
		t.Fatalf("after CloseAddress: %v", s)
	}
	ts.CloseAddress(alias) // a no-op
	if err := ts.ServeAddress(ts.cfg.Addresses[0], nil); err == nil {
		t.Error("a configured address was accepted as a fed one")
	}
	ts.CloseAddress(vip)
	if s := socketsOn(ts, vip); len(s) != 0 {
		t.Fatalf("after CloseAddress: %v", s)
	}
}
