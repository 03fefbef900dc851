//go:build linux

package cluster

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The link's connections, dialed or accepted (wrapped by the mux), carry
// the kernel's user timeout, so a silently dead peer is dropped.
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
	for name, c := range map[string]net.Conn{"dialed": dialed, "accepted, wrapped": &trackedConn{Conn: accepted}} {
		setUserTimeout(c, 5*time.Second)
		tcp := dialed.(*net.TCPConn)
		if name != "dialed" {
			tcp = accepted.(*net.TCPConn)
		}
		raw, err := tcp.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var gerr error
		if err := raw.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT) }); err != nil {
			t.Fatal(err)
		}
		if gerr != nil || got != 5000 {
			t.Errorf("%s: TCP_USER_TIMEOUT %d ms (%v), want 5000", name, got, gerr)
		}
	}
}
