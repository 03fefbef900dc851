//go:build linux

package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netlinkAddrs manages addresses on one interface through netlink and
// announces them with gratuitous ARP (IPv4) or unsolicited neighbour
// advertisements (IPv6). It needs CAP_NET_ADMIN (addresses) and
// CAP_NET_RAW (announcements).
type netlinkAddrs struct {
	iface string
	label string // IPv4 label, "eth0:troika", so `ip addr` shows who added it

	mu   sync.Mutex
	link netlink.Link
}

// NewNetlinkAddrs returns the address operations for the named interface,
// which must exist.
func NewNetlinkAddrs(iface string) (AddrOps, error) {
	a := &netlinkAddrs{iface: iface}
	if l := iface + ":troika"; len(l) < unix.IFNAMSIZ {
		a.label = l
	}
	if _, err := a.getLink(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *netlinkAddrs) getLink() (netlink.Link, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.link != nil {
		return a.link, nil
	}
	l, err := netlink.LinkByName(a.iface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", a.iface, err)
	}
	a.link = l
	return l, nil
}

// forgetLink makes the next call look the interface up again (it may have
// been recreated).
func (a *netlinkAddrs) forgetLink() {
	a.mu.Lock()
	a.link = nil
	a.mu.Unlock()
}

func (a *netlinkAddrs) nlAddr(p netip.Prefix, lifetime time.Duration) *netlink.Addr {
	ip := p.Addr()
	n := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(p.Bits(), ip.BitLen())}}
	if ip.Is4() {
		n.Label = a.label
	} else {
		// Usable at once: duplicate address detection would keep it
		// tentative (unusable) for a second or more.
		n.Flags = unix.IFA_F_NODAD
	}
	if lifetime > 0 {
		secs := int(max(lifetime/time.Second, 1))
		n.ValidLft, n.PreferedLft = secs, secs
	}
	return n
}

// Add adds p to the interface, or renews its lifetime if it is there.
func (a *netlinkAddrs) Add(p netip.Prefix, lifetime time.Duration) error {
	l, err := a.getLink()
	if err != nil {
		return err
	}
	if err := netlink.AddrReplace(l, a.nlAddr(p, lifetime)); err != nil {
		if errors.Is(err, unix.ENODEV) {
			a.forgetLink()
		}
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("add %s to %s: %w (needs CAP_NET_ADMIN: see deploy/troika.service)", p, a.iface, err)
		}
		return fmt.Errorf("add %s to %s: %w", p, a.iface, err)
	}
	return nil
}

// Del removes p from the interface; an address already gone is not an
// error.
func (a *netlinkAddrs) Del(p netip.Prefix) error {
	l, err := a.getLink()
	if err != nil {
		return err
	}
	if err := netlink.AddrDel(l, a.nlAddr(p, 0)); err != nil {
		if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if errors.Is(err, unix.ENODEV) {
			a.forgetLink()
		}
		return fmt.Errorf("remove %s from %s: %w", p, a.iface, err)
	}
	return nil
}

// List returns the addresses on the interface.
func (a *netlinkAddrs) List() ([]netip.Prefix, error) {
	l, err := a.getLink()
	if err != nil {
		return nil, err
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", a.iface, err)
	}
	out := make([]netip.Prefix, 0, len(addrs))
	for _, x := range addrs {
		ip, ok := netip.AddrFromSlice(x.IP)
		if !ok {
			continue
		}
		ones, _ := x.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

// Announce sends one gratuitous ARP request (IPv4) or unsolicited
// neighbour advertisement (IPv6) for ip from the interface, so that hosts
// on the segment point ip at this interface's MAC address.
func (a *netlinkAddrs) Announce(ip netip.Addr) error {
	l, err := a.getLink()
	if err != nil {
		return err
	}
	attrs := l.Attrs()
	mac := attrs.HardwareAddr
	if len(mac) != 6 {
		return fmt.Errorf("announce %s: interface %s has no Ethernet address", ip, a.iface)
	}
	if ip.Is4() {
		return sendGratuitousARP(attrs.Index, mac, ip)
	}
	return sendUnsolicitedNA(attrs.Index, mac, ip)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sendGratuitousARP broadcasts an ARP request whose sender and target
// address are both ip (RFC 5227's ARP announcement): every host updates
// an existing cache entry for ip to mac. (Linux does not create entries
// from it unless arp_accept is set, which is what a failover needs: the
// hosts that talk to ip have an entry.)
func sendGratuitousARP(ifindex int, mac net.HardwareAddr, ip netip.Addr) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("gratuitous ARP for %s: packet socket (needs CAP_NET_RAW): %w", ip, err)
	}
	defer unix.Close(fd)
	bcast := [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	ip4 := ip.As4()
	pkt := make([]byte, 42)
	copy(pkt[0:6], bcast[:])
	copy(pkt[6:12], mac)
	binary.BigEndian.PutUint16(pkt[12:14], unix.ETH_P_ARP)
	binary.BigEndian.PutUint16(pkt[14:16], 1)             // hardware: Ethernet
	binary.BigEndian.PutUint16(pkt[16:18], unix.ETH_P_IP) // protocol: IPv4
	pkt[18], pkt[19] = 6, 4                               // address lengths
	binary.BigEndian.PutUint16(pkt[20:22], 1)             // request
	copy(pkt[22:28], mac)                                 // sender MAC
	copy(pkt[28:32], ip4[:])                              // sender IP
	copy(pkt[32:38], []byte{0, 0, 0, 0, 0, 0})            // target MAC: unknown
	copy(pkt[38:42], ip4[:])                              // target IP = sender IP
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifindex, Halen: 6}
	copy(sa.Addr[:], bcast[:])
	if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
		return fmt.Errorf("gratuitous ARP for %s: %w", ip, err)
	}
	return nil
}

// sendUnsolicitedNA multicasts a neighbour advertisement for ip to all
// nodes (ff02::1) with the override flag and ip's link-layer address
// (RFC 4861 §7.2.6), from ip itself.
func sendUnsolicitedNA(ifindex int, mac net.HardwareAddr, ip netip.Addr) error {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return fmt.Errorf("neighbour advertisement for %s: raw socket (needs CAP_NET_RAW): %w", ip, err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifindex); err != nil {
		return err
	}
	src := &unix.SockaddrInet6{Addr: ip.As16()}
	if ip.IsLinkLocalUnicast() {
		src.ZoneId = uint32(ifindex)
	}
	if err := unix.Bind(fd, src); err != nil {
		return fmt.Errorf("neighbour advertisement for %s: bind: %w", ip, err)
	}
	target := ip.As16()
	msg := make([]byte, 32)
	msg[0] = 136  // neighbour advertisement; code 0; checksum filled in by the kernel
	msg[4] = 0x20 // override
	copy(msg[8:24], target[:])
	msg[24], msg[25] = 2, 1 // option: target link-layer address, 8 bytes
	copy(msg[26:32], mac)
	dst := &unix.SockaddrInet6{Addr: netip.MustParseAddr("ff02::1").As16(), ZoneId: uint32(ifindex)}
	if err := unix.Sendto(fd, msg, 0, dst); err != nil {
		return fmt.Errorf("neighbour advertisement for %s: %w", ip, err)
	}
	return nil
}
