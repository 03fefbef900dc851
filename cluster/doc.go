// Package cluster makes several troika nodes one switch: consensus on the
// replicated state, the internal links between the nodes, membership and
// health, and which node holds each virtual address.
//
// Consensus. Every node runs hashicorp/raft over raft-boltdb (raft.db in
// the data dir holds the log and stable store, snapshots lie beside it)
// and applies each committed command to its fsm.State (raftfsm.go). Start
// (start.go) resumes from the data dir, or bootstraps a cluster from the
// static Peers, or asks the Join members to add the node (membership.go).
// A committed entry this version cannot decode stops the node rather than
// let its replica diverge.
//
// The cluster port. One TCP port per node carries all internal traffic
// (mux.go). Every connection starts with an authentication handshake
// (auth.go: the server sends a random challenge, the client answers with
// HMAC-SHA256(cluster key, challenge || connection type)); the type then
// selects the handler, the way Consul multiplexes its server port: raft
// RPCs, write forwarding, or the dispatch link. Forwarding and the
// dispatch link frame their messages alike (framing.go).
//
// TLS. With a TLSConfig (tls.go, port.go; [cluster.tls] in the node's
// configuration) the port is encrypted and both ends authenticated by
// certificates: TLS 1.3 (at least 1.2), a client certificate required,
// each certificate chaining to the cluster CA and naming a node with the
// URI SAN troika-node:<node_id> (internal/certs); a dialer that knows
// which node it calls (the raft configuration maps addresses to ids)
// checks that name too, and a link hello must name the node of its
// certificate. The server's challenge offers TLS; a TLS client answers
// with its ClientHello (first byte 0x16, which no connection type is),
// and once TLS is up the handshake above runs again inside it, so the
// cluster key is still proven (a certificate from a CA shared with
// another cluster is not enough). verify_incoming = false also accepts
// the plaintext handshake, and a node dialing TLS (verify_outgoing) then
// dials plaintext to a node that offers no TLS: a running plaintext
// cluster moves to TLS by two rolling restarts (deploy/runbook.md).
// Refused connections are counted by reason (PortStats) and logged at
// most once per remote host and reason every 30 s (refuse.go). Without
// TLS the port is authenticated but not encrypted: an account's digest
// credentials (as good as its password to a SIP attacker) cross it in
// clear with every write that carries them.
//
// Writes. Node.Propose (write.go) applies a command with raft.Apply on the
// leader, where raft batches the commands of concurrent callers into one
// log append. On a follower the encoded command travels to the leader over
// one persistent, pipelined forwarding connection (fwdclient.go: many
// requests in flight, written in batches, answered in any order by id),
// and Propose returns once the follower's own replica has applied it, so
// a node reads its own writes. Failures another try may fix (no leader, a
// leader change, a lost connection) are retried, paced by internal/retry,
// until the caller's context ends: every fsm command is idempotent, so
// retrying a write whose outcome is unknown is safe.
//
// The dispatch link. Link (link.go) carries the SIP dispatcher's messages
// between nodes: one persistent connection to each other raft server, a
// bounded queue per peer that Send never blocks on, and datagram
// semantics (a message for a peer that is down, or whose queue is full,
// is dropped; transactions retransmit).
//
// Gossip. Gossip (gossip.go) runs hashicorp/memberlist, encrypted with a
// key derived from the cluster key, for failure detection (tuned to
// declare a crashed node dead in about half a second) and node metadata:
// version, roles, load, health. It informs; raft decides.
//
// Address ownership. An Owner (ownership*.go) moves the virtual and alias
// addresses between nodes. Only the leader writes the ownership map,
// through raft; where an address goes is decided by Place (placement.go),
// a pure, sticky function of the addresses, the current map and each
// voter's health (gossip, and the leader's raft heartbeats: reach.go).
// Every node's holder loop takes the addresses its own replica assigns to
// it and gives them up under the self-fencing rules of lease.go (a lease
// on the contact with a leader, a handover wait before taking an address,
// an address barrier after every loss of contact, kernel lifetimes that
// remove the addresses of a frozen holder), so that two nodes never hold
// an address at once. On Linux the addresses are added and removed with
// netlink and announced with gratuitous ARP or unsolicited neighbour
// advertisements (netaddr_linux.go).
package cluster
