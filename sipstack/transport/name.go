package transport

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Socket names: "udp:198.51.100.10:5060", "tcp:[2001:db8::1]:5060". A name
// says the transport and the socket's local address (a specific IP, no
// zone, IPv4 never written as IPv6); it is what a binding records as the
// phone's ingress and what dispatch frames carry.

// ParseSocketName reads a socket name ("udp:IP:port", or tcp or tls) as
// its local address.
func ParseSocketName(name string) (netip.AddrPort, error) {
	transport, hp, _ := strings.Cut(name, ":")
	if transport != "udp" && !IsStream(transport) {
		return netip.AddrPort{}, errors.New("not a socket name")
	}
	ap, err := netip.ParseAddrPort(hp)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if ap.Addr().Zone() != "" || ap.Addr().IsUnspecified() || ap.Port() == 0 || ap.Addr().Is4In6() {
		return netip.AddrPort{}, errors.New("not a specific address")
	}
	if SocketName(transport, ap) != name {
		return netip.AddrPort{}, errors.New("not in canonical form")
	}
	return ap, nil
}

// SocketName names the socket of transport at ap.
func SocketName(transport string, ap netip.AddrPort) string {
	return transport + ":" + netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()).String()
}

// AddrPort converts a socket or datagram address, an IPv4-mapped IPv6
// address written as IPv4.
func AddrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	case nil:
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		host, port, err2 := net.SplitHostPort(a.String())
		if err2 != nil {
			return netip.AddrPort{}, false
		}
		ip, err3 := netip.ParseAddr(host)
		p, err4 := strconv.Atoi(port)
		if err3 != nil || err4 != nil || p < 0 || p > 65535 {
			return netip.AddrPort{}, false
		}
		ap = netip.AddrPortFrom(ip, uint16(p))
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// IsStream reports whether a socket name's transport is a stream.
func IsStream(transport string) bool { return transport == "tcp" || transport == "tls" }

// TransportOf returns the transport of a socket name.
func TransportOf(name string) string {
	t, _, _ := strings.Cut(name, ":")
	return t
}
