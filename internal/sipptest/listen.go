package sipptest

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// WaitListening waits until a socket of network ("udp" or "tcp") is
// bound to ip:port on this host (a SIPp server started in the
// background), reading /proc/net, so as not to take the port itself. It
// fails the test after 10 s.
func WaitListening(t testing.TB, network, ip string, port int) {
	t.Helper()
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		t.Fatalf("WaitListening: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !bound(network, addr, port) {
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s %s:%d after 10 s", network, ip, port)
		}
		<-tick.C
	}
}

// bound reports whether /proc/net/{network}{,6} lists a socket bound to
// addr:port (or to the unspecified address on port).
func bound(network string, addr netip.Addr, port int) bool {
	var tables strings.Builder
	for _, f := range []string{"/proc/net/" + network, "/proc/net/" + network + "6"} {
		if b, err := os.ReadFile(f); err == nil {
			tables.Write(b)
		}
	}
	return BoundIn(tables.String(), addr, port)
}

// BoundIn reports whether tables, the text of /proc/net/udp, udp6, tcp or
// tcp6 (of any network namespace), lists a socket bound to addr:port (or
// to the unspecified address on port).
func BoundIn(tables string, addr netip.Addr, port int) bool {
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(strings.NewReader(tables))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || !strings.HasSuffix(fields[1], want) {
			continue
		}
		if ip, ok := procIP(strings.TrimSuffix(fields[1], want)); ok && (ip == addr.Unmap() || ip.IsUnspecified()) {
			return true
		}
	}
	return false
}

// procIP decodes an address of /proc/net: IPv4 as 8 hex digits of the
// little-endian word, IPv6 as four such words.
func procIP(h string) (netip.Addr, bool) {
	var b []byte
	for i := 0; i+8 <= len(h); i += 8 {
		var w uint32
		if _, err := fmt.Sscanf(h[i:i+8], "%08X", &w); err != nil {
			return netip.Addr{}, false
		}
		b = append(b, byte(w), byte(w>>8), byte(w>>16), byte(w>>24))
	}
	ip, ok := netip.AddrFromSlice(b)
	return ip.Unmap(), ok
}
