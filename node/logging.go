package node

import (
	"fmt"
	"io"
	"log/slog"
)

// ParseLogLevel reads a log level: debug, info, warn or error.
func ParseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("%q is not a level: use debug, info, warn or error", s)
	}
	return l, nil
}

// NewLogger returns a logger writing to w in format ("json" or "text")
// at the level of level, which may change while the node runs (PUT
// /v1/log-level, SIGHUP): give it to Start in Config.LogLevelVar.
func NewLogger(w io.Writer, format string, level *slog.LevelVar) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: use json or text", format)
}
