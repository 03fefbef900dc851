package sipstack

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// sipgo also logs through a package-level logger (sip.DefaultLogger, which
// is slog.Default unless set): reference-count warnings on every TCP
// close, lazy header parse failures, unmatched requests. It may only be set
// before sipgo is used, so init points it at a handler that forwards to
// the quiet handler of the most recently created Server (none: dropped).
var globalSipgoLog atomic.Pointer[quietHandler]

func init() { sip.SetDefaultLogger(slog.New(globalHandler{})) }

type globalHandler struct{ attrs []slog.Attr }

func (g globalHandler) target() slog.Handler {
	h := globalSipgoLog.Load()
	if h == nil {
		return nil
	}
	if len(g.attrs) > 0 {
		return h.WithAttrs(g.attrs)
	}
	return h
}

func (g globalHandler) Enabled(ctx context.Context, level slog.Level) bool {
	h := globalSipgoLog.Load()
	return h != nil && h.Enabled(ctx, level)
}

func (g globalHandler) Handle(ctx context.Context, r slog.Record) error {
	if h := g.target(); h != nil {
		return h.Handle(ctx, r)
	}
	return nil
}

func (g globalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return globalHandler{attrs: append(append([]slog.Attr(nil), g.attrs...), attrs...)}
}

func (g globalHandler) WithGroup(string) slog.Handler { return g }

// sipgo logs every datagram it cannot parse, whole, at Error level, and
// other per-message trouble at Warn or Error: anyone able to send packets
// could fill the logs. quietHandler is the slog handler sipgo gets: it
// counts parse failures and other errors as metrics, and passes every
// record on at Debug level only, with the raw message replaced by its
// length and long values cut.
type quietHandler struct {
	inner       slog.Handler
	parseErrors interface{ Inc() }
	stackErrors interface{ Inc() }
}

const sipgoParseFailure = "failed to parse" // sipgo's message for unparseable input

const maxLoggedValue = 200

func (h *quietHandler) Enabled(ctx context.Context, level slog.Level) bool {
	// Errors are always handled so they are counted.
	return level >= slog.LevelError || h.inner.Enabled(ctx, slog.LevelDebug)
}

func (h *quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		if r.Message == sipgoParseFailure {
			h.parseErrors.Inc()
		} else {
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
			if s := a.Value.String(); len(s) > maxLoggedValue {
				a = slog.String(a.Key, s[:maxLoggedValue]+"...")
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
