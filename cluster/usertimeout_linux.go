//go:build linux

package cluster

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeout makes the kernel drop a connection whose sent data (or
// keepalive probe) stays unacknowledged for d: a peer that died without a
// FIN (power lost, cut off) is noticed by the writer, which reconnects
// instead of queueing into a dead socket, and by the reader, which frees
// the connection.
func setUserTimeout(c net.Conn, d time.Duration) {
	tcp, ok := netConn(c).(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
}
