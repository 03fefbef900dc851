package sipstack

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/internal/metric"
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
	f := metric.New(reg, "sip")
	m := &metrics{
		parseErrors: f.Counter("parse_errors_total",
			"Received datagrams or stream data dropped without an answer: not SIP, a response that cannot be read, or a request that cannot be answered safely (no usable Via, control characters in the headers a response copies)."),
		badRequests: f.CounterVec("bad_requests_total",
			"Requests refused as malformed, with 400, 416, 420, 483 or 505, by what was wrong: version, uri_scheme, extension, max_forwards, request_line, missing_header, malformed_header, duplicate_header, content_length, invalid.",
			"reason"),
		stackErrors: f.Counter("stack_errors_total",
			"Errors reported by the SIP library other than parse errors (logged at debug level)."),
		requests: f.CounterVec("requests_total",
			"SIP requests handled, by method (unknown methods as other).",
			"method"),
		openSockets: f.GaugeVec("open_sockets",
			"SIP sockets currently open, by transport.",
			"transport"),
		socketErrors: f.Counter("socket_open_errors_total",
			"Failures to open a SIP socket (alias sockets are retried)."),
		connsRefused: f.Counter("tcp_connections_refused_total",
			"TCP/TLS connections closed on accept because the socket had too many."),
		udpRecycles: f.Counter("udp_reader_recycles_total",
			"UDP socket readers restarted to forget remote addresses (MaxUDPPeers reached)."),
		strayResponses: f.Counter("stray_responses_total",
			"Responses received that matched no client transaction."),
	}
	metric.Zero(m.openSockets.WithLabelValues, "udp", "tcp", "tls")
	metric.Zero(m.badRequests.WithLabelValues, sipmsg.BadVersion, sipmsg.BadURIScheme, sipmsg.BadExtension, sipmsg.BadMaxForwards,
		sipmsg.BadRequestLine, sipmsg.BadMissingHeader, sipmsg.BadMalformedHeader, sipmsg.BadDuplicateHeader,
		sipmsg.BadContentLength, sipmsg.BadInvalid)
	return m
}

func (m *metrics) request(method string) {
	if !knownMethods[method] {
		method = "other"
	}
	m.requests.WithLabelValues(method).Inc()
}
