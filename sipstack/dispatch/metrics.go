package dispatch

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/internal/metric"
)

// Reasons a dispatched datagram or frame was dropped, the "reason" label
// of troika_sip_dispatch_drops_total.
const (
	dropRelayQueue = "relay_queue" // the stack of a relay socket is not keeping up
	dropBadFrame   = "bad_frame"   // a frame from another node did not decode
	dropNoRelay    = "no_relay"    // no relay socket could be made for a frame (bad name, too many, stopping)
	dropNoSocket   = "no_socket"   // a datagram to send out of a socket this node no longer holds
	dropNoHolder   = "no_holder"   // a datagram to send out of a socket no known node holds
	dropWriteError = "write_error" // the real socket (or stream) refused a message
	dropStreamBusy = "stream_busy" // too many writes into streams in progress
	dropOversized  = "oversized"   // a datagram longer than maxDispatchDatagram
)

var dropReasons = []string{dropRelayQueue, dropBadFrame, dropNoRelay, dropNoSocket, dropNoHolder, dropWriteError, dropStreamBusy, dropOversized}

// Directions of troika_sip_dispatch_relay_seconds.
const (
	latIn  = "in"  // dispatcher read -> processor's stack
	latOut = "out" // processor's write -> dispatcher's real socket
)

type metrics struct {
	datagramsLocal  prometheus.Counter
	datagramsRemote prometheus.Counter
	linkRefused     prometheus.Counter
	streamForwarded prometheus.Counter
	callForwarded   prometheus.Counter
	sentLocal       prometheus.Counter
	sentRemote      prometheus.Counter
	sentRelayed     prometheus.Counter
	drops           *prometheus.CounterVec
	relayIn         prometheus.Observer
	relayOut        prometheus.Observer
	realSockets     prometheus.Gauge
	relaySockets    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := metric.New(reg, "sip")
	datagrams := f.CounterVec("dispatch_datagrams_total",
		"Datagrams read from this node's real UDP sockets, by where they were processed (local: this node; remote: sent to another node over the cluster link).",
		"target")
	sent := f.CounterVec("dispatch_sent_total",
		"Datagrams this node's stacks sent, by path (local: out of a real socket held here; remote: to the node holding it), and datagrams other nodes' stacks sent out of this node's sockets (relayed).",
		"via")
	forwarded := f.CounterVec("dispatch_forwarded_total",
		"Messages this node passed to the node running their dialog, by reason (stream: received on this node's TCP/TLS socket for a dialog of another node; call_node: an in-dialog request, ACK or CANCEL for a call another live node runs, after membership changed).",
		"reason")
	relay := f.HistogramVec("dispatch_relay_seconds",
		"Time from one node to the other of a relayed datagram (in: read by the dispatcher to delivered to the processing stack; out: written by the processing stack to sent by the dispatcher). Across hosts it includes their clock difference.",
		[]float64{.00005, .0001, .0002, .0005, .001, .002, .005, .01, .02, .05, .1, .5},
		"direction")
	m := &metrics{
		datagramsLocal:  datagrams.WithLabelValues("local"),
		datagramsRemote: datagrams.WithLabelValues("remote"),
		linkRefused: f.Counter("dispatch_link_refused_total",
			"Frames the cluster link did not take (its queue to that node full, or the node not connected): a datagram received is then processed here; one to send is lost (retransmitted by its transaction)."),
		streamForwarded: forwarded.WithLabelValues("stream"),
		callForwarded:   forwarded.WithLabelValues("call_node"),
		sentLocal:       sent.WithLabelValues("local"),
		sentRemote:      sent.WithLabelValues("remote"),
		sentRelayed:     sent.WithLabelValues("relayed"),
		drops: f.CounterVec("dispatch_drops_total",
			"Dispatched datagrams dropped, by reason (relay_queue, bad_frame, no_relay, no_socket, no_holder, write_error, stream_busy).",
			"reason"),
		relayIn:  relay.WithLabelValues(latIn),
		relayOut: relay.WithLabelValues(latOut),
		realSockets: f.Gauge("dispatch_real_sockets",
			"Real UDP sockets this node's dispatcher reads."),
		relaySockets: f.Gauge("dispatch_relay_sockets",
			"Relay sockets (one sipgo stack per ingress socket of the cluster) on this node."),
	}
	metric.Zero(m.drops.WithLabelValues, dropReasons...)
	return m
}

func (m *metrics) drop(reason string) { m.drops.WithLabelValues(reason).Inc() }

// latency observes the time since a frame's stamp (negative, from clock
// differences between hosts, counts as zero).
func (m *metrics) latency(dir string, stamp int64) {
	d := time.Since(time.Unix(0, stamp)).Seconds()
	if d < 0 {
		d = 0
	}
	if dir == latIn {
		m.relayIn.Observe(d)
	} else {
		m.relayOut.Observe(d)
	}
}
