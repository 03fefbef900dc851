package admin

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// The status page: GET / serves one HTML page (inline CSS and script,
// nothing fetched from elsewhere) that polls GET /v1/status with a read
// token the operator types into it. The page itself holds no data and
// needs no token; the token is kept in the tab's sessionStorage and sent
// in the Authorization header, never in a URL.

//go:embed statuspage.html
var statusPageHTML []byte

// statusPageCSP allows the page's own inline script and style (by hash)
// and requests to its own origin, nothing else.
var statusPageCSP = pageCSP(statusPageHTML)

func pageCSP(html []byte) string {
	hashes := func(tag string) string {
		re := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`)
		var out []string
		for _, m := range re.FindAllSubmatch(html, -1) {
			sum := sha256.Sum256(m[1])
			out = append(out, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
		}
		return strings.Join(out, " ")
	}
	return fmt.Sprintf("default-src 'none'; script-src %s; style-src %s; connect-src 'self'; img-src data:; "+
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'", hashes("script"), hashes("style"))
}

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", statusPageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "status.html", time.Time{}, bytes.NewReader(statusPageHTML))
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) error {
	m := s.monitor()
	if m == nil {
		return &httpError{status: http.StatusNotFound, body: Error{Error: "this server has no status overview (not a troika node)"}}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, m.Overview())
	return nil
}

// Overview is GET /v1/status: the cluster at a glance, as the node asked
// sees it (the status page shows it).
type Overview struct {
	Node    string    `json:"node"` // the node that answers
	Version string    `json:"version"`
	Commit  string    `json:"commit"` // short commit, "unknown" when not known
	Time    time.Time `json:"time"`
	// Stale: this node knows no leader; what it shows may lag the cluster.
	Stale     bool              `json:"stale"`
	Ready     Readiness         `json:"ready"`
	Raft      OverviewRaft      `json:"raft"`
	Members   []OverviewMember  `json:"members"`
	Addresses []OverviewAddress `json:"addresses"`
	Counts    OverviewCounts    `json:"counts"`
	// Failovers are the latest moves of an address from one node to
	// another (or to nobody) this node has applied since it started,
	// newest first.
	Failovers []Failover `json:"failovers"`
	// Refused counts what this node refused or could not complete since
	// it started (from its metrics): unanswered calls by final status,
	// REGISTERs by result, authentications by reason. Zero counts are
	// left out.
	Refused []RefusalCount `json:"refused"`
	// Blocked are the sources this node blocks now after repeated
	// failed authentications (at most 20, latest first); BlockedTotal
	// counts them all.
	Blocked      []BlockedSource `json:"blocked"`
	BlockedTotal int             `json:"blocked_total"`
}

// OverviewRaft is this node's raft view.
type OverviewRaft struct {
	State             string `json:"state"` // leader, follower, candidate, shutdown
	LeaderID          string `json:"leader_id"`
	Term              uint64 `json:"term"`
	LastLogIndex      uint64 `json:"last_log_index"`
	CommitIndex       uint64 `json:"commit_index"`
	AppliedIndex      uint64 `json:"applied_index"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	LastContact       string `json:"last_contact"`
}

// OverviewMember is one member: a raft server, a gossip member, or both.
type OverviewMember struct {
	ID   string `json:"id"`
	Addr string `json:"addr"` // gossip address ("" when not heard in gossip)
	// Role is leader, voter or nonvoter in raft, "" for a gossip member
	// that is not a raft server.
	Role string `json:"role"`
	// State is alive, suspect, dead or left in this node's gossip, or
	// unknown for a raft server not heard in gossip.
	State string     `json:"state"`
	Since *time.Time `json:"since,omitempty"`
	// Health is what the member last announced (starting, ok, draining,
	// leaving) while it is alive or suspect, "" otherwise.
	Health  string `json:"health"`
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Calls   int    `json:"calls"`
	// CommitIndex and AppliedIndex are as the member last announced them
	// in gossip (every few seconds); this node's own are current.
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Self         bool   `json:"self"`
}

// OverviewAddress is one virtual IP or alias.
type OverviewAddress struct {
	IP   string `json:"ip"`
	Kind string `json:"kind"` // vip, alias
	// Holder is the node the ownership map assigns it to ("" nobody, as
	// without a [vip] section); HolderState is that node's state (as
	// OverviewMember.State).
	Holder      string     `json:"holder"`
	HolderState string     `json:"holder_state"`
	Epoch       uint64     `json:"epoch"`
	AssignedAt  *time.Time `json:"assigned_at"`
	// HeldBy are the nodes that hold it now: the node answering as it
	// knows, the others as their gossip metadata last said (they announce
	// a change at once). Empty during a handover or with no holder; two
	// would be a fault. HeldKnown is false when a member's announcement
	// was cut short and may have left the address out.
	HeldBy    []string `json:"held_by"`
	HeldKnown bool     `json:"held_known"`
	// HeldHere: the node answering holds it now; State is its reason to
	// hold it or not.
	HeldHere bool   `json:"held_here"`
	State    string `json:"state,omitempty"`
}

// OverviewCounts are what the replicated state holds.
type OverviewCounts struct {
	Registrations int `json:"registrations"` // bindings stored (expired ones not yet purged included)
	Calls         int `json:"calls"`         // calls in progress in the cluster
	CallsHere     int `json:"calls_here"`    // of which this node runs
	Accounts      int `json:"accounts"`
	// XDRsWritten counts the xDRs the cluster has filed, ever.
	XDRsWritten uint64 `json:"xdrs_written"`
}

// Failover is one move of an address in the ownership map.
type Failover struct {
	At      time.Time `json:"at"` // when the leader assigned it (its clock)
	Address string    `json:"address"`
	From    string    `json:"from"`
	To      string    `json:"to"` // "" nobody
}

// RefusalCount is one counter of refusals: what (call, register, auth),
// the reason or status, and how many since the node started.
type RefusalCount struct {
	What   string  `json:"what"`
	Reason string  `json:"reason"`
	Count  float64 `json:"count"`
}
