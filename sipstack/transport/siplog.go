package transport

import (
	"context"
	"log/slog"
)

// sipgo logs every datagram it cannot parse, whole, at Error level, and
// other per-message trouble at Warn or Error: anyone able to send packets
// could fill the logs. quietHandler is the slog handler sipgo gets: it
// counts parse failures and other errors as metrics, and passes every
// record on at Debug level only, with the raw message replaced by its
// length and long values cut.
type quietHandler struct {
	inner       slog.Handler
	parseErrors Counter
	stackErrors Counter
}

const sipgoParseFailure = "failed to parse" // sipgo's message for unparseable input

// MaxLoggedValue is the longest value of a sipgo record the quiet handler
// passes on; longer ones are cut.
const MaxLoggedValue = 200

func (h *quietHandler) Enabled(ctx context.Context, level slog.Level) bool {
	// Errors are always handled so they are counted.
	return level >= slog.LevelError || h.inner.Enabled(ctx, slog.LevelDebug)
}

func (h *quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		switch {
		case r.Message == sipgoParseFailure && h.parseErrors != nil:
			h.parseErrors.Inc()
		case r.Message != sipgoParseFailure && h.stackErrors != nil:
			h.stackErrors.Inc()
		}
	}
	if !h.inner.Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	out := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
	out.AddAttrs(slog.String("sipgo_level", r.Level.String()))
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "data" {
			out.AddAttrs(slog.Int("data_len", len(a.Value.String())))
			return true
		}
		if a.Value.Kind() == slog.KindString || a.Value.Kind() == slog.KindAny {
			if s := a.Value.String(); len(s) > MaxLoggedValue {
				a = slog.String(a.Key, s[:MaxLoggedValue]+"...")
			}
		}
		out.AddAttrs(a)
		return true
	})
	return h.inner.Handle(ctx, out)
}

func (h *quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(attrs)
	return &c
}

func (h *quietHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	return &c
}

// NewQuietHandler returns the slog handler to give sipgo: it passes
// sipgo's records to inner at Debug level only, counting parse failures
// and other errors on the counters (either may be nil).
func NewQuietHandler(inner slog.Handler, parseErrors, stackErrors Counter) slog.Handler {
	return &quietHandler{inner: inner, parseErrors: parseErrors, stackErrors: stackErrors}
}

// Counter is a metric the quiet handler counts on (a prometheus.Counter).
type Counter interface{ Inc() }
