// Package dispatch is the dispatcher and processing roles of a node
// (docs/ARCHITECTURE.md), for UDP.
//
// Dispatcher: with Config.Enabled, the node that holds an address reads
// its real UDP sockets itself instead of handing them to sipgo. For each
// datagram it finds the Call-ID (scanMessage, scan.go: no parse), picks the
// processing node (hash.go: the node a Call-ID made by the
// switch names, or rendezvous hashing over the processors the cluster
// reports healthy) and hands the datagram over with its envelope
// (frame.go): to this node's own stack without a network hop,
// or to another node as a frame over the cluster link (Peers.Send).
// Datagrams it cannot route (no Call-ID, garbage, no processors known)
// are processed here, where the parser drops them or answers 400. When the
// link will not take a frame (queue full, or not connected) the datagram
// is processed here too, and counted.
//
// Processor: every node serves, per ingress socket name, a
// RelayPacketConn under its own sipgo stack (a relay socket), created when
// the first frame for that socket arrives, or when the B2BUA needs to
// send from that socket (Relay). sipgo sees the phone's real source
// address and the socket's real address, so the registrar records the
// right ingress and source and vendor connections match by source IP.
// Everything the stack writes goes back out of the real socket: directly
// when this node holds it, else as a frame to the node holding its IP
// (Peers.Holder: the replicated ownership map, or the node whose own
// socket it is; failing that, the node that last dispatched a frame for
// that socket).
//
// A relay socket outlives the real socket: when an address moves to
// another node, the transactions and calls on its relay socket carry on
// and their messages leave through the new holder.
//
// TCP and TLS are not dispatched: a stream socket's messages are
// processed by the node holding it, except those of dialogs another node
// runs, and a B2BUA leg on a stream socket another node holds is sent
// through that node (stream.go).
package dispatch
