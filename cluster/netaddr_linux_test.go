//go:build linux

package cluster

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/troika-sip/troika/internal/netns"
	"github.com/troika-sip/troika/internal/testkit"
)

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

// The real address operations in a pair of throwaway namespaces joined by
// a veth: add with a lifetime, renew, list, remove; the announcements
// arrive on the other end as a gratuitous ARP request (sender = target =
// the address) and an unsolicited neighbour advertisement (override flag,
// target link-layer address), both from the interface's MAC address.
// Needs root; skipped otherwise.
func TestNetlinkAddrsInNamespace(t *testing.T) {
	t.Parallel() // mostly waits for the kernel
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	a, b := fmt.Sprintf("trkaddr%d-a", os.Getpid()), fmt.Sprintf("trkaddr%d-b", os.Getpid())
	ipCmd(t, "netns", "add", a)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", a).Run() })
	ipCmd(t, "netns", "add", b)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", b).Run() })
	ipCmd(t, "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b)
	ipCmd(t, "-n", a, "link", "set", "eth0", "up")
	ipCmd(t, "-n", b, "link", "set", "eth0", "up")
	ipCmd(t, "-n", a, "addr", "add", "10.99.7.1/24", "dev", "eth0")

	// Capture on b's end.
	var fd int
	if err := netns.Do(b, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)

	v4 := netip.MustParsePrefix("10.99.7.100/24")
	v6 := netip.MustParsePrefix("2001:db8:7::100/128")
	var mac []byte
	err := netns.Do(a, func() error {
		ops, err := NewNetlinkAddrs("eth0")
		if err != nil {
			return err
		}
		mac = ops.(*netlinkAddrs).link.Attrs().HardwareAddr
		for _, p := range []netip.Prefix{v4, v6} {
			if err := ops.Add(p, time.Second); err != nil {
				return err
			}
			if err := ops.Add(p, 2*time.Second); err != nil { // renewal
				return err
			}
		}
		list, err := ops.List()
		if err != nil {
			return err
		}
		if !slices.Contains(list, v4) || !slices.Contains(list, v6) {
			return fmt.Errorf("list %v lacks %s or %s", list, v4, v6)
		}
		if err := ops.Announce(v4.Addr()); err != nil {
			return err
		}
		return ops.Announce(v6.Addr())
	})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "-n", a, "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	t.Logf("%s", out)

	var sawARP, sawNA bool
	buf := make([]byte, 2048)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && !(sawARP && sawNA) {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil || n < 14 {
			continue
		}
		f := buf[:n]
		switch binary.BigEndian.Uint16(f[12:14]) {
		case unix.ETH_P_ARP:
			if n >= 42 && binary.BigEndian.Uint16(f[20:22]) == 1 && string(f[22:28]) == string(mac) {
				ip4 := v4.Addr().As4()
				if string(f[28:32]) == string(ip4[:]) && string(f[38:42]) == string(ip4[:]) && string(f[0:6]) == "\xff\xff\xff\xff\xff\xff" {
					sawARP = true
				}
			}
		case unix.ETH_P_IPV6:
			ip6 := f[14:]
			if len(ip6) >= 40+32 && ip6[6] == unix.IPPROTO_ICMPV6 && ip6[7] == 255 {
				icmp := ip6[40:]
				target := v6.Addr().As16()
				if icmp[0] == 136 && icmp[4]&0x20 != 0 && string(icmp[8:24]) == string(target[:]) &&
					icmp[24] == 2 && string(icmp[26:32]) == string(mac) && string(ip6[8:24]) == string(target[:]) {
					sawNA = true
				}
			}
		}
	}
	if !sawARP || !sawNA {
		t.Fatalf("announcements seen on the other end: gratuitous ARP %v, unsolicited NA %v", sawARP, sawNA)
	}

	// The kernel lifetime removes an address that is no longer renewed
	// (here 2 s after the renewal).
	if err := netns.Do(a, func() error {
		ops, _ := NewNetlinkAddrs("eth0")
		return ops.Del(v6)
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testkit.WaitFor(t, 5*time.Second, fmt.Sprintf("the kernel to remove %s after its last renewal (2 s lifetime)", v4), func() bool {
		var list []netip.Prefix
		netns.Do(a, func() error {
			ops, _ := NewNetlinkAddrs("eth0")
			list, _ = ops.List()
			return nil
		})
		return !slices.Contains(list, v4)
	})
	t.Logf("the kernel removed %s %s after its last renewal (valid lifetime 2 s)", v4, time.Since(start).Round(10*time.Millisecond))
	// Removing an address already gone is not an error.
	if err := netns.Do(a, func() error {
		ops, _ := NewNetlinkAddrs("eth0")
		return ops.Del(v4)
	}); err != nil {
		t.Fatal(err)
	}
}
