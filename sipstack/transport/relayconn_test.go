package transport

import (
	"net"
	"testing"
	"time"
)

func TestRelayPacketConnReadDeadlineAndClose(t *testing.T) {
	rc := NewRelayPacketConn(&net.UDPAddr{}, 1, func([]byte, net.Addr) error { return nil })
	rc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := rc.ReadFrom(make([]byte, 10)); err == nil {
		t.Fatal("read past its deadline")
	}
	rc.SetReadDeadline(time.Time{})
	if err := rc.Deliver([]byte("x"), &net.UDPAddr{}); err != nil {
		t.Fatal(err)
	}
	if err := rc.Deliver([]byte("y"), &net.UDPAddr{}); err != ErrRelayFull {
		t.Fatalf("a full queue: %v", err)
	}
	rc.Close()
	if err := rc.Deliver([]byte("z"), &net.UDPAddr{}); err == nil {
		t.Fatal("delivered after close")
	}
}
