package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/cluster"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/buildinfo"
)

// Honest health: liveness and readiness (admin.Monitor), the status
// page's overview, the quorum `troika cluster status` exits on, the
// recent failovers, and the metrics of the state and the build.

// Commit is the commit the build was made from, set by the linker (-X
// github.com/troika-sip/troika/node.Commit=...); empty: the toolchain's
// vcs.revision, if it recorded one.
var Commit string

// Build returns what this binary was built from: the linker's Version and
// Commit, or what the Go toolchain recorded (buildinfo).
func Build() buildinfo.Info { return buildinfo.Read(Version, Commit) }

// ReadyMaxLag is how many log entries a node's applied index may be
// behind the leader's commit index (as the leader last gossiped it, every
// few seconds, so the bound is never tighter than that) and still be
// ready.
const ReadyMaxLag = 100

// readyContactMax is how long a follower may go without hearing from the
// leader and still be ready: twice raft's heartbeat timeout, at least 2 s.
func (n *Node) readyContactMax() time.Duration {
	hb := n.cfg.Cluster.HeartbeatTimeout
	if hb <= 0 {
		hb = time.Second
	}
	return max(2*hb, 2*time.Second)
}

// Leader implements admin.Monitor: the leader's id, "" when none is known.
func (n *Node) Leader() string { return n.cluster.LeaderID() }

// Alive implements admin.Monitor.
func (n *Node) Alive() admin.Liveness {
	b := Build()
	return admin.Liveness{Node: n.cfg.NodeID, Version: b.Version, Commit: b.ShortCommit(),
		StartedAt: n.startedAt.UTC(), UptimeSeconds: time.Since(n.startedAt).Round(time.Millisecond).Seconds()}
}

