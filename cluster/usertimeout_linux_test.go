//go:build linux

package cluster

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The link's connections, dialed or accepted (wrapped by the mux, and
// by TLS), carry the kernel's user timeout, so a silently dead peer is
// dropped.
func TestSetUserTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dialed, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()
	accepted, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	for i, tc := range []struct {
		name string
		c    net.Conn
		tcp  net.Conn
	}{
		{"dialed", dialed, dialed},
		{"accepted, wrapped", &trackedConn{Conn: accepted}, accepted},
		{"accepted, under TLS", tls.Server(&prefixConn{Conn: &trackedConn{Conn: accepted}}, &tls.Config{}), accepted},
	} {
		want := 5000 + i // each case sets its own value
		setUserTimeout(tc.c, time.Duration(want)*time.Millisecond)
		raw, err := tc.tcp.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var gerr error
		if err := raw.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT) }); err != nil {
			t.Fatal(err)
		}
		if gerr != nil || got != want {
			t.Errorf("%s: TCP_USER_TIMEOUT %d ms (%v), want %d", tc.name, got, gerr, want)
		}
	}
}
