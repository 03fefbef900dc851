package cluster

import (
	"bufio"
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/troika-sip/troika/internal/retry"
)

// Gossip runs memberlist on this node: failure detection and node
// metadata (version, roles, load, health) for every member. It informs;
// raft decides: nothing here changes raft membership or address
// ownership. The leader reads Members to place addresses (ownership.go).
//
// Tuned for three to five nodes on one LAN (GossipConfig's defaults): a
// node is probed every 150 ms with a 75 ms ack timeout, and a suspect is
// declared dead 300 ms later, so a crashed or cut-off node is dead to the
// others in about half a second (memberlist's LAN profile takes 5-6 s with
// three nodes). The gossip port carries UDP and TCP, encrypted (AES-GCM) with a
// key derived from the cluster key.
type Gossip struct {
	cfg  GossipConfig
	ml   *memberlist.Memberlist
	log  *slog.Logger
	self string
	addr string // advertised ip:port (memberlist's LocalNode is not safe to read while metadata changes)

	mu      sync.Mutex
	meta    []byte                 // this node's encoded metadata
	members map[string]*memberView // by node id, from memberlist's events
	watch   chan struct{}          // closed and replaced at every membership or metadata change

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// GossipConfig configures Gossip. Zero tuning values take the defaults in
// parentheses.
type GossipConfig struct {
	NodeID string
	// BindAddr is the ip:port memberlist listens on (UDP and TCP).
	BindAddr string
	// AdvertiseAddr is the ip:port the others reach it at; default the
	// bound address (which must not then be a wildcard).
	AdvertiseAddr string
	// Join lists the gossip addresses of the other members. They are
	// tried at start and then every ReconnectEvery for any that is not
	// alive, so the two sides of a healed partition find each other
	// again.
	Join []string
	// Key is the cluster key; the gossip encryption key is derived from it
	// (HKDF-SHA256, 32 bytes).
	Key    []byte
	Meta   NodeMeta
	Logger *slog.Logger

	ProbeInterval  time.Duration // (150ms) how often each node probes another
	ProbeTimeout   time.Duration // (75ms) how long it waits for the ack (LAN round trip)
	SuspicionMult  int           // (2) a suspect is dead after SuspicionMult × ProbeInterval (with 3-5 nodes)
	GossipInterval time.Duration // (50ms) how often state changes are gossiped
	ReconnectEvery time.Duration // (2s) how often Join addresses that are not alive are retried
}

// NodeMeta is what a node tells the others about itself through gossip.
// It must stay under memberlist's 512-byte limit.
type NodeMeta struct {
	Version string   `json:"v"`
	Commit  string   `json:"c,omitempty"` // the commit it was built from (12 characters, "+modified" for a changed tree)
	Roles   []string `json:"r,omitempty"`
	Load    int      `json:"l"`           // calls in progress
	Health  string   `json:"h"`           // HealthStarting, HealthOK, HealthDraining
	Addrs   bool     `json:"a,omitempty"` // manages virtual and alias addresses ([vip] configured)
	// CommitIndex and AppliedIndex are its raft commit and applied
	// indexes when it last published its metadata (every few seconds):
	// the leader's commit index is what readiness measures a follower's
	// lag against.
	CommitIndex  uint64 `json:"ci,omitempty"`
	AppliedIndex uint64 `json:"ai,omitempty"`
	// Held lists the addresses it holds now, and HeldCount counts them:
	// the list stops short (HeldCount > len(Held)) when they would not
	// fit in the metadata. HeldListed says it announces them (a build
	// before it does not).
	Held       []string `json:"ha,omitempty"`
	HeldCount  int      `json:"hc,omitempty"`
	HeldListed bool     `json:"hl,omitempty"`
}

// SetHeld sets the addresses m says are held (and their count), cut
// short as needed for the whole metadata to fit memberlist's limit.
func (m *NodeMeta) SetHeld(held []string) {
	m.Held, m.HeldCount, m.HeldListed = slices.Clone(held), len(held), true
	for len(m.Held) > 0 {
		if b, err := json.Marshal(m); err == nil && len(b) <= memberlist.MetaMaxSize {
			return
		}
		m.Held = m.Held[:len(m.Held)-1]
	}
}

// Holds reports whether the member's metadata says it holds ip, and
// whether the metadata can tell: it names ip, or lists every address the
// member holds, or the member manages no addresses.
func (m NodeMeta) Holds(ip string) (holds, known bool) {
	switch {
	case slices.Contains(m.Held, ip):
		return true, true
	case !m.Addrs:
		return false, true
	}
	return false, m.HeldListed && m.HeldCount <= len(m.Held)
}

// Node health values in NodeMeta.
const (
	HealthStarting = "starting"
	HealthOK       = "ok"
	HealthDraining = "draining"
	HealthLeaving  = "leaving" // set just before a graceful Leave
)

// A member's state as this node's memberlist sees it. A suspect member is
// alive (Member.Suspect says it is suspected) until memberlist declares it
// dead.
const (
	MemberAlive   = "alive"
	MemberDead    = "dead"
	MemberLeft    = "left"    // left gracefully: its last metadata said HealthLeaving
	MemberSuspect = "suspect" // Member.Status of an alive member under suspicion
)

// Member is one member of the gossip cluster.
type Member struct {
	ID    string    `json:"id"`
	Addr  string    `json:"addr"`
	State string    `json:"state"` // alive, dead, left
	Since time.Time `json:"since"` // when this node saw it enter that state
	// Suspect: alive, but this node's probes of it are failing: its
	// memberlist suspects it (dead unless it answers within the
	// suspicion timeout), or none of its direct probes has been answered
	// for a few probe rounds, at least suspectAfterMin (it may answer only
	// through the other members).
	Suspect bool     `json:"suspect,omitempty"`
	Meta    NodeMeta `json:"meta"`
}

// Status is the member's state for operators: alive, suspect, dead or
// left.
func (m Member) Status() string {
	if m.State == MemberAlive && m.Suspect {
		return MemberSuspect
	}
	return m.State
}

type memberView struct {
	Member
	lastAck     time.Time // the last answer to one of this node's direct probes
	suspectedAt time.Time // when this node's memberlist last suspected it
}

// Gossip tuning defaults (see Gossip).
const (
	defaultProbeInterval  = 150 * time.Millisecond
	defaultProbeTimeout   = 75 * time.Millisecond
	defaultSuspicionMult  = 2
	defaultGossipInterval = 50 * time.Millisecond
	defaultReconnectEvery = 2 * time.Second
	gossipFirstJoinRetry  = 200 * time.Millisecond
	gossipKeyInfo         = "troika memberlist key v1"
)

// GossipKey derives memberlist's 32-byte encryption key (AES-256) from
// the cluster key.
func GossipKey(clusterKey []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, clusterKey, nil, gossipKeyInfo, 32)
}