// Ready implements admin.Monitor: the node has started and is in service,
// knows a leader it heard from lately, has applied the log within
// ReadyMaxLag of the leader's commit index, and holds every address the
// ownership map assigns it.
func (n *Node) Ready() admin.Readiness {
	rd := admin.Readiness{Node: n.cfg.NodeID, Ready: true, Checks: []admin.ReadyCheck{}}
	check := func(name string, ok bool, format string, args ...any) {
		rd.Checks = append(rd.Checks, admin.ReadyCheck{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
		rd.Ready = rd.Ready && ok
	}
	started := false
	select {
	case <-n.ready:
		started = true
	default:
	}
	switch h := n.drain.health(); {
	case !started:
		check(admin.CheckStarted, false, "still starting")
	case h != cluster.HealthOK:
		check(admin.CheckStarted, false, "%s: this node is leaving the cluster", h)
	default:
		check(admin.CheckStarted, true, "in service, started %s ago", time.Since(n.startedAt).Round(time.Second))
	}

	leads, contact := n.cluster.LeaderContact()
	leaderID := n.cluster.LeaderID()
	idx := n.cluster.Indexes()
	switch since := time.Since(contact); {
	case leads:
		check(admin.CheckLeader, true, "this node leads")
	case leaderID == "":
		check(admin.CheckLeader, false, "no raft leader known: is a majority of the voters up and reachable from here?")
	case contact.IsZero():
		check(admin.CheckLeader, false, "%s is named leader, but this node has not heard from it yet", leaderID)
	case since > n.readyContactMax():
		check(admin.CheckLeader, false, "%s is named leader, but this node last heard from it %s ago (bound %s)",
			leaderID, since.Round(time.Millisecond), n.readyContactMax())
	default:
		check(admin.CheckLeader, true, "%s leads; heard from it %s ago", leaderID, since.Round(time.Millisecond))
	}

	var leaderCommit uint64
	if !leads && leaderID != "" {
		for _, m := range n.gossip.Members() {
			if m.ID == leaderID {
				leaderCommit = m.Meta.CommitIndex
			}
		}
	}
	ok, detail := caughtUp(leaderID != "", idx, leaderCommit)
	if ok && n.outOfStep.Load() {
		ok, detail = false, detail+"; out of step since it lost its leader, back in step at the next check (instep.go)"
	}
	check(admin.CheckCaughtUp, ok, "%s", detail)

	if n.owner == nil {
		check(admin.CheckAddresses, true, "no [vip] section: this node takes no addresses")
		return rd
	}
	var held, unheld []string
	for _, a := range cluster.AddressStatuses(n.owner, n.state) {
		switch {
		case a.Node != n.cfg.NodeID:
		case a.HeldByMe:
			held = append(held, a.IP)
		default:
			why := a.State
			if why == "" {
				why = "not taken yet"
			}
			if a.UnheldSince != nil {
				why = fmt.Sprintf("for %s: %s", time.Since(*a.UnheldSince).Round(time.Millisecond), why)
			}
			unheld = append(unheld, a.IP+" ("+why+")")
		}
	}
	switch {
	case len(unheld) > 0:
		check(admin.CheckAddresses, false, "assigned here but not held: %s", strings.Join(unheld, "; "))
	case len(held) > 0:
		check(admin.CheckAddresses, true, "holds every address assigned here: %s", strings.Join(held, ", "))
	default:
		check(admin.CheckAddresses, true, "no address is assigned here")
	}
	return rd
}

// caughtUp is the caught_up check: a node's applied index against the
// leader's commit index as the leader last gossiped it (0: not heard), or
// its own commit index when that is higher (the gossiped one is up to a
// few seconds old).
func caughtUp(leaderKnown bool, idx cluster.Indexes, leaderCommit uint64) (bool, string) {
	if !leaderKnown {
		return false, fmt.Sprintf("cannot tell without a leader (applied index %d, own commit index %d)", idx.Applied, idx.Commit)
	}
	ref, from := idx.Commit, "its own commit index"
	if leaderCommit > ref {
		ref, from = leaderCommit, "the leader's commit index (as it last gossiped it)"
	}
	lag := uint64(0)
	if ref > idx.Applied {
		lag = ref - idx.Applied
	}
	return lag <= ReadyMaxLag, fmt.Sprintf("applied index %d, %s %d: %d behind (bound %d)", idx.Applied, from, ref, lag, ReadyMaxLag)
}

// Quorum is this node's view of whether the cluster can decide: it knows
// a leader, and a majority of the raft voters are alive in its gossip.
type Quorum struct {
	OK     bool   `json:"ok"`
	Voters int    `json:"voters"` // in the raft configuration
	Alive  int    `json:"alive"`  // voters alive in this node's gossip, itself included
	Needed int    `json:"needed"` // a majority of Voters
	Leader string `json:"leader"` // "" none known
}

func (n *Node) quorum(members []cluster.Member) Quorum {
	q := Quorum{Leader: n.cluster.LeaderID()}
	alive := map[string]bool{n.cfg.NodeID: true}
	for _, m := range members {
		if m.State == cluster.MemberAlive {
			alive[m.ID] = true
		}
	}
	for _, v := range n.cluster.Voters() {
		q.Voters++
		if alive[v] {
			q.Alive++
		}
	}
	q.Needed = q.Voters/2 + 1
	q.OK = q.Voters > 0 && q.Leader != "" && q.Alive >= q.Needed
	return q
}

// Overview implements admin.Monitor: the status page's data.
func (n *Node) Overview() admin.Overview {
	b := Build()
	cs := n.cluster.Status()
	members := n.gossip.Members()
	ov := admin.Overview{
		Node: n.cfg.NodeID, Version: b.Version, Commit: b.ShortCommit(), Time: time.Now().UTC(),
		Stale: cs.LeaderID == "", Ready: n.Ready(),
		Raft: admin.OverviewRaft{State: cs.State, LeaderID: cs.LeaderID, Term: cs.Term, LastLogIndex: cs.LastLogIndex,
			CommitIndex: cs.CommitIndex, AppliedIndex: cs.AppliedIndex, LastSnapshotIndex: cs.LastSnapshotIndex, LastContact: cs.LastContact},
		Members:   overviewMembers(n.cfg.NodeID, cs, members),
		Failovers: n.failovers.recentList(),
		Refused:   n.refusals(),
	}
	state := map[string]string{}
	for _, m := range ov.Members {
		state[m.ID] = m.State
	}
	ov.Addresses = []admin.OverviewAddress{}
	for _, a := range cluster.AddressStatuses(n.owner, n.state) {
		heldBy, known := heldBy(n.cfg.NodeID, a, members)
		ov.Addresses = append(ov.Addresses, admin.OverviewAddress{IP: a.IP, Kind: a.Kind, Holder: a.Node, HolderState: state[a.Node],
			Epoch: a.Epoch, AssignedAt: a.AssignedAt, HeldBy: heldBy, HeldKnown: known, HeldHere: a.HeldByMe, State: a.State})
	}
	c := n.state.Counts()
	ov.Counts = admin.OverviewCounts{Registrations: c.Bindings, Calls: c.Calls, CallsHere: n.sip.ActiveCalls(),
		Accounts: c.Accounts, XDRsWritten: n.state.XDRSeq()}
	blocked := n.AuthBlocks().Sources
	slices.SortFunc(blocked, func(a, b admin.BlockedSource) int { return strings.Compare(b.Until, a.Until) }) // RFC 3339, UTC
	ov.BlockedTotal = len(blocked)
	ov.Blocked = blocked[:min(len(blocked), overviewBlockedMax)]
	return ov
}

const overviewBlockedMax = 20

// heldBy lists the nodes that hold address a now: this node as it knows
// itself, the other members alive in gossip as they last announced, and
// whether every announcement could tell.
func heldBy(self string, a cluster.AddressStatus, members []cluster.Member) ([]string, bool) {
	out, known := []string{}, true
	if a.HeldByMe {
		out = append(out, self)
	}
	for _, m := range members {
		if m.ID == self || m.State != cluster.MemberAlive {
			continue
		}
		holds, ok := m.Meta.Holds(a.IP)
		if holds {
			out = append(out, m.ID)
		}
		known = known && ok
	}
	slices.Sort(out)
	return out, known
}

// overviewMembers merges the raft servers and the gossip members: role
// from raft, state and what it announced from gossip; this node's own
// indexes are current.
func overviewMembers(self string, cs cluster.Status, members []cluster.Member) []admin.OverviewMember {
	byID := map[string]*admin.OverviewMember{}
	var out []*admin.OverviewMember
	get := func(id string) *admin.OverviewMember {
		m := byID[id]
		if m == nil {
			m = &admin.OverviewMember{ID: id, State: "unknown", Self: id == self}
			byID[id] = m
			out = append(out, m)
		}
		return m
	}
	for _, sv := range cs.Servers {
		m := get(sv.ID)
		m.Role = strings.ToLower(sv.Suffrage)
		if sv.Leader {
			m.Role = "leader"
		}
	}
	for _, gm := range members {
		m := get(gm.ID)
		m.Addr, m.State = gm.Addr, gm.Status()
		since := gm.Since.UTC()
		m.Since = &since
		if gm.State == cluster.MemberAlive {
			m.Health = gm.Meta.Health
		}
		m.Version, m.Commit, m.Calls = gm.Meta.Version, gm.Meta.Commit, gm.Meta.Load
		m.CommitIndex, m.AppliedIndex = gm.Meta.CommitIndex, gm.Meta.AppliedIndex
	}
	if m := byID[self]; m != nil {
		m.CommitIndex, m.AppliedIndex = cs.CommitIndex, cs.AppliedIndex
	}
	slices.SortFunc(out, func(a, b *admin.OverviewMember) int { return strings.Compare(a.ID, b.ID) })
	res := make([]admin.OverviewMember, len(out))
	for i, m := range out {
		res[i] = *m
	}
	return res
}

// refusals reads this node's refusal counters from its metrics: unanswered
// calls by final status, REGISTERs refused by result, authentications
// refused by reason. Zero counts are left out.
func (n *Node) refusals() []admin.RefusalCount {
	out := []admin.RefusalCount{}
	if n.metrics == nil {
		return out
	}
	families, err := n.metrics.Gather()
	if err != nil {
		n.log.Debug("status: reading the metrics", "error", err)
	}
	want := map[string]struct{ what, label string }{
		"troika_sip_calls_failed_total":  {"call", "code"},
		"troika_sip_register_total":      {"register", "result"},
		"troika_sip_auth_refusals_total": {"auth", "reason"},
	}
	notRefused := map[string]bool{"ok": true, "query": true, "retransmission": true, "unauthorized": true, "stale": true}
	for _, f := range families {
		w, ok := want[f.GetName()]
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			reason := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == w.label {
					reason = l.GetValue()
				}
			}
			if v := m.GetCounter().GetValue(); v > 0 && !(w.what == "register" && notRefused[reason]) {
				out = append(out, admin.RefusalCount{What: w.what, Reason: reason, Count: v})
			}
		}
	}
	return out
}

