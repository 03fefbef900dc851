package transport

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/sipstack/sipmsg"
)

// Socket is one ingress socket (transport, IP, port) with its own sipgo
// UserAgent and Server. NewSocket sets every field but Usable and Relay;
// they are read-only afterwards.
type Socket struct {
	Name      string // "udp:127.0.0.2:5070"
	Transport string // udp, tcp or tls
	IP        string
	Port      int
	UA        *sipgo.UserAgent
	Srv       *sipgo.Server
	// Usable is set once requests can leave through the socket. sipgo
	// adds a UDP listener to its connection pool only when its reader
	// starts; a request sent before that makes sipgo bind a second socket
	// on the same address, which fails. Stream sockets are usable at once
	// (requests to phones go over the connections they opened).
	Usable atomic.Bool
	// Relay: the stack is fed through a RelayPacketConn by a dispatcher
	// (sipstack/dispatch); set before the socket is shared.
	Relay bool
}

// StackOptions configure the sipgo stack of a socket.
type StackOptions struct {
	Parser *sip.Parser // NewParser's
	TLS    *tls.Config // the certificate of TLS sockets; nil: none
	// Log is sipgo's logger (see NewQuietHandler); the socket's name is
	// added to it.
	Log *slog.Logger
	// StrayResponse hears of responses that match no client transaction
	// of the socket.
	StrayResponse func(*Socket, *sip.Response)
}

// NewSocket creates the sipgo stack of a socket of transport at local,
// which must be a specific IP and port (they are recorded as a phone's
// ingress). Nothing is read or sent until the socket is served.
func NewSocket(transport string, local net.Addr, opts StackOptions) (*Socket, error) {
	ap, ok := AddrPort(local)
	if !ok {
		return nil, fmt.Errorf("local address %v: not an IP address and port", local)
	}
	if ap.Addr().IsUnspecified() {
		return nil, fmt.Errorf("local address %v: a SIP socket needs a specific IP (it is recorded as the phone's ingress)", local)
	}
	sock := &Socket{Name: SocketName(transport, ap), Transport: transport, IP: ap.Addr().WithZone("").String(), Port: int(ap.Port())}
	log := opts.Log.With("socket", sock.Name)
	var err error
	sock.UA, err = sipgo.NewUA(
		sipgo.WithUserAgent(sipmsg.ServerName),
		sipgo.WithUserAgentHostname(sock.IP),
		sipgo.WithUserAgentParser(opts.Parser),
		sipgo.WithUserAgenTLSConfig(opts.TLS),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(log),
			sip.WithTransactionLayerUnhandledResponseHandler(func(res *sip.Response) {
				if opts.StrayResponse != nil {
					opts.StrayResponse(sock, res)
				}
			}),
		),
	)
	if err != nil {
		return nil, err
	}
	sock.Srv, err = sipgo.NewServer(sock.UA, sipgo.WithServerLogger(log))
	if err != nil {
		sock.UA.Close()
		return nil, err
	}
	sock.Usable.Store(transport != "udp")
	return sock, nil
}

// Close ends the socket's transactions and closes its accepted TCP
// connections.
func (sock *Socket) Close() { sock.UA.Close() }

// CanonicalIP writes an IP address the way socket names do (an IPv4-mapped
// IPv6 address as IPv4); anything else is returned as it is.
func CanonicalIP(s string) string {
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap().String()
	}
	return s
}

// Listen puts the UDP listener in sipgo's connection pool before sipgo's
// reader does, so requests can leave through the socket at once, and marks
// the socket usable.
func (sock *Socket) Listen(uc net.PacketConn) {
	laddr := uc.LocalAddr().String()
	sock.UA.TransportLayer().Pool("udp").Add(laddr, &sip.UDPConnection{PacketConn: uc, PacketAddr: laddr, Listener: true})
	sock.Usable.Store(true)
}

// Contact is the Contact the switch puts in requests and responses sent
// through sock: requests within the dialog come back to this socket.
func (sock *Socket) Contact() *sip.ContactHeader {
	u := sip.Uri{Scheme: "sip", Host: URIHost(sock.IP), Port: sock.Port}
	if sock.Transport != "udp" {
		u.UriParams = sip.NewParams()
		u.UriParams.Add("transport", sock.Transport)
	}
	return &sip.ContactHeader{Address: u}
}

// Via is the Via of a request sent from sock with the given branch,
// asking for rport (RFC 3581).
func (sock *Socket) Via(branch string) *sip.ViaHeader {
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: sip.NetworkToUpper(sock.Transport),
		Host: URIHost(sock.IP), Port: sock.Port, Params: sip.NewParams()}
	via.Params.Add("branch", branch)
	via.Params.Add("rport", "")
	return via
}

// Laddr is the local address of a request sent from sock
// (sip.Request.Laddr): for UDP, and for a relay socket, the socket itself,
// so the datagram leaves from it. For TCP and TLS only the IP: sipgo then
// reuses the connection the peer opened (found by the request's
// destination) and only dials a new one, from that IP, when there is none.
// (With the listener's port sipgo would pick whichever accepted connection
// was filed last under the listener's address.)
func (sock *Socket) Laddr() sip.Addr {
	a := sip.Addr{IP: net.ParseIP(sock.IP)}
	if sock.Transport == "udp" || sock.Relay {
		a.Port = sock.Port
	}
	return a
}

// URIHost writes an IP address as a URI or Via host: IPv6 in brackets.
func URIHost(ip string) string {
	if strings.Contains(ip, ":") && !strings.HasPrefix(ip, "[") {
		return "[" + ip + "]"
	}
	return ip
}
