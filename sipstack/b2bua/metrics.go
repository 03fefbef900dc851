package b2bua

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/internal/metric"
)

// Metrics are the B2BUA's Prometheus metrics. NewMetrics registers them;
// the SIP server makes them before the authenticator, which counts failed
// vendor authentications on one of them (VendorAuthFailures).
type Metrics struct {
	callsStarted   prometheus.Counter
	callsAnswered  prometheus.Counter
	callsAdopted   prometheus.Counter
	callsFailed    *prometheus.CounterVec // by the final status sent to the caller
	callsEnded     *prometheus.CounterVec // answered calls, by who ended them
	callsActive    prometheus.Gauge
	callSetup      prometheus.Histogram
	callWriteFails *prometheus.CounterVec // replicated writes of calls given up, by step
	extensions     *prometheus.CounterVec // ExtendCall attempts of calls reserved by chunks, by result (calltime.go)
	forkResults    *prometheus.CounterVec // callee legs, by outcome
	vendorCalls    *prometheus.CounterVec // calls from vendors, by outcome (vendor.go)
	redirects      *prometheus.CounterVec // 3xx targets and follow-me entries, by decision (redirect.go)
}

// NewMetrics registers the B2BUA's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f, troika := metric.New(reg, "sip"), metric.New(reg, "")
	m := &Metrics{
		callsStarted: f.Counter("calls_started_total",
			"Calls authorized and reserved (StartCall accepted)."),
		callsAdopted: f.Counter("calls_adopted_total",
			"Answered calls of a stopped node this node took over from the cluster state."),
		callsAnswered: f.Counter("calls_answered_total",
			"Calls answered by a callee and connected to the caller."),
		callsFailed: f.CounterVec("calls_failed_total",
			"Authenticated INVITEs that ended without an answer, by the final status sent to the caller (402, 404, 480, 486, 487, ...).",
			"code"),
		callsEnded: f.CounterVec("calls_ended_total",
			"Answered calls that ended, by who ended them (caller, callee, timer, system).",
			"by"),
		callsActive: f.Gauge("calls_in_progress",
			"Calls in progress on this node (ringing or answered)."),
		callSetup: f.Histogram("call_setup_seconds",
			"Post-dial delay: from the authenticated INVITE to the first ringing (18x) or answer relayed to the caller.",
			[]float64{.002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10}),
		callWriteFails: f.CounterVec("call_write_failures_total",
			"Replicated writes of calls that failed after their retries (start, answer, end); an end failure leaves a call open.",
			"step"),
		extensions: f.CounterVec("call_extensions_total",
			"Next chunks asked for by answered calls reserved by chunks, by result: extended (a whole chunk), "+
				"final (the money paid part of one, or none: the call is cut at what it paid for), refused, failed (not written).",
			"result"),
		forkResults: f.CounterVec("callee_legs_total",
			"INVITEs sent to callees, by outcome (answered, failed, redirected, cancelled, late_answer, skipped, error).",
			"result"),
		vendorCalls: troika.CounterVec("vendor_calls_total",
			"Initial INVITEs from vendor connections (by source address or vendor digest user name), by outcome "+
				"(accepted, not_account, rule_timeout, rule_error, refused, unavailable, auth_failed).",
			"result"),
		redirects: troika.CounterVec("redirect_decisions_total",
			"Targets of callee legs' 3xx answers, and follow-me entries, by what the B2BUA decided (trusted, new_call_authorization, rejected, loop, follow_me, ...).",
			"decision"),
	}
	metric.Zero(m.callsEnded.WithLabelValues, ByCaller, ByCallee, ByTimer, BySystem, ByOperator)
	metric.Zero(m.extensions.WithLabelValues, extensionExtended, extensionFinal, extensionRefused, extensionFailed)
	metric.Zero(m.vendorCalls.WithLabelValues, vendorResults...)
	metric.Zero(m.redirects.WithLabelValues, redirectDecisions...)
	return m
}

// VendorAuthFailures counts vendor user names given with a wrong password
// (troika_vendor_calls_total{result="auth_failed"}).
func (m *Metrics) VendorAuthFailures() prometheus.Counter {
	return m.vendorCalls.WithLabelValues(VendorAuthFailed)
}

func (m *Metrics) vendorCall(result string) { m.vendorCalls.WithLabelValues(result).Inc() }

// callFailed counts an unanswered call by its final status; codes outside
// 300-699 (which never reach a caller) count as "other".
func (m *Metrics) callFailed(code int) {
	label := "other"
	if code >= 300 && code < 700 {
		label = strconv.Itoa(code)
	}
	m.callsFailed.WithLabelValues(label).Inc()
}

// redirectDecisions lists every decision label, pre-created on the metric.
var redirectDecisions = []string{billing.DecisionTrusted, billing.DecisionNewAuth, billing.DecisionNewAuthRefused,
	billing.DecisionRejected, billing.DecisionOwnAddress, billing.DecisionLoop, billing.DecisionPrivate,
	billing.DecisionLimit, billing.DecisionUnresolvable, billing.DecisionFollowMe}
