package testkit

import (
	"net"
	"strconv"
	"testing"
)

// FreePort returns a port free for both UDP and TCP on ip (a SIP server
// listens on both), failing the test when 50 tries find none.
func FreePort(t testing.TB, ip string) int {
	t.Helper()
	for range 50 {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		pc.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatalf("no port free for both UDP and TCP on %s", ip)
	return 0
}
