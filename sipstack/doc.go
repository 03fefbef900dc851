// Package sipstack is troika's SIP server: it opens the node's SIP
// sockets, routes each request to the part of the switch that answers it,
// and joins those parts together. The parts are packages of their own:
//
//	transport   sockets and their sipgo stacks, one per ingress socket
//	            ("udp:127.0.0.2:5070"), bounded and named
//	dispatch    the dispatcher: datagrams of the sockets this node holds
//	            handed to the node their Call-ID belongs to, and relay
//	            sockets for the addresses other nodes hold
//	auth        who a request comes from: digest with stateless nonces,
//	            vendors by address, the failed-authentication limit
//	registrar   REGISTER
//	b2bua       calls: INVITE, its legs, redirects, follow-me, vendors,
//	            in-dialog requests, adoption of a stopped node's calls
//	sipmsg      request checks, header values, Contact parsing, Respond
//
// Here: the Server (server.go), the addresses it listens on (its own, the
// aliases, or those the address owner gives it: addresses.go), request
// routing and OPTIONS (handlers.go), and the sockets and dispatcher as
// the B2BUA and the dispatcher see them (sockets.go, dispatching.go,
// calls.go). Each part declares the small interface it needs (for
// example b2bua.Sockets, dispatch.Stacks); the Server implements them.
// docs/ARCHITECTURE.md tells how a REGISTER and a call cross the cluster.
//
// sipgo's process-wide settings (its UDP size limit and package logger)
// are set once by ConfigureLibrary, which the node calls before New.
package sipstack
