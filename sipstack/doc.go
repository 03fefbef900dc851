// Package sipstack owns troika's SIP sockets and SIP behaviour: the
// listeners on the main and alias addresses, the registrar (registrar.go,
// with digest authentication in auth.go, digest.go and nonce.go), and the
// B2BUA that authorizes, bills and connects calls (b2bua*.go; its overview
// is in b2bua.go).
//
// Every ingress socket (transport, IP, port) gets its own sipgo UserAgent
// and Server. sipgo messages do not carry the local address they arrived
// on, and one sipgo UDP transport serving several listeners keys its
// connection pool by remote address only, so a phone reaching both the main
// IP and an alias would be answered from the wrong socket. With one
// UserAgent per socket the handler knows its socket's name
// ("udp:127.0.0.2:5070"), which is stored in the phone's binding as its
// ingress, and everything later sent to that phone leaves through that
// socket's UserAgent: the B2BUA's INVITE, ACK, CANCEL and BYE to a phone
// registered through an alias leave from the alias's IP and port, with
// the alias in Via, Contact and the From/To hosts.
//
// Opening sockets is kept apart from serving them: Server.ServeUDP,
// ServeTCP and ServeTLS serve any net.PacketConn or net.Listener. With
// Config.Dispatch the dispatcher (dispatch*.go) reads the real UDP sockets
// and feeds each datagram to the stack of the node its Call-ID belongs to,
// through a RelayPacketConn per ingress socket (a relay socket); stream
// legs held by another node go through it (dispatch_stream.go).
//
// sipgo's process-wide settings (its UDP size limit and package logger)
// are set once by ConfigureLibrary, which the node calls before New.
package sipstack
