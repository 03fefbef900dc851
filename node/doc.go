// Package node is troika's composition root: it turns a Config into a
// running node and owns the order in which its parts start and stop.
//
// A node is the replicated state (fsm) under raft (cluster), gossip
// membership, the SIP server (sipstack), the dispatch link between the
// nodes, the owner of the virtual IPs and aliases (with [vip]) and the
// admin API (admin), which it serves as the admin.Backend and
// admin.Drainer. By file:
//
//   - process.go: ConfigureProcess, the settings of the whole process that
//     main (or a test's TestMain) makes once before any Start
//   - config.go: the TOML configuration, its defaults and checks; dev.go
//     the one-node demo configuration and data of `troika dev`
//   - timing.go: raft timing and the addresses' self-fencing timing
//   - gossip.go: gossip addresses, the metadata this node announces and
//     what it reads from the others'
//   - vip.go: the [vip] section and the address owner
//   - node.go: Start, one named step after the other; the stop order
//     (leave announcement, leadership hand-over, addresses given up before
//     the SIP server stops); GET /v1/cluster; call adoption
//   - leader.go: the leader's housekeeping (nonce secret, expired bindings,
//     stale calls, xDR and idempotency-key retention)
//   - dispatch.go: the dispatcher's cluster side (link, processing nodes,
//     socket holders)
//   - drain.go, drain_preflight.go, drain_steps.go, drain_run.go: the
//     planned stop behind POST /v1/cluster/drain
package node
