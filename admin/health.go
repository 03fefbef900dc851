package admin

import (
	"net/http"
	"time"
)

// Health: liveness (/healthz), readiness (/readyz), the mark on reads a
// node serves while it knows no leader, and the status page's data
// (statuspage.go). The node provides them through Monitor.

// Monitor is what the health endpoints, the stale mark and the status
// page need of the node, beyond Backend: a Backend that implements it
// gets /readyz, GET /v1/status and the stale mark, and a detailed
// /healthz (others answer /readyz and /v1/status 404, /healthz plainly).
type Monitor interface {
	// Leader returns the raft leader's id as this node knows it, "" when
	// it knows none: its replica may then lag the cluster, and its reads
	// are marked stale.
	Leader() string
	// Alive describes the process for /healthz.
	Alive() Liveness
	// Ready checks whether the node is fit to serve, for /readyz.
	Ready() Readiness
	// Overview is the status page's data, for GET /v1/status.
	Overview() Overview
}

// StaleHeader is set to "true" on the answers to reads (GET /v1/...)
// served while the node knows no raft leader: its replica may miss writes
// the others have made.
const StaleHeader = "X-Troika-Stale"

// Liveness is GET /healthz: the process answers.
type Liveness struct {
	Status        string    `json:"status"` // always "ok": an answer is the check
	Node          string    `json:"node,omitempty"`
	Version       string    `json:"version,omitempty"`
	Commit        string    `json:"commit,omitempty"`
	StartedAt     time.Time `json:"started_at,omitzero"`
	UptimeSeconds float64   `json:"uptime_seconds,omitempty"`
}

// Readiness is GET /readyz: whether the node is fit to serve, and each
// check's finding.
type Readiness struct {
	Ready  bool         `json:"ready"`
	Node   string       `json:"node"`
	Checks []ReadyCheck `json:"checks"`
}

// ReadyCheck is one check of readiness.
type ReadyCheck struct {
	// Name is one of: started (the node has finished starting and is not
	// draining or stopping), leader (it knows a raft leader and heard
	// from it lately), caught_up (its replica is within a bound of the
	// leader's commit index), addresses (it holds every address the
	// ownership map assigns it).
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Readiness checks, in the order they are listed.
const (
	CheckStarted   = "started"
	CheckLeader    = "leader"
	CheckCaughtUp  = "caught_up"
	CheckAddresses = "addresses"
)

// monitor is the backend's Monitor, nil when it has none.
func (s *Server) monitor() Monitor {
	m, _ := s.backend.(Monitor)
	return m
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	out := Liveness{Status: "ok"}
	if m := s.monitor(); m != nil {
		out = m.Alive()
		out.Status = "ok"
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	m := s.monitor()
	if m == nil {
		writeJSON(w, http.StatusNotFound, Error{Error: "this server has no readiness checks (not a troika node)"})
		return
	}
	rd := m.Ready()
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, rd)
}

// nodeLocal are the reads that answer from the node itself, not from its
// replica of the state: never stale.
var nodeLocal = map[string]bool{"/v1/log-level": true, "/v1/auth/blocks": true}

// markStale sets StaleHeader on a read of the replicated state while the
// node knows no leader.
func (s *Server) markStale(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead || nodeLocal[r.URL.Path] {
		return
	}
	if m := s.monitor(); m != nil && m.Leader() == "" {
		w.Header().Set(StaleHeader, "true")
	}
}
