package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// levelTrace is below slog's Debug: raft's trace output.
const levelTrace = slog.LevelDebug - 4

// quietRaftInfo lists raft INFO messages that are routine (replication
// plumbing, snapshot bookkeeping): they go to slog at Debug. Leadership
// changes, elections, membership changes and snapshot completion stay Info.
var quietRaftInfo = map[string]bool{
	"pipelining replication":                 true,
	"aborting pipeline replication":          true,
	"compacting logs":                        true,
	"no logs to truncate":                    true,
	"starting snapshot up to":                true,
	"creating new snapshot":                  true,
	"reaping snapshot":                       true,
	"duplicate requestVote for same term":    true,
	"opening snapshot":                       true,
	"copied to local snapshot":               true,
	"pre-vote successful, starting election": true,
}

// hclogAdapter sends hclog output (raft's logger) to a slog.Logger.
type hclogAdapter struct {
	log     *slog.Logger
	name    string
	implied []any
	level   *atomic.Int32 // hclog.Level; NoLevel defers to the slog handler
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHCLog(l *slog.Logger, name string) *hclogAdapter {
	return &hclogAdapter{log: l.With("component", name), name: name, level: new(atomic.Int32)}
}

func (h *hclogAdapter) slogLevel(level hclog.Level, msg string) slog.Level {
	switch level {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		if quietRaftInfo[msg] {
			return slog.LevelDebug
		}
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (h *hclogAdapter) enabled(level hclog.Level) bool {
	if floor := hclog.Level(h.level.Load()); floor != hclog.NoLevel && level < floor {
		return false
	}
	return h.log.Enabled(context.Background(), h.slogLevel(level, ""))
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if floor := hclog.Level(h.level.Load()); floor != hclog.NoLevel && level < floor {
		return
	}
	lv := h.slogLevel(level, msg)
	ctx := context.Background()
	if !h.log.Enabled(ctx, lv) {
		return
	}
	args = fixArgs(args)
	if lv > slog.LevelDebug && closedConnError(args) {
		// raft reports reads and writes on connections this node closed
		// while shutting down as errors: they are routine.
		lv = slog.LevelDebug
		if !h.log.Enabled(ctx, lv) {
			return
		}
	}
	h.log.Log(ctx, lv, msg, args...)
}

// fixArgs makes hclog arguments fit slog: hclog.Fmt values are formatted
// and a dangling value gets an empty partner.
func fixArgs(args []any) []any {
	out, cloned := args, false
	for i, a := range args {
		if f, ok := a.(hclog.Format); ok {
			if !cloned {
				out, cloned = slices.Clone(args), true
			}
			if len(f) > 0 {
				if format, ok := f[0].(string); ok {
					out[i] = fmt.Sprintf(format, f[1:]...)
					continue
				}
			}
			out[i] = fmt.Sprint(f...)
		}
	}
	if len(out)%2 == 1 {
		out = append(out[:len(out):len(out)], "")
	}
	return out
}

func closedConnError(args []any) bool {
	for _, a := range args {
		if err, ok := a.(error); ok && errors.Is(err, net.ErrClosed) {
			return true
		}
	}
	return false
}

func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogAdapter) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hclogAdapter) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hclogAdapter) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hclogAdapter) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hclogAdapter) IsError() bool { return h.enabled(hclog.Error) }

func (h *hclogAdapter) ImpliedArgs() []any { return h.implied }

func (h *hclogAdapter) With(args ...any) hclog.Logger {
	args = fixArgs(args)
	c := *h
	c.log = h.log.With(args...)
	c.implied = append(h.implied[:len(h.implied):len(h.implied)], args...)
	return &c
}

func (h *hclogAdapter) Name() string { return h.name }

func (h *hclogAdapter) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return h.ResetNamed(name)
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	c.log = h.log.With("component", name)
	return &c
}

func (h *hclogAdapter) SetLevel(level hclog.Level) { h.level.Store(int32(level)) }
func (h *hclogAdapter) GetLevel() hclog.Level      { return hclog.Level(h.level.Load()) }

func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return &stdWriter{h: h, level: level}
}

// stdWriter logs each line written to it.
type stdWriter struct {
	h     *hclogAdapter
	level hclog.Level
}

func (w *stdWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			w.h.Log(w.level, line)
		}
	}
	return len(p), nil
}