// failoverLog remembers the latest moves of addresses in the ownership
// map this node has applied.
type failoverLog struct {
	mu     sync.Mutex
	last   map[string]fsm.Assignment // nil until the first look
	recent []admin.Failover          // newest first
}

const failoversKept = 20

// observe compares the ownership map with the last look and records every
// address that moved away from a node.
func (f *failoverLog) observe(now []fsm.Assignment) {
	f.mu.Lock()
	defer f.mu.Unlock()
	next := make(map[string]fsm.Assignment, len(now))
	for _, a := range now {
		next[a.IP] = a
		prev, ok := f.last[a.IP]
		if f.last == nil || !ok || prev.Node == "" || prev.Node == a.Node {
			continue
		}
		fo := admin.Failover{At: time.UnixMilli(a.AssignedAt).UTC(), Address: a.IP, From: prev.Node, To: a.Node}
		f.recent = append([]admin.Failover{fo}, f.recent...)
		if len(f.recent) > failoversKept {
			f.recent = f.recent[:failoversKept]
		}
	}
	f.last = next
}

func (f *failoverLog) recentList() []admin.Failover {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]admin.Failover{}, f.recent...)
}

// watchFailovers follows the ownership map into failovers until ctx ends.
func (n *Node) watchFailovers(ctx context.Context) {
	for {
		changed := n.state.AssignmentsChanged()
		n.failovers.observe(n.state.Assignments())
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// registerStatusMetrics exports the state's counts, the build, readiness
// and the gossip view.
func (n *Node) registerStatusMetrics(reg prometheus.Registerer) {
	f := promauto.With(reg)
	b := Build()
	f.NewGauge(prometheus.GaugeOpts{
		Namespace: "troika", Name: "build_info",
		Help:        "The version and commit this binary was built from (value 1).",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "modified": fmt.Sprint(b.Modified), "go_version": b.GoVersion},
	}).Set(1)
	counts := func(name, help string, v func(fsm.Counts) int) {
		f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "troika", Subsystem: "state", Name: name, Help: help},
			func() float64 { return float64(v(n.state.Counts())) })
	}
	counts("bindings", "Registration bindings in the replicated state (the same on every node once caught up; expired ones not yet purged included).",
		func(c fsm.Counts) int { return c.Bindings })
	counts("calls", "Calls in progress in the replicated state, on every node of the cluster.", func(c fsm.Counts) int { return c.Calls })
	counts("accounts", "Accounts in the replicated state.", func(c fsm.Counts) int { return c.Accounts })
	counts("xdrs", "xDRs kept in the replicated state (older ones are trimmed).", func(c fsm.Counts) int { return c.XDRs })
	f.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "troika", Name: "xdrs_written_total",
		Help: "xDRs the cluster has written (the replicated state's xDR sequence: the same on every node once caught up; it survives restarts).",
	}, func() float64 { return float64(n.state.XDRSeq()) })
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "troika", Name: "ready",
		Help: "1 while this node is ready (GET /readyz answers 200), else 0.",
	}, func() float64 {
		if n.Ready().Ready {
			return 1
		}
		return 0
	})
	reg.MustRegister(gossipCollector{n})
}

