// Package metric declares troika's Prometheus metrics: each is named
// troika_<subsystem>_<name> and registered with promauto on the registry a
// Factory was made for, in one call that gives its name and help text.
package metric

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Namespace begins the name of every troika metric.
const Namespace = "troika"

// Factory registers the metrics of one subsystem on one registry.
type Factory struct {
	auto      promauto.Factory
	subsystem string
}

// New returns the Factory of subsystem ("sip", "raft", ...; "" for
// metrics named troika_<name>) registering on reg. Registering a name
// twice panics, as with promauto.
func New(reg prometheus.Registerer, subsystem string) Factory {
	return Factory{auto: promauto.With(reg), subsystem: subsystem}
}

func (f Factory) opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: Namespace, Subsystem: f.subsystem, Name: name, Help: help}
}

func (f Factory) histogramOpts(name, help string, buckets []float64) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{Namespace: Namespace, Subsystem: f.subsystem, Name: name, Help: help, Buckets: buckets}
}

// Counter registers a counter.
func (f Factory) Counter(name, help string) prometheus.Counter {
	return f.auto.NewCounter(prometheus.CounterOpts(f.opts(name, help)))
}

// CounterVec registers a counter partitioned by labels.
func (f Factory) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return f.auto.NewCounterVec(prometheus.CounterOpts(f.opts(name, help)), labels)
}

// Gauge registers a gauge.
func (f Factory) Gauge(name, help string) prometheus.Gauge {
	return f.auto.NewGauge(prometheus.GaugeOpts(f.opts(name, help)))
}

// GaugeVec registers a gauge partitioned by labels.
func (f Factory) GaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return f.auto.NewGaugeVec(prometheus.GaugeOpts(f.opts(name, help)), labels)
}

// GaugeFunc registers a gauge whose value value returns at each scrape.
func (f Factory) GaugeFunc(name, help string, value func() float64) prometheus.GaugeFunc {
	return f.auto.NewGaugeFunc(prometheus.GaugeOpts(f.opts(name, help)), value)
}

// Histogram registers a histogram with the given bucket upper bounds.
func (f Factory) Histogram(name, help string, buckets []float64) prometheus.Histogram {
	return f.auto.NewHistogram(f.histogramOpts(name, help, buckets))
}

// HistogramVec registers a histogram with the given bucket upper bounds,
// partitioned by labels.
func (f Factory) HistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return f.auto.NewHistogramVec(f.histogramOpts(name, help, buckets), labels)
}

// Zero makes the series of a one-label vector for each of values (give it
// the vector's WithLabelValues), so that each is exported, at 0, before
// its first use.
func Zero[T any](withLabelValues func(...string) T, values ...string) {
	for _, v := range values {
		withLabelValues(v)
	}
}
