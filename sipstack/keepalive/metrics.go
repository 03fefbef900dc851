package keepalive

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
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
	f := promauto.With(reg)
	m := &metrics{
		pings: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "keepalive_total",
			Help: "NAT keepalive OPTIONS sent to registered phones, by result: ok (any final response), timeout (none in time), error (the phone's TCP/TLS connection is gone, or it could not be sent).",
		}, []string{"result"}),
		deferred: f.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "keepalive_deferred_total",
			Help: "Keepalive pings that were due but waited for a later tick: more were due than keepalive_max_per_second allows.",
		}),
		removed: f.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "keepalive_removed_total",
			Help: "Unreachable bindings this node removed (registrar.keepalive_remove_unreachable).",
		}),
		bindings: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "troika", Subsystem: "sip", Name: "keepalive_bindings",
			Help: "Bindings this node pings: those registered through a socket it holds.",
		}),
		unreachable: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "troika", Subsystem: "sip", Name: "keepalive_unreachable",
			Help: "Bindings this node pings that stopped answering (registrar.keepalive_failures pings in a row unanswered).",
		}),
		pending: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "troika", Subsystem: "sip", Name: "keepalive_pending",
			Help: "Keepalive pings of this node waiting for an answer.",
		}),
	}
	for _, r := range []string{resultOK, resultTimeout, resultError} {
		m.pings.WithLabelValues(r)
	}
	return m
}
