// Package transport is troika's SIP sockets: one sipgo UserAgent and
// Server per ingress socket (Socket, NewSocket), named by transport and
// local address ("udp:127.0.0.2:5070"), served by ServeUDP and
// ServeStream with bounds on what sipgo would otherwise keep forever (the
// remote addresses of a UDP reader, idle and surplus TCP/TLS
// connections), and the RelayPacketConn through which a dispatcher feeds
// a socket whose real counterpart is read elsewhere.
//
// sipgo's messages do not carry the local address they arrived on, and
// one sipgo UDP transport serving several listeners keys its connection
// pool by remote address only, so a phone reaching both the main IP and an
// alias would be answered from the wrong socket. With one stack per socket
// the handler knows its socket, which is stored in the phone's binding as
// its ingress, and everything later sent to that phone leaves through that
// socket's stack: from the alias's IP and port, with the alias in Via and
// Contact.
//
// Every UDP datagram passes a screen (UDPConn.Screen) before sipgo reads
// it, which may answer it at once instead; NewParser is sipgo's parser as
// troika configures it (lazy From, To and Contact, and Via, From and To
// read with the white space RFC 3261 allows around their separators).
//
// sipgo's process-wide settings are set by ConfigureLibrary, once, by the
// node (see library.go); nothing else here is shared between sockets.
package transport