// StartGossip creates this node's memberlist and starts joining the
// others in the background (it does not wait for them).
func StartGossip(cfg GossipConfig) (*Gossip, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if !nodeIDPattern.MatchString(cfg.NodeID) {
		return nil, fmt.Errorf("gossip: node id %q is not valid", cfg.NodeID)
	}
	if len(cfg.Key) < minKeyLen {
		return nil, fmt.Errorf("gossip: cluster key: must be at least %d bytes", minKeyLen)
	}
	setDefault(&cfg.ProbeInterval, defaultProbeInterval)
	setDefault(&cfg.ProbeTimeout, defaultProbeTimeout)
	setDefault(&cfg.GossipInterval, defaultGossipInterval)
	setDefault(&cfg.ReconnectEvery, defaultReconnectEvery)
	setDefault(&cfg.SuspicionMult, defaultSuspicionMult)
	bind, err := netip.ParseAddrPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip: bind address %q: must be ip:port: %w", cfg.BindAddr, err)
	}
	adv := bind
	if cfg.AdvertiseAddr != "" {
		if adv, err = netip.ParseAddrPort(cfg.AdvertiseAddr); err != nil {
			return nil, fmt.Errorf("gossip: advertise address %q: must be ip:port: %w", cfg.AdvertiseAddr, err)
		}
	}
	if adv.Addr().IsUnspecified() {
		return nil, fmt.Errorf("gossip: advertise address %s: the others cannot reach a wildcard address: set it", adv)
	}
	key, err := GossipKey(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("gossip: derive key: %w", err)
	}
	g := &Gossip{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "gossip"),
		self:    cfg.NodeID,
		members: map[string]*memberView{},
		watch:   make(chan struct{}),
		stop:    make(chan struct{}),
	}
	if g.meta, err = encodeMeta(cfg.Meta); err != nil {
		return nil, err
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeID
	mc.BindAddr = bind.Addr().String()
	mc.BindPort = int(bind.Port())
	mc.AdvertiseAddr = adv.Addr().String()
	mc.AdvertisePort = int(adv.Port())
	mc.SecretKey = key
	mc.Delegate = (*gossipDelegate)(g)
	mc.Events = (*gossipEvents)(g)
	mc.Ping = (*gossipPing)(g)
	mc.Logger = log.New(&memberlistLog{log: g.log, suspect: g.suspect}, "", 0)
	// Fast failure detection for a handful of nodes on one LAN.
	mc.ProbeInterval = cfg.ProbeInterval
	mc.ProbeTimeout = cfg.ProbeTimeout
	mc.SuspicionMult = cfg.SuspicionMult
	mc.SuspicionMaxTimeoutMult = 3
	mc.GossipInterval = cfg.GossipInterval
	mc.IndirectChecks = 2
	mc.TCPTimeout = time.Second
	mc.PushPullInterval = 10 * time.Second
	mc.GossipToTheDeadTime = 10 * time.Second
	mc.DeadNodeReclaimTime = 10 * time.Second // a restarted node may come back on another address

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: listen on %s: %w", cfg.BindAddr, err)
	}
	g.ml = ml
	ln := ml.LocalNode()
	g.addr = net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
	g.log.Info("gossip: started", "bind", cfg.BindAddr, "advertise", net.JoinHostPort(mc.AdvertiseAddr, strconv.Itoa(mc.AdvertisePort)),
		"probe_interval", cfg.ProbeInterval, "probe_timeout", cfg.ProbeTimeout, "suspicion_mult", cfg.SuspicionMult)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.joinLoop()
	}()
	return g, nil
}

