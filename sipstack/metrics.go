package sipstack

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/troika-sip/troika/sipstack/sipmsg"
)

// knownMethods bounds the "method" label: anything else counts as "other".
var knownMethods = map[string]bool{
	"REGISTER": true, "OPTIONS": true, "INVITE": true, "ACK": true, "BYE": true, "CANCEL": true,
	"SUBSCRIBE": true, "NOTIFY": true, "REFER": true, "INFO": true, "MESSAGE": true, "PRACK": true,
	"UPDATE": true, "PUBLISH": true,
}

type metrics struct {
	parseErrors    prometheus.Counter
	badRequests    *prometheus.CounterVec
	stackErrors    prometheus.Counter
	requests       *prometheus.CounterVec
	openSockets    *prometheus.GaugeVec
	socketErrors   prometheus.Counter
	connsRefused   prometheus.Counter
	udpRecycles    prometheus.Counter
	strayResponses prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		parseErrors: f.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "parse_errors_total",
			Help: "Received datagrams or stream data dropped without an answer: not SIP, a response that cannot be read, or a request that cannot be answered safely (no usable Via, control characters in the headers a response copies).",
		}),
		badRequests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "bad_requests_total",
			Help: "Requests refused as malformed, with 400, 416, 420, 483 or 505, by what was wrong: version, uri_scheme, extension, max_forwards, request_line, missing_header, malformed_header, duplicate_header, content_length, invalid.",
		}, []string{"reason"}),
		stackErrors: f.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "stack_errors_total",
			Help: "Errors reported by the SIP library other than parse errors (logged at debug level).",
		}),
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "requests_total",
			Help: "SIP requests handled, by method (unknown methods as other).",
		}, []string{"method"}),
		openSockets: f.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "troika", Subsystem: "sip", Name: "open_sockets",
			Help: "SIP sockets currently open, by transport.",
		}, []string{"transport"}),
		socketErrors: f.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "socket_open_errors_total",
			Help: "Failures to open a SIP socket (alias sockets are retried).",
		}),
		connsRefused: f.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "tcp_connections_refused_total",
			Help: "TCP/TLS connections closed on accept because the socket had too many.",
		}),
		udpRecycles: f.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "udp_reader_recycles_total",
			Help: "UDP socket readers restarted to forget remote addresses (MaxUDPPeers reached).",
		}),
		strayResponses: f.NewCounter(prometheus.CounterOpts{
			Namespace: "troika", Subsystem: "sip", Name: "stray_responses_total",
			Help: "Responses received that matched no client transaction.",
		}),
	}
	for _, t := range []string{"udp", "tcp", "tls"} {
		m.openSockets.WithLabelValues(t)
	}
	for _, r := range []string{sipmsg.BadVersion, sipmsg.BadURIScheme, sipmsg.BadExtension, sipmsg.BadMaxForwards,
		sipmsg.BadRequestLine, sipmsg.BadMissingHeader, sipmsg.BadMalformedHeader, sipmsg.BadDuplicateHeader,
		sipmsg.BadContentLength, sipmsg.BadInvalid} {
		m.badRequests.WithLabelValues(r)
	}
	return m
}

func (m *metrics) request(method string) {
	if !knownMethods[method] {
		method = "other"
	}
	m.requests.WithLabelValues(method).Inc()
}
