// Package chaos runs a troika cluster as real processes in Linux network
// namespaces and breaks it on purpose: the harness that the cluster's
// failover tests are written with (docs/ARCHITECTURE.md).
//
// # The network
//
// New builds, with names unique per run ("tk" + 6 random hex digits, the
// run id, e.g. tk3fa9c1):
//
//	tk3fa9c1-sw   the switch: a bridge br0 and one port per host (n1, n2, n3, cl)
//	tk3fa9c1-n1   node 1: eth0 = 10.X.Y.11/24, lo
//	tk3fa9c1-n2   node 2: eth0 = 10.X.Y.12/24, lo
//	tk3fa9c1-n3   node 3: eth0 = 10.X.Y.13/24, lo
//	tk3fa9c1-cl   the client (SIPp phones): eth0 = 10.X.Y.200/24, lo
//
// X.Y are random per run and chosen to overlap none of the host's own
// addresses or routes. Each veth pair is created from inside its namespaces
// (`ip -n NODE link add eth0 type veth peer name n1 netns SWITCH`), so the
// harness never creates, changes or deletes anything in the host's root
// network namespace: no bridge, no veth end, no address, no route, no
// iptables rule, no sysctl. That is why the bridge lives in a dedicated
// switch namespace and not in the root one: a root bridge would need the
// host's cooperation (Docker's FORWARD policy DROP plus br_netfilter drops
// bridged frames) and could leak test traffic to the host. No namespace has
// a default route, so nothing can leave the test network. Addresses
// 10.X.Y.100-149 are free for virtual IPs and aliases (SpareAddr).
//
// The test process itself stays in the root namespace. It reaches the
// nodes' admin APIs through sockets made inside each node's namespace (a
// locked OS thread setns(2)-ed into it), so admin calls and address
// sampling keep working while a node is partitioned.
//
// # Nodes
//
// Each node runs `ip netns exec NS troika agent --config FILE`, with a
// generated TOML configuration: static peers (cluster link on :7000), SIP
// on the node's address (:5060), the admin API on the node's address
// (:8080), a shared cluster key and admin token, and TLS on the cluster
// port ([cluster.tls], both ways) with a CA and node certificates the
// harness makes in RUN_DIR/tls (Options.PlaintextCluster leaves TLS out).
// Options.Config can change or add any key. Logs go to RUN_DIR/nN.log
// (appended across restarts).
//
// # Faults
//
// Node.Kill (SIGKILL), Node.Pause / Node.Resume (SIGSTOP / SIGCONT),
// Node.Stop (SIGTERM, SIGKILL after a grace period), Node.Start (again from
// its data directory), Node.SwapBinary (stop, then start another binary: a
// rolling upgrade step) and Cluster.Partition (iptables DROP rules in the
// cut-off nodes' namespaces, both directions, for the other nodes'
// addresses; Partition.Heal deletes exactly those rules). Every fault is
// an event in the run's timeline.
//
// # Observation
//
// Every 50 ms the harness lists the addresses of every node and client
// namespace (an RTM_GETADDR netlink dump, what `ip -o addr` prints) into an
// in-memory timeline; DoubleHolders reports every sampled instant at which
// two namespaces held the same address. Node.Admin is an admin API client
// for each node.
//
// # Virtual IPs
//
// vip_test.go runs the nodes with a [vip] section (interface eth0, the
// virtual IP 10.X.Y.100/24) and adds the alias 10.X.Y.150 through the
// admin API: the nodes add, announce (gratuitous ARP) and remove these
// addresses themselves, as the leader's placement says, and the sampler
// checks that no two namespaces ever hold one. TestVIPFailover SIGKILLs
// the virtual IP's holder five times and logs the time to the first
// successful REGISTER through the virtual IP (and its median), then kills
// the leader and checks that the holder kept the address through the
// election; TestVIPPartition isolates the holder and checks that it drops
// the address within its lease, that another node takes it, and that
// everything converges after the heal.
//
// # Workloads and report
//
// Cluster.StartRegisters runs SIPp in the client namespace: a steady
// REGISTER load at a rate for a duration, with SIPp's counters every 200 ms
// (RegisterLoad.LogAcks also logs every registration the registrar
// acknowledged). Cluster.StartCalls runs SIPp callers of one account
// (several calls at once, held for a while or left to the switch to cut),
// their message log naming every answered call. Cluster.WatchLeader
// records who leads every 250 ms. Close writes report.txt and report.html
// (an SVG timeline of faults, node process state, the leader, address
// ownership and each load's successes and failures per second, under the
// checkers' verdicts when there are some) into the run directory.
//
// # Experiments and the chaos command
//
// Run (experiment.go) is one scenario under a mixed workload, then four
// checkers; `go run ./chaos/cmd/chaos -scenario NAME -duration D [-seed N]
// [-report DIR]` runs scenarios from the command line (as root) and writes
// a report per scenario. Scenarios (scenarios.go): partition-leader,
// partition-holder, asymmetric (the leader hears nobody, the others hear
// it), kill-leader, kill-holder, pause-leader (SIGSTOP longer than the
// address lease), flapping (a random node cut off for 2-4 s every few
// seconds, from the seed), full-restart (every node SIGKILLed, then
// started) and rolling-upgrade (the cluster starts on an earlier build,
// -old-binary or -from-rev, default .ci/run's previous=, and each node is
// restarted on this one).
//
// The workload (workload.go, accounts.go), for the whole duration: 500
// phones registering and refreshing through the virtual IP and through
// the alias's extra port; two SIPp callees registered through the
// virtual IP; prepaid callers with several calls at once on one balance
// each: short calls, long calls that need two extensions of their 10 s
// chunks (billing.reserve_chunk = "10s", max_call_duration = "1m"), and
// two poor callers whose 0.60 runs out under three calls (cut by the
// switch, Out of Credit); top-ups every 700 ms through any node with
// idempotency keys, retried with the same key after an error and each sent
// once more after its answer, as a client that lost it would, some of them
// debits. A watch reads every balance once a second.
//
// The checkers (checks.go), each able to fail:
//
//   - set: every binding the registrar acknowledged (SIPp logged the 200)
//     is listed by every node after the heal;
//   - bank: on every node each balance is its opening balance plus the
//     top-ups applied less what its xDRs charged (so balances + charges -
//     top-ups is constant), to the micro-unit; one xDR per answered call
//     and never two for a call id; no prepaid balance below zero or
//     holding more than it has, at the end or in any sample; nothing left
//     reserved, no call left in progress; every node agrees;
//   - single holder: no 50 ms sample shows an address in two namespaces;
//   - availability: per fault, the time to the first successful REGISTER
//     through the virtual IP and through the alias (from the repair when
//     every node was down) and the transactions failed until the next
//     fault; it fails beyond Config.MaxRecovery (10 s).
//
// Each checker has a deliberately broken build to fail against, behind a
// build tag, its sabotage a few lines compiled out of every normal build:
// chaosbroken_set (fsm/chaosbroken_set.go: the bindings of accounts whose
// id hashes to 0 mod 1000 are acknowledged and never stored),
// chaosbroken_bank (fsm/chaosbroken_bank.go: a top-up sent again with its
// key moves the money again) and chaosbroken_holder
// (cluster/chaosbroken_holder.go: a holder ignores its lease).
// TestCheckersCatchBrokenBuilds builds each (testkit.BinaryWithTags) and
// shows its checker failing; `-tags chaosbroken_bank` runs the command
// on one.
//
// Outside tests the harness takes a Runner instead of a *testing.T
// (runner.go): progress lines on stdout, failures recorded, cleanups run
// when the run ends.
//
// # Teardown
//
// Close (registered with t.Cleanup) kills every process, deletes every
// namespace (which removes the veths, the bridge and the iptables rules
// with them) and removes the run directory, unless the test failed or
// CHAOS_KEEP=1 is set: then its path is logged. Sweep, called by New,
// removes what crashed earlier runs left behind: namespaces named tkXXXXXX-*
// whose run no longer holds its lock file (/run/troika-chaos/tkXXXXXX.lock),
// and the processes still inside them. Runs in parallel (even from several
// test binaries) do not disturb each other.
//
// Everything needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), iproute2 and
// iptables; the tests skip without root.
package chaos