// Addr is the address this node gossips at.
func (g *Gossip) Addr() string { return g.addr }

// joinLoop joins the configured members at start and keeps retrying the
// ones that are not alive: gossipFirstJoinRetry after the first try,
// doubling up to ReconnectEvery.
func (g *Gossip) joinLoop() {
	wait := retry.Policy{Initial: min(gossipFirstJoinRetry, g.cfg.ReconnectEvery), Max: g.cfg.ReconnectEvery}.New()
	for {
		g.joinMissing()
		if !wait.Wait(g.stop) {
			return
		}
	}
}

// joinMissing tries to join the configured members that are not alive.
func (g *Gossip) joinMissing() {
	self := g.Addr()
	alive := map[string]bool{}
	for _, m := range g.Members() {
		if m.State == MemberAlive {
			alive[m.Addr] = true
		}
	}
	var try []string
	for _, a := range g.cfg.Join {
		if a != self && !alive[a] {
			try = append(try, a)
		}
	}
	if len(try) == 0 {
		return
	}
	n, err := g.ml.Join(try)
	if err != nil && n == 0 {
		g.log.Debug("gossip: join: no member answered yet", "tried", strings.Join(try, ","), "error", err)
	} else if n > 0 {
		g.log.Info("gossip: joined", "contacted", n, "of", strings.Join(try, ","))
	}
}

// SetMeta changes this node's metadata and gossips it.
func (g *Gossip) SetMeta(m NodeMeta) error {
	b, err := encodeMeta(m)
	if err != nil {
		return err
	}
	g.mu.Lock()
	same := string(b) == string(g.meta)
	g.meta = b
	g.mu.Unlock()
	if same {
		return nil
	}
	return g.ml.UpdateNode(time.Second)
}