var gossipMembersDesc = prometheus.NewDesc("troika_gossip_members",
	"Members in this node's gossip view (itself included), by state: alive, suspect, dead, left.", []string{"state"}, nil)

// gossipCollector counts the gossip members by state at each scrape.
type gossipCollector struct{ n *Node }

func (c gossipCollector) Describe(ch chan<- *prometheus.Desc) { ch <- gossipMembersDesc }

func (c gossipCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{cluster.MemberAlive: 0, cluster.MemberSuspect: 0, cluster.MemberDead: 0, cluster.MemberLeft: 0}
	if c.n.gossip != nil {
		for _, m := range c.n.gossip.Members() {
			counts[m.Status()]++
		}
	}
	for s, v := range counts {
		ch <- prometheus.MustNewConstMetric(gossipMembersDesc, prometheus.GaugeValue, float64(v), s)
	}
}

// Status is GET /v1/cluster.
type Status struct {
	Version string `json:"version"`
	Commit  string `json:"commit"` // short commit, "unknown" when not known (Build)
	// Stale: this node knows no raft leader, so what it reports may lag
	// the cluster (reads then carry admin.StaleHeader).
	Stale bool `json:"stale"`
	// Quorum: whether, as this node sees it, a leader is known and a
	// majority of the voters is alive (`troika cluster status` exits 5
	// otherwise).
	Quorum Quorum `json:"quorum"`
	// Ready is this node's readiness (GET /readyz).
	Ready   admin.Readiness `json:"ready"`
	Cluster cluster.Status  `json:"cluster"`
	Sockets []string        `json:"sip_sockets"`
	// Addresses are the managed addresses (virtual IPs and aliases): who
	// the ownership map assigns each to, its epoch, and whether this node
	// holds it.
	Addresses []cluster.AddressStatus `json:"addresses"`
	// Members is this node's gossip view: state and metadata of every
	// member.
	Members []cluster.Member `json:"members"`
	// ClearPasswords counts the records that still hold a clear password
	// (written by a build before digest credentials): the leader replaces
	// them once every voter runs this build (0 afterwards).
	ClearPasswords int `json:"clear_passwords"`
}

// ClusterStatus implements admin.Backend.
func (n *Node) ClusterStatus() any {
	b := Build()
	cs, members := n.cluster.Status(), n.gossip.Members()
	return Status{Version: b.Version, Commit: b.ShortCommit(), Stale: cs.LeaderID == "", Quorum: n.quorum(members), Ready: n.Ready(),
		Cluster: cs, Sockets: n.sip.Sockets(), Addresses: cluster.AddressStatuses(n.owner, n.state), Members: members,
		ClearPasswords: len(n.state.LegacySecrets())}
}
