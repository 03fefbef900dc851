package sipstack

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// knownMethods bounds the "method" label: anything else counts as "other".
var knownMethods = map[string]bool{
	"REGISTER": true, "OPTIONS": true, "INVITE": true, "ACK": true, "BYE": true, "CANCEL": true,
	"SUBSCRIBE": true, "NOTIFY": true, "REFER": true, "INFO": true, "MESSAGE": true, "PRACK": true,
	"UPDATE": true, "PUBLISH": true,
}

type metrics struct {
	parseErrors    prometheus.Counter
	stackErrors    prometheus.Counter
	requests       *prometheus.CounterVec
	openSockets    *prometheus.GaugeVec
	socketErrors   prometheus.Counter
	connsRefused   prometheus.Counter
	udpRecycles    prometheus.Counter
	strayResponses prometheus.Counter

	callsStarted   prometheus.Counter
	callsAnswered  prometheus.Counter
	callsAdopted   prometheus.Counter
	callsFailed    *prometheus.CounterVec // by the final status sent to the caller
	callsEnded     *prometheus.CounterVec // answered calls, by who ended them
	callsActive    prometheus.Gauge
	callSetup      prometheus.Histogram
	callWriteFails *prometheus.CounterVec // replicated writes of calls given up, by step
	forkResults    *prometheus.CounterVec // callee legs, by outcome
	vendorCalls    *prometheus.CounterVec // calls from vendors, by outcome (b2bua_vendor.go)
	redirects      *prometheus.CounterVec // 3xx targets and follow-me entries, by decision (b2bua_redirect.go)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		parseErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "parse_errors_total",
			Help: "Received datagrams or stream data that could not be parsed as SIP and were dropped.",
		}),
		stackErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "stack_errors_total",
			Help: "Errors reported by the SIP library other than parse errors (logged at debug level).",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "requests_total",
			Help: "SIP requests handled, by method (unknown methods as other).",
		}, []string{"method"}),
		openSockets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "troika", Subsystem: "sip", Name: "open_sockets",
			Help: "SIP sockets currently open, by transport.",
		}, []string{"transport"}),
		socketErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "socket_open_errors_total",
			Help: "Failures to open a SIP socket (alias sockets are retried).",
		}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "tcp_connections_refused_total",
			Help: "TCP/TLS connections closed on accept because the socket had too many.",
		}),
		udpRecycles: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "udp_reader_recycles_total",
			Help: "UDP socket readers restarted to forget remote addresses (MaxUDPPeers reached).",
		}),
		strayResponses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "stray_responses_total",
			Help: "Responses received that matched no client transaction.",
		}),
	}
	m.callsStarted = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "troika", Subsystem: "sip", Name: "calls_started_total",
		Help: "Calls authorized and reserved (StartCall accepted).",
	})
	m.callsAdopted = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "troika", Subsystem: "sip", Name: "calls_adopted_total",
		Help: "Answered calls of a stopped node this node took over from the cluster state.",
	})
	m.callsAnswered = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "troika", Subsystem: "sip", Name: "calls_answered_total",
		Help: "Calls answered by a callee and connected to the caller.",
	})
	m.callsFailed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "troika", Subsystem: "sip", Name: "calls_failed_total",
		Help: "Authenticated INVITEs that ended without an answer, by the final status sent to the caller (402, 404, 480, 486, 487, ...).",
	}, []string{"code"})
	m.callsEnded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "troika", Subsystem: "sip", Name: "calls_ended_total",
		Help: "Answered calls that ended, by who ended them (caller, callee, timer, system).",
	}, []string{"by"})
	m.callsActive = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "troika", Subsystem: "sip", Name: "calls_in_progress",
		Help: "Calls in progress on this node (ringing or answered).",
	})
	m.callSetup = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "troika", Subsystem: "sip", Name: "call_setup_seconds",
		Help:    "Post-dial delay: from the authenticated INVITE to the first ringing (18x) or answer relayed to the caller.",
		Buckets: []float64{.002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10},
	})
	m.callWriteFails = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "troika", Subsystem: "sip", Name: "call_write_failures_total",
		Help: "Replicated writes of calls that failed after their retries (start, answer, end); an end failure leaves a call open.",
	}, []string{"step"})
	m.forkResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "troika", Subsystem: "sip", Name: "callee_legs_total",
		Help: "INVITEs sent to callees, by outcome (answered, failed, redirected, cancelled, late_answer, skipped, error).",
	}, []string{"result"})
	m.vendorCalls = newVendorCallsCounter()
	m.redirects = newRedirectDecisionsCounter()
	for _, c := range []prometheus.Collector{m.parseErrors, m.stackErrors,
		m.requests, m.openSockets, m.socketErrors, m.connsRefused, m.udpRecycles, m.strayResponses,
		m.callsStarted, m.callsAnswered, m.callsAdopted, m.callsFailed, m.callsEnded, m.callsActive, m.callSetup, m.callWriteFails, m.forkResults, m.vendorCalls,
		m.redirects} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("sipstack metrics are already registered: give each Server its own prometheus.Registerer")
			}
			return nil, err
		}
	}
	for _, t := range []string{"udp", "tcp", "tls"} {
		m.openSockets.WithLabelValues(t)
	}
	for _, by := range []string{byCaller, byCallee, byTimer, bySystem} {
		m.callsEnded.WithLabelValues(by)
	}
	return m, nil
}

func (m *metrics) request(method string) {
	if !knownMethods[method] {
		method = "other"
	}
	m.requests.WithLabelValues(method).Inc()
}

// callFailed counts an unanswered call by its final status; codes outside
// 300-699 (which never reach a caller) count as "other".
func (m *metrics) callFailed(code int) {
	label := "other"
	if code >= 300 && code < 700 {
		label = strconv.Itoa(code)
	}
	m.callsFailed.WithLabelValues(label).Inc()
}