func encodeMeta(m NodeMeta) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("gossip: node metadata of %d bytes is over memberlist's %d", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// Members returns every member this node has seen (itself included),
// with its state, ordered by id.
func (g *Gossip) Members() []Member {
	now := time.Now()
	g.mu.Lock()
	alive := 0
	for _, m := range g.members {
		if m.State == MemberAlive && m.ID != g.self {
			alive++
		}
	}
	out := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		mm := m.Member
		mm.Suspect = m.ID != g.self && m.State == MemberAlive && g.suspected(m, alive, now)
		out = append(out, mm)
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// suspected reports whether an alive member is under suspicion at now
// (Member.Suspect): suspected by this node's memberlist since its last
// direct answer, or not answering direct probes for longer than a few
// probe rounds over the others alive (memberlist probes them in turn),
// and at least suspectAfterMin. g.mu is held.
func (g *Gossip) suspected(m *memberView, others int, now time.Time) bool {
	heard := m.lastAck
	if m.Since.After(heard) {
		heard = m.Since // alive since: a new member has not been probed yet
	}
	if !m.suspectedAt.IsZero() && !m.suspectedAt.Before(heard) {
		return true
	}
	window := max(time.Duration(2*max(others, 1)+2)*g.cfg.ProbeInterval, suspectAfterMin)
	return now.Sub(heard) > window
}

// suspectAfterMin bounds from below how long direct probes of an alive
// member may go unanswered before it is shown suspect.
const suspectAfterMin = time.Second

// Changed returns a channel closed at the next membership or metadata
// change.
func (g *Gossip) Changed() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.watch
}

// Leave tells the others this node is leaving (they see it "left" at
// once instead of detecting a failure) and stops gossiping.
func (g *Gossip) Leave(timeout time.Duration) {
	g.mu.Lock()
	var meta NodeMeta
	_ = json.Unmarshal(g.meta, &meta)
	g.mu.Unlock()
	meta.Health = HealthLeaving
	if err := g.SetMeta(meta); err != nil {
		g.log.Debug("gossip: announcing the leave in metadata", "error", err)
	}
	if err := g.ml.Leave(timeout); err != nil {
		g.log.Warn("gossip: leave", "error", err)
	}
	g.Shutdown()
}

// Shutdown stops gossiping at once (as a crash would, to the others).
func (g *Gossip) Shutdown() {
	g.once.Do(func() {
		close(g.stop)
		g.wg.Wait()
		if err := g.ml.Shutdown(); err != nil {
			g.log.Warn("gossip: shutdown", "error", err)
		}
	})
}

func (g *Gossip) update(n *memberlist.Node, state string) {
	var meta NodeMeta
	if len(n.Meta) > 0 {
		if err := json.Unmarshal(n.Meta, &meta); err != nil {
			g.log.Warn("gossip: undecodable metadata", "member", n.Name, "error", err)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[n.Name]
	if !ok {
		m = &memberView{}
		g.members[n.Name] = m
	}
	prev := m.State
	m.ID, m.Addr = n.Name, net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	if len(n.Meta) > 0 {
		m.Meta = meta
	}
	switch {
	case state == "":
		state = prev
	case state == MemberDead && m.Meta.Health == HealthLeaving:
		state = MemberLeft
	}
	if state != prev {
		m.State, m.Since = state, time.Now()
		m.suspectedAt = time.Time{}
		if n.Name != g.self {
			lvl := slog.LevelInfo
			if state == MemberDead {
				lvl = slog.LevelWarn
			}
			g.log.Log(context.Background(), lvl, "gossip: member "+state, "member", n.Name, "addr", m.Addr, "was", prev)
		}
	}
	close(g.watch)
	g.watch = make(chan struct{})
}

// acked records an answer to a direct probe of member name (memberlist's
// PingDelegate): it is not suspect.
func (g *Gossip) acked(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m, ok := g.members[name]; ok {
		m.lastAck = time.Now()
	}
}

// suspect records that this node's memberlist suspects member name (it
// logs it: its API does not say).
func (g *Gossip) suspect(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m, ok := g.members[name]; ok {
		m.suspectedAt = time.Now() // not a change for Changed: nothing acts on suspicion, Members shows it
	}
}

// gossipPing receives the answers to this node's direct probes.
type gossipPing Gossip

func (p *gossipPing) AckPayload() []byte { return nil }
func (p *gossipPing) NotifyPingComplete(other *memberlist.Node, _ time.Duration, _ []byte) {
	(*Gossip)(p).acked(other.Name)
}

// gossipEvents receives memberlist's events (called with memberlist's
// locks held: no calls back into memberlist here).
type gossipEvents Gossip

func (e *gossipEvents) NotifyJoin(n *memberlist.Node)   { (*Gossip)(e).update(n, MemberAlive) }
func (e *gossipEvents) NotifyUpdate(n *memberlist.Node) { (*Gossip)(e).update(n, "") }
func (e *gossipEvents) NotifyLeave(n *memberlist.Node)  { (*Gossip)(e).update(n, MemberDead) }

// gossipDelegate serves this node's metadata; it has no user messages or
// state of its own to exchange.
type gossipDelegate Gossip

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	g := (*Gossip)(d)
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.meta) > limit {
		return nil
	}
	return slices.Clone(g.meta)
}
func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

// memberlistLog turns memberlist's "[LEVEL] memberlist: ..." lines into
// slog records.
type memberlistLog struct {
	log     *slog.Logger
	suspect func(member string) // called for "Suspect NAME has failed, no acks received"
}

func (w *memberlistLog) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		lvl := slog.LevelInfo
		for prefix, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError} {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				lvl, line = l, strings.TrimSpace(rest)
				break
			}
		}
		// Failed probes of a node that is down are expected while it
		// is: they are what detects it.
		if lvl > slog.LevelInfo && (strings.Contains(line, "Failed to send") || strings.Contains(line, "Failed fallback ping") ||
			strings.Contains(line, "connection refused")) {
			lvl = slog.LevelDebug
		}
		line = strings.TrimPrefix(line, "memberlist: ")
		if name, ok := suspectLine(line); ok && w.suspect != nil {
			w.suspect(name)
		}
		w.log.Log(context.Background(), lvl, line)
	}
	return len(p), nil
}

var _ io.Writer = (*memberlistLog)(nil)

// suspectLine reads the member's name from memberlist's log line of a
// failed probe ("Suspect n2 has failed, no acks received"), the only
// place memberlist says it suspects a member.
func suspectLine(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "Suspect ")
	if !ok {
		return "", false
	}
	name, _, ok := strings.Cut(rest, " has failed")
	return name, ok && name != ""
}
