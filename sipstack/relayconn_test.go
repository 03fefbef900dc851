package sipstack

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/troika-sip/troika/sipstack/transport"
)

// The dispatcher spike (docs/dispatch.md): a REGISTER handed to the stack
// through a RelayPacketConn, as a dispatcher on another node would hand
// it, is challenged and then registered; every answer goes to the relay's
// Send addressed to the phone's real address, and the binding records the
// relayed socket (the dispatcher's real address) as its ingress and the
// phone's address as its source.
func TestRelayPacketConnCarriesRegistrations(t *testing.T) {
	ts := startServer(t, nil, nil)
	phoneAddr := &net.UDPAddr{IP: net.ParseIP("192.0.2.7"), Port: 5062} // never dialled: only relayed
	vip := &net.UDPAddr{IP: net.ParseIP("198.51.100.10"), Port: 5060}
	out := make(chan []byte, 10)
	rc := transport.NewRelayPacketConn(vip, 16, func(p []byte, to net.Addr) error {
		if to.String() != phoneAddr.String() {
			t.Errorf("answer sent to %s, want the phone at %s", to, phoneAddr)
		}
		out <- p
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.ServeUDP(ctx, rc) }()
	defer func() {
		cancel()
		rc.Close()
		<-done
	}()
	server := vip.String()
	exchange := func(msg string) *sip.Response {
		t.Helper()
		msg = strings.ReplaceAll(msg, "@LOCAL@", phoneAddr.String())
		if err := rc.Deliver([]byte(msg), phoneAddr); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-out:
			m, err := sip.ParseMessage(p)
			if err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
			return m.(*sip.Response)
		case <-time.After(5 * time.Second):
			t.Fatal("no answer through the relay")
			return nil
		}
	}
	contact := "Contact: <sip:1001@" + phoneAddr.String() + ">\r\nExpires: 600\r\n"
	chal := exchange(rawRegister(server, "1001", "relay-1", 1, "UDP", contact))
	wantStatus(t, chal, 401, "")
	res := exchange(rawRegister(server, "1001", "relay-1", 2, "UDP", contact+rawAuth(t, chal, "MD5", "sip:"+server, "1001", "pw1001")))
	wantStatus(t, res, 200, "")
	bs := ts.st.Bindings("1001", time.Now().UnixMilli())
	if len(bs) != 1 || bs[0].Ingress != "udp:"+vip.String() || bs[0].Source != phoneAddr.String() {
		t.Fatalf("bindings %+v", bs)
	}
}
