//go:build linux

package chaos

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/netns"
)

// The test network behaves like a real Ethernet segment: when an address
// moves from n1 to n2 the client keeps sending to n1's MAC address (its
// ARP cache entry stays valid for 15-45 s) until n2 announces the address
// with a gratuitous ARP. So a VIP failover test in these namespaces cannot
// pass without the gratuitous ARPs the VIP code must send. Figures are
// logged, not asserted, except that a gratuitous ARP redirects the client.
func TestARPCacheOnTheBridge(t *testing.T) {
	c := newCluster(t, Options{NoStart: true})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	for _, h := range []*Host{&n1.Host, &n2.Host} {
		udpEcho(t, h)
	}
	vip := c.SpareAddr(0)
	if err := n1.AddAddr(vip); err != nil {
		t.Fatal(err)
	}
	if d, who := probeUDP(t, c.Client, vip, "n1", 5*time.Second); who != "n1" {
		t.Fatalf("the client does not reach %s on n1 (%s answered)", vip, who)
	} else {
		t.Logf("client reaches %s on n1 in %v", vip, d)
	}
	t.Logf("client's neighbour table: %s", neighbours(t, c.Client))

	if err := n1.DelAddr(vip); err != nil {
		t.Fatal(err)
	}
	if err := n2.AddAddr(vip); err != nil {
		t.Fatal(err)
	}
	if _, who := probeUDP(t, c.Client, vip, "n2", time.Second); who == "n2" {
		t.Logf("without a gratuitous ARP the client found n2 within 1 s (its ARP entry had expired)")
	} else {
		t.Logf("without a gratuitous ARP the client still does not reach n2 after 1 s: %s", neighbours(t, c.Client))
	}
	sendGratuitousARP(t, &n2.Host, vip)
	c.Mark("gratuitous ARP from n2")
	d, who := probeUDP(t, c.Client, vip, "n2", 5*time.Second)
	if who != "n2" {
		t.Fatalf("after n2's gratuitous ARP the client still does not reach %s on n2: %s", vip, neighbours(t, c.Client))
	}
	t.Logf("after n2's gratuitous ARP the client reaches n2 in %v: %s", d, neighbours(t, c.Client))
}

// udpEcho answers every datagram on :9999 in h with "NAME:payload".
func udpEcho(t *testing.T, h *Host) {
	t.Helper()
	pc, err := h.ListenPacket("udp4", ":9999")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		b := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(h.Name+":"+string(b[:n])), from)
		}
	}()
}

// probeUDP sends to addr:9999 from h every 50 ms until want answers or
// timeout passes; it returns the time taken and who answered last.
func probeUDP(t *testing.T, h *Host, addr netip.Addr, want string, timeout time.Duration) (time.Duration, string) {
	t.Helper()
	pc, err := h.ListenPacket("udp4", net.JoinHostPort(h.Addr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst := &net.UDPAddr{IP: addr.AsSlice(), Port: 9999}
	b := make([]byte, 512)
	start := time.Now()
	who := ""
	for time.Since(start) < timeout {
		pc.WriteTo([]byte("ping"), dst)
		pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, _, err := pc.ReadFrom(b); err == nil {
			who, _, _ = strings.Cut(string(b[:n]), ":")
			if who == want {
				return time.Since(start), who
			}
		}
	}
	return time.Since(start), who
}

func neighbours(t *testing.T, h *Host) string {
	out, err := run(context.Background(), "ip", "-n", h.NS, "neigh")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(out), " ")
}

// sendGratuitousARP broadcasts one gratuitous ARP request (sender and
// target address a, sender MAC h's eth0) from h.
func sendGratuitousARP(t *testing.T, h *Host, a netip.Addr) {
	t.Helper()
	const ethPARP = 0x0806
	htons := func(v uint16) uint16 { return v<<8 | v>>8 }
	var ifc *net.Interface
	fd := -1
	err := netns.Do(h.NS, func() error {
		var err error
		if ifc, err = net.InterfaceByName("eth0"); err != nil {
			return err
		}
		fd, err = syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, int(htons(ethPARP)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	bcast := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	ip4 := a.As4()
	pkt := make([]byte, 42)
	copy(pkt[0:6], bcast)
	copy(pkt[6:12], ifc.HardwareAddr)
	binary.BigEndian.PutUint16(pkt[12:14], ethPARP)
	binary.BigEndian.PutUint16(pkt[14:16], 1)      // Ethernet
	binary.BigEndian.PutUint16(pkt[16:18], 0x0800) // IPv4
	pkt[18], pkt[19] = 6, 4
	binary.BigEndian.PutUint16(pkt[20:22], 1) // request
	copy(pkt[22:28], ifc.HardwareAddr)
	copy(pkt[28:32], ip4[:])
	copy(pkt[38:42], ip4[:])
	sa := &syscall.SockaddrLinklayer{Protocol: htons(ethPARP), Ifindex: ifc.Index, Halen: 6}
	copy(sa.Addr[:], bcast)
	if err := syscall.Sendto(fd, pkt, 0, sa); err != nil {
		t.Fatal(err)
	}
}
