// Package keepalive keeps phones behind NAT reachable: the node holding a
// binding's ingress socket sends it an OPTIONS from that socket at a
// steady interval, so the NAT in front of the phone keeps its pinhole
// open, and marks the binding unreachable when the phone stops answering
// (docs/keepalive.md).
//
// Who pings: the node that holds the socket the binding registered
// through (fsm.Binding.Ingress, e.g. "udp:127.0.0.2:5070"), and only while
// it holds it (Pings). Address ownership gives every socket one holder at
// a time, so every binding is pinged by one node, from the socket the
// phone talks to, with no cluster traffic: the OPTIONS leaves the real
// socket and the answer, whose Call-ID names this node, comes back to it.
//
// When: each binding has a phase within the interval, from a hash of its
// identity (phaseOf), and is pinged once per interval at that phase
// (slotOf, plan), so the pings of many bindings spread evenly over the
// interval; a cap per tick bounds the work, the rest waits for the next
// tick, the longest-waiting first.
//
// What counts: any final response is an answer (a phone that says 404 or
// 405 is there). No final response within the timeout, or a TCP/TLS
// binding whose connection is gone, is a failure; Failures in a row mark
// the binding unreachable (step). An answer or a new REGISTER marks it
// reachable again. The state is this node's own (nothing is replicated
// per ping); with RemoveUnreachable the binding is removed through the
// cluster, as the phone's own unregistration would.
//
// Pure decisions (Pings, phaseOf, slotOf, plan, step) are in schedule.go
// and tested by tables; pinger.go does the I/O.
package keepalive
