package admin

import (
	"log/slog"
	"net/http"
	"strings"
)

// LogLevel is the body of GET and PUT /v1/log-level.
type LogLevel struct {
	Level string `json:"level"` // debug, info, warn or error
}

// logLevel answers GET /v1/log-level.
func (s *Server) logLevel(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Level == nil {
		return &httpError{status: http.StatusNotFound, body: Error{Error: "this node's log level cannot be changed at run time"}}
	}
	writeJSON(w, http.StatusOK, LogLevel{Level: levelName(s.cfg.Level.Level())})
	return nil
}

// setLogLevel answers PUT /v1/log-level: the node's log level from now
// until it restarts (or a SIGHUP reloads log_level from its file).
func (s *Server) setLogLevel(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Level == nil {
		return &httpError{status: http.StatusNotFound, body: Error{Error: "this node's log level cannot be changed at run time"}}
	}
	var in LogLevel
	if err := decode(r, &in); err != nil {
		return err
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(in.Level)); err != nil {
		return badRequest("level", "%q is not a level: use debug, info, warn or error", in.Level)
	}
	before := s.cfg.Level.Level()
	s.cfg.Level.Set(l)
	// Logged at WARN so that the change is seen whatever the new level.
	s.cfg.Logger.Warn("log level changed", "from", levelName(before), "to", levelName(l), "token", TokenName(r.Context()),
		"remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, LogLevel{Level: levelName(l)})
	return nil
}

func levelName(l slog.Level) string { return strings.ToLower(l.String()) }
