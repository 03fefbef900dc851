package sipstack

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register outcomes, the "result" label of troika_sip_register_total.
const (
	resOK              = "ok"                // binding(s) written, 200
	resQuery           = "query"             // no Contact: bindings listed, 200
	resRetransmission  = "retransmission"    // already applied (its 200 was lost): 200, no write
	resUnauthorized    = "unauthorized"      // 401 challenge (no or unusable credentials)
	resStale           = "stale"             // 401 stale=true
	resForbidden       = "forbidden"         // 403: wrong password, unknown or blocked account, user mismatch
	resRateLimited     = "rate_limited"      // 403 without checking: source over the failure limit
	resTooBrief        = "too_brief"         // 423
	resBadRequest      = "bad_request"       // 400 / 420
	resTooManyContacts = "too_many_contacts" // 403 Too Many Contacts
	resStaleCSeq       = "stale_cseq"        // 500: CSeq not above the binding's
	resUnavailable     = "unavailable"       // 503: no nonce secret yet, write failed, overloaded
	resError           = "error"             // 500: unexpected
)

var registerResults = []string{resOK, resQuery, resRetransmission, resUnauthorized, resStale, resForbidden, resRateLimited,
	resTooBrief, resBadRequest, resTooManyContacts, resStaleCSeq, resUnavailable, resError}

// knownMethods bounds the "method" label: anything else counts as "other".
var knownMethods = map[string]bool{
	"REGISTER": true, "OPTIONS": true, "INVITE": true, "ACK": true, "BYE": true, "CANCEL": true,
	"SUBSCRIBE": true, "NOTIFY": true, "REFER": true, "INFO": true, "MESSAGE": true, "PRACK": true,
	"UPDATE": true, "PUBLISH": true,
}

type metrics struct {
	register        *prometheus.CounterVec
	authFailures    prometheus.Counter
	parseErrors     prometheus.Counter
	stackErrors     prometheus.Counter
	requests        *prometheus.CounterVec
	openSockets     *prometheus.GaugeVec
	socketErrors    prometheus.Counter
	connsRefused    prometheus.Counter
	udpRecycles     prometheus.Counter
	strayResponses  prometheus.Counter
	proposeDuration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		register: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "register_total",
			Help: "REGISTER requests by result.",
		}, []string{"result"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "auth_failures_total",
			Help: "Digest authentications that failed (wrong password, unknown or blocked account, user mismatch).",
		}),
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
		proposeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "troika", Subsystem: "sip", Name: "register_propose_seconds",
			Help:    "Time to replicate one REGISTER's bindings.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}),
	}
	for _, c := range []prometheus.Collector{m.register, m.authFailures, m.parseErrors, m.stackErrors,
		m.requests, m.openSockets, m.socketErrors, m.connsRefused, m.udpRecycles, m.strayResponses, m.proposeDuration} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("sipstack metrics are already registered: give each Server its own prometheus.Registerer")
			}
			return nil, err
		}
	}
	for _, r := range registerResults {
		m.register.WithLabelValues(r)
	}
	for _, t := range []string{"udp", "tcp", "tls"} {
		m.openSockets.WithLabelValues(t)
	}
	return m, nil
}

func (m *metrics) request(method string) {
	if !knownMethods[method] {
		method = "other"
	}
	m.requests.WithLabelValues(method).Inc()
}
