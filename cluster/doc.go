// Package cluster owns consensus (raft), write forwarding to the leader and
// cluster membership changes.
//
// One TCP port per node carries everything internal: raft RPCs, the
// forwarding link and the SIP dispatch link (link.go). Every connection starts with an authentication handshake
// (the server sends a random challenge, the client answers with
// HMAC-SHA256(cluster key, challenge || connection type)); the first byte
// after it selects the handler, the way Consul multiplexes its server port.
//
// Writes go through Node.Propose. On the leader it is a raft.Apply; on a
// follower the encoded command travels over a persistent, pipelined
// connection to the leader, which applies it and sends the fsm.Result back.
// Proposals are retried across leader changes until their context ends:
// every fsm command is idempotent, so retrying a write whose outcome is
// unknown (leadership lost, connection dropped after sending) is safe.
//
// The link is authenticated but not encrypted: it belongs on a private
// cluster network, never on the customer side.
package cluster
