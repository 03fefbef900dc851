package keepalive

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/internal/metric"
)

// Values of the "result" label of troika_sip_keepalive_total.
const (
	resultOK      = "ok"      // a final response came, whatever its code
	resultTimeout = "timeout" // none came within the timeout
	resultError   = "error"   // not sent: the phone's TCP/TLS connection is gone, or this node could not send
)

type metrics struct {
	pings       *prometheus.CounterVec
	deferred    prometheus.Counter
	removed     prometheus.Counter
	bindings    prometheus.Gauge
	unreachable prometheus.Gauge
	pending     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := metric.New(reg, "sip")
	m := &metrics{
		pings: f.CounterVec("keepalive_total",
			"NAT keepalive OPTIONS sent to registered phones, by result: ok (any final response), timeout (none in time), error (the phone's TCP/TLS connection is gone, or it could not be sent).",
			"result"),
		deferred: f.Counter("keepalive_deferred_total",
			"Keepalive pings that were due but waited for a later tick: more were due than keepalive_max_per_second allows."),
		removed: f.Counter("keepalive_removed_total",
			"Unreachable bindings this node removed (registrar.keepalive_remove_unreachable)."),
		bindings: f.Gauge("keepalive_bindings",
			"Bindings this node pings: those registered through a socket it holds."),
		unreachable: f.Gauge("keepalive_unreachable",
			"Bindings this node pings that stopped answering (registrar.keepalive_failures pings in a row unanswered)."),
		pending: f.Gauge("keepalive_pending",
			"Keepalive pings of this node waiting for an answer."),
	}
	metric.Zero(m.pings.WithLabelValues, resultOK, resultTimeout, resultError)
	return m
}
