// Package node is troika's composition root: it turns a Config into a
// running node (replicated state, cluster, SIP listeners, admin API), owns
// the start and stop order, and runs the leader's housekeeping.
package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/cluster"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack"
)

// Version is the build's version, set by the linker.
var Version = "dev"

// purgeEvery is how often the leader removes expired bindings.
const purgeEvery = 30 * time.Second

// trimEvery is how often the leader bounds the stored xDRs and idempotency
// keys ([billing] xdr_retention_count and idempotency_window).
const trimEvery = 5 * time.Minute

// Node is one running troika node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	state   *fsm.State
	cluster *cluster.Node
	gossip  *cluster.Gossip
	sip     *sipstack.Server
	admin   *http.Server
	adminLn net.Listener
	ready   chan struct{}
	done    chan struct{}
	runErr  error

	// Address management ([vip]): nil without it.
	addrOps    cluster.AddrOps
	owner      *cluster.Owner
	ownerReady chan struct{} // closed once owner is set
	ownerDone  chan struct{} // closed when the owner's loop has given up its addresses
	ownerRuns  bool          // the owner's loop was started (by Start, before it returns)

	drain     drainer            // planned stop (drain.go)
	startedAt time.Time          // when Start began
	stopSIP   context.CancelFunc // stops the SIP server (after announceLeaving)

	// dispatch is the dispatcher's cluster side (dispatch.go); nil when
	// this node does not dispatch.
	dispatch *dispatch
}

// Start brings a node up: the cluster first (so the state is replayed),
// then SIP and the admin API. It returns once every socket is open; Wait
// returns when the node has stopped after ctx is cancelled.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Node, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	key, err := cfg.ClusterKey()
	if err != nil {
		return nil, err
	}
	peers, err := cfg.ClusterPeers()
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, state: fsm.New(), ready: make(chan struct{}), done: make(chan struct{}), startedAt: time.Now()}
	var disp sipstack.DispatchConfig
	if cfg.DispatchEnabled() {
		n.dispatch = newDispatch(n)
		disp = sipstack.DispatchConfig{Enabled: true, Peers: n.dispatch}
	}
	ctx = n.drain.init(ctx) // a drain ends it
	gaddrs, err := cfg.GossipAddrs()
	if err != nil {
		return nil, err
	}
	if cfg.VIP != nil {
		// Fail before anything starts if the interface is missing.
		if n.addrOps, err = cluster.NewNetlinkAddrs(cfg.VIP.Interface); err != nil {
			return nil, fmt.Errorf("vip.interface: %w", err)
		}
		n.ownerReady, n.ownerDone = make(chan struct{}), make(chan struct{})
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	ccfg := cluster.Config{
		NodeID:        cfg.NodeID,
		DataDir:       filepath.Join(cfg.DataDir, "raft"),
		BindAddr:      cfg.Cluster.Bind,
		AdvertiseAddr: cfg.Cluster.Advertise,
		Key:           key,
		Bootstrap:     cfg.Cluster.Bootstrap,
		Join:          cfg.Cluster.Join,
		OnLeader:      n.leaderDuties,
		Logger:        log.With("component", "cluster"),

		HeartbeatTimeout:   cfg.Cluster.HeartbeatTimeout,
		ElectionTimeout:    cfg.Cluster.ElectionTimeout,
		LeaderLeaseTimeout: cfg.Cluster.LeaderLeaseTimeout,
	}
	for _, p := range peers {
		ccfg.Peers = append(ccfg.Peers, cluster.Peer{ID: p.ID, Addr: p.Addr})
	}
	n.cluster, err = cluster.Start(ctx, ccfg, n.state)
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	n.gossip, err = cluster.StartGossip(cluster.GossipConfig{
		NodeID:        cfg.NodeID,
		BindAddr:      gaddrs.Bind,
		AdvertiseAddr: gaddrs.Advertise,
		Join:          gaddrs.Join,
		Key:           key,
		Meta:          n.meta(cluster.HealthStarting),
		Logger:        log.With("component", "cluster"),
	})
	if err != nil {
		n.cluster.Shutdown()
		return nil, fmt.Errorf("cluster gossip (cluster.gossip_bind): %w", err)
	}

	n.sip, err = sipstack.New(sipstack.Config{
		Addresses:    cfg.SIP.Addresses,
		UDPPorts:     cfg.SIP.UDPPorts,
		TCPPorts:     cfg.SIP.TCPPorts,
		TLSPorts:     cfg.SIP.TLSPorts,
		TLSCert:      cfg.SIP.TLSCert,
		TLSKey:       cfg.SIP.TLSKey,
		ServeAliases: cfg.SIP.ServeAliases,
		Registrar: sipstack.RegistrarConfig{
			Realm:          cfg.Registrar.Realm,
			DefaultExpires: cfg.Registrar.DefaultExpires,
			MinExpires:     cfg.Registrar.MinExpires,
			MaxExpires:     cfg.Registrar.MaxExpires,
			MaxContacts:    cfg.Registrar.MaxContacts,
			NonceTTL:       cfg.Registrar.NonceTTL,
			Algorithms:     cfg.Registrar.Algorithms,
		},
		Calls: sipstack.CallConfig{
			RingTimeout:    cfg.SIP.RingTimeout,
			MaxCallSeconds: int(cfg.Billing.MaxCallDuration / time.Second),
			MaxCalls:       cfg.SIP.MaxCalls,
		},
		Dispatch:        disp,
		NodeAlive:       n.nodeAlive,
		AdoptThroughLog: n.adoptThroughLog,
		NodeID:          cfg.NodeID,
		Logger:          log.With("component", "sip"),
		Metrics:         reg,
	}, n.state, n.cluster)
	if err != nil {
		n.stop()
		return nil, fmt.Errorf("sip: %w", err)
	}
	if n.dispatch != nil {
		if err := n.startDispatchLink(reg); err != nil {
			n.stop()
			return nil, fmt.Errorf("dispatch link: %w", err)
		}
	}
	if cfg.VIP != nil {
		if err := n.newOwner(); err != nil {
			n.stop()
			return nil, err
		}
	}

	api, err := admin.New(admin.Config{
		Token:   cfg.Admin.Token,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Logger:  log.With("component", "admin"),
	}, n.state, n)
	if err != nil {
		n.stop()
		return nil, err
	}
	n.adminLn, err = net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		n.stop()
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	n.admin = &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}

	// The SIP server outlives the node's context by the leave
	// announcement (announceLeaving), so that no node dispatches to a
	// stopped stack.
	sipCtx, stopSIP := context.WithCancel(context.WithoutCancel(ctx))
	n.stopSIP = stopSIP
	sipErr := make(chan error, 1)
	go func() { sipErr <- n.sip.Run(sipCtx) }()
	go func() {
		select {
		case <-ctx.Done():
			n.announceLeaving()
		case <-sipCtx.Done():
		}
		stopSIP()
	}()
	go func() {
		if err := n.admin.Serve(n.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin API stopped", "error", err)
		}
	}()
	select {
	case <-n.sip.Ready():
	case err := <-sipErr:
		n.stop()
		return nil, fmt.Errorf("sip: %w", err)
	case <-ctx.Done():
		n.stop()
		return nil, ctx.Err()
	}
	if n.owner != nil {
		n.ownerRuns = true
		go func() {
			defer close(n.ownerDone)
			n.owner.Run(ctx)
		}()
	}
	if err := n.publishMeta(); err != nil {
		log.Warn("gossip: updating this node's metadata failed", "error", err)
	}
	go n.metaLoop(ctx)
	go n.adoptLoop(ctx)
	if n.dispatch != nil {
		go n.processorsLoop(ctx)
	}
	close(n.ready)
	log.Info("node started", "node", cfg.NodeID, "version", Version, "sip", n.sip.Sockets(),
		"admin", n.adminLn.Addr().String(), "gossip", n.gossip.Addr(), "state", n.state.Counts().String())
	go func() {
		select {
		case err := <-sipErr:
			n.runErr = err
		case <-ctx.Done():
			n.runErr = <-sipErr
		}
		n.stop()
		close(n.done)
	}()
	return n, nil
}

func (n *Node) stop() {
	if n.stopSIP != nil {
		n.stopSIP()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n.ownerRuns {
		select {
		case <-n.ownerDone:
		case <-sctx.Done():
			n.log.Warn("the address owner did not give up its addresses in time (their kernel lifetime ends them)")
		}
	}
	if n.gossip != nil {
		n.gossip.Leave(time.Second)
		n.drain.left()
	}
	if n.admin != nil {
		n.admin.Shutdown(sctx)
	}
	if n.dispatch != nil {
		if l := n.dispatch.link.Load(); l != nil {
			l.Close()
		}
	}
	if err := n.cluster.Shutdown(); err != nil {
		n.log.Warn("cluster shutdown", "error", err)
	}
}

// leaveAnnounceWait is how long a stopping node keeps processing after it
// said "leaving" in gossip: long enough for the others to hear it (a few
// gossip rounds) and stop dispatching to it.
const leaveAnnounceWait = 400 * time.Millisecond

// leaveTransferMax bounds the raft leadership hand-over of a stopping
// node.
const leaveTransferMax = 3 * time.Second

// announceLeaving prepares a stop while this node still serves: it tells
// the other nodes it is leaving (the leader moves the addresses it gave
// up at once; dispatchers stop sending to it once they have heard it, a
// few gossip rounds) and hands raft leadership to another voter if it
// leads, so writes in flight do not wait for an election. Then the SIP
// server may stop. A drain has done both already.
func (n *Node) announceLeaving() {
	start := time.Now()
	n.drain.leaving.Store(true)
	if n.sip != nil {
		n.sip.Drain(true) // new INVITEs get 503 from now on
	}
	if n.owner != nil {
		// Its addresses are given up before anyone hears that they may
		// move (as in a drain: cluster/lease.go).
		n.owner.SetDraining(true, 2*time.Second)
	}
	announced := false
	if n.gossip != nil {
		if err := n.publishMeta(); err != nil {
			n.log.Warn("gossip: announcing that this node is leaving failed", "error", err)
		} else {
			announced = n.dispatch != nil // the others must hear it before the SIP stack stops
		}
	}
	if n.cluster.IsLeader() {
		ctx, cancel := context.WithTimeout(context.Background(), leaveTransferMax)
		if err := n.cluster.TransferLeadership(ctx); err != nil {
			n.log.Warn("stopping: raft leadership not handed over; the others elect a leader once this node is gone", "error", err)
		}
		cancel()
	}
	if !announced {
		return
	}
	for _, m := range n.gossip.Members() {
		if m.ID != n.cfg.NodeID && m.State == cluster.MemberAlive {
			time.Sleep(leaveAnnounceWait - time.Since(start))
			return
		}
	}
}

// nodeAlive reports whether another node is up and runs its calls: alive
// in gossip, and neither starting (a restarted node runs none yet: it
// claims its own through the log) nor leaving (sipstack.Config.NodeAlive).
func (n *Node) nodeAlive(id string) bool {
	if n.gossip == nil {
		return false
	}
	for _, m := range n.gossip.Members() {
		if m.ID == id {
			return m.State == cluster.MemberAlive && m.Meta.Health != cluster.HealthLeaving && m.Meta.Health != cluster.HealthStarting
		}
	}
	return false
}

// roleAdoptCall in a node's gossip roles: its fsm applies AdoptCall.
const roleAdoptCall = "adoptcall1"

// adoptThroughLog reports whether every voter's fsm applies AdoptCall, as
// the voters last said in gossip (sipstack.Config.AdoptThroughLog): an
// older voter would stop at a command it does not know.
func (n *Node) adoptThroughLog() bool {
	if n.gossip == nil {
		return false
	}
	return everyVoterHas(roleAdoptCall, n.cluster.Voters(), n.gossip.Members(), n.cfg.NodeID)
}

// everyVoterHas reports whether each voter announced role in its last
// gossip metadata (self: always; a voter never heard of: no).
func everyVoterHas(role string, voters []string, members []cluster.Member, self string) bool {
	roles := map[string][]string{self: {role}}
	for _, m := range members {
		if m.ID != self {
			roles[m.ID] = m.Meta.Roles
		}
	}
	for _, v := range voters {
		if !slices.Contains(roles[v], role) {
			return false
		}
	}
	return true
}

// Wait blocks until the node has stopped and returns why.
func (n *Node) Wait() error {
	<-n.done
	return n.runErr
}

// State is the node's replica of the replicated state.
func (n *Node) State() *fsm.State { return n.state }

// AdminAddr is the admin API's listening address.
func (n *Node) AdminAddr() string { return n.adminLn.Addr().String() }

// Sockets lists the open SIP sockets.
func (n *Node) Sockets() []string { return n.sip.Sockets() }

// Propose applies a command through the cluster (admin.Backend).
func (n *Node) Propose(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	return n.cluster.Propose(ctx, cmd)
}

// Status is GET /v1/cluster.
type Status struct {
	Version string         `json:"version"`
	Cluster cluster.Status `json:"cluster"`
	Sockets []string       `json:"sip_sockets"`
	// Addresses are the managed addresses (virtual IPs and aliases): who
	// the ownership map assigns each to, its epoch, and whether this node
	// holds it.
	Addresses []cluster.AddressStatus `json:"addresses"`
	// Members is this node's gossip view: state and metadata of every
	// member.
	Members []cluster.Member `json:"members"`
}

// ClusterStatus implements admin.Backend.
func (n *Node) ClusterStatus() any {
	return Status{Version: Version, Cluster: n.cluster.Status(), Sockets: n.sip.Sockets(),
		Addresses: cluster.AddressStatuses(n.owner, n.state), Members: n.gossip.Members()}
}

// leaderDuties runs while this node leads: it makes sure the cluster has a
// digest-nonce secret, purges expired bindings, and trims old xDRs and
// idempotency keys.
func (n *Node) leaderDuties(ctx context.Context) {
	go n.placeAddresses(ctx)
	for n.state.NonceSecret() == nil {
		secret := make([]byte, 32)
		rand.Read(secret)
		if _, err := n.cluster.Propose(ctx, &fsm.InitNonceSecret{Secret: secret}); err != nil {
			n.log.Error("could not store the cluster's nonce secret; REGISTERs get 503 until it is stored; retrying", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
	t := time.NewTicker(purgeEvery)
	defer t.Stop()
	trim := time.NewTicker(trimEvery)
	defer trim.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-trim.C:
			res, err := n.cluster.Propose(ctx, trimCommand(n.cfg.Billing, now))
			if err == nil && res.Err != nil {
				err = res.Err
			}
			if err != nil {
				n.log.Warn("trimming xDRs and idempotency keys failed; retrying next tick", "error", err)
			} else if res.Purged > 0 {
				n.log.Info("dropped the oldest xDRs beyond billing.xdr_retention_count", "count", res.Purged,
					"retained", n.cfg.Billing.XDRRetentionCount)
			}
		case now := <-t.C:
			res, err := n.cluster.Propose(ctx, &fsm.PurgeExpired{Now: now.UnixMilli()})
			if err != nil {
				n.log.Warn("purge of expired bindings failed; retrying next tick", "error", err)
			} else if res.Purged > 0 {
				n.log.Info("purged expired bindings", "count", res.Purged)
			}
			n.reapStaleCalls(ctx, now)
		}
	}
}

// reapGrace is how long past its latest possible end a call in the state
// must be before the leader ends it.
const reapGrace = 2 * time.Minute

// reapStaleCalls ends calls no node ended: a call still ringing long after
// the ring timeout, or answered and past the longest time its reservation
// pays for. Their node stopped without ending them (killed, or a lost
// write). The xDR says so; an answered call is charged up to the time it
// was authorized for, which is when it ended at the latest.
func (n *Node) reapStaleCalls(ctx context.Context, now time.Time) {
	for _, c := range staleCalls(n.state.Calls(), now, n.cfg.SIP.RingTimeout) {
		res, err := n.cluster.Propose(ctx, c)
		if err == nil && res.Err != nil {
			err = res.Err
		}
		if err != nil {
			n.log.Warn("ending a stale call failed; retrying next tick", "call_id", c.ID, "error", err)
			continue
		}
		n.log.Warn("ended a call no node ended (its node stopped?)", "call_id", c.ID, "disconnect_at", time.UnixMilli(c.DisconnectAt).UTC(),
			"cause", c.CauseText)
	}
}

// staleCalls returns the EndCall commands for calls past their latest
// possible end by more than reapGrace.
func staleCalls(calls []fsm.Call, now time.Time, ringTimeout time.Duration) []*fsm.EndCall {
	var out []*fsm.EndCall
	for _, c := range calls {
		if c.ConnectAt == 0 {
			latest := c.SetupAt + ringTimeout.Milliseconds()
			if now.UnixMilli() > latest+reapGrace.Milliseconds() {
				out = append(out, &fsm.EndCall{ID: c.ID, DisconnectAt: latest, Cause: 408,
					CauseText: "reaped: never answered and no node ended it", DisconnectedBy: "system"})
			}
			continue
		}
		latest := c.ConnectAt + int64(c.MaxDuration)*1000
		if now.UnixMilli() > latest+reapGrace.Milliseconds() {
			out = append(out, &fsm.EndCall{ID: c.ID, DisconnectAt: latest, Cause: 200,
				CauseText: "reaped: no node ended it; charged to its authorized maximum", DisconnectedBy: "system"})
		}
	}
	return out
}

// trimCommand is the leader's periodic TrimRecords: keep the newest
// xdr_retention_count xDRs and the idempotency keys of the last
// idempotency_window. Zero settings (a Config not from LoadConfig) take
// the defaults.
func trimCommand(b BillingConfig, now time.Time) *fsm.TrimRecords {
	keep, window := b.XDRRetentionCount, b.IdempotencyWindow
	if keep <= 0 {
		keep = DefaultXDRRetention
	}
	if window <= 0 {
		window = DefaultIdempotencyWindow
	}
	return &fsm.TrimRecords{MaxXDRs: keep, KeepKeysAfter: now.Add(-window).UnixMilli()}
}

// WaitSocket waits (up to 10 s) until the SIP socket named name, such as
// "udp:127.0.0.2:5070", is open.
func (n *Node) WaitSocket(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		for _, s := range n.sip.Sockets() {
			if s == name {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("SIP socket %s did not open (address not local, or port in use?): %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// adoptLoop takes over the answered calls of nodes that are gone (or of
// this node before a restart) that now fall to this node, so their
// maximum-duration timers run again, and drops the calls this node ran
// that another node has ended or carries on. It looks when membership
// changes and every few seconds.
func (n *Node) adoptLoop(ctx context.Context) {
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		if k := n.sip.ForgetMoved(); k > 0 {
			n.log.Info("dropped answered calls that another node ended or carries on", "calls", k)
		}
		if k := n.sip.AdoptOrphans(); k > 0 {
			n.log.Info("adopted answered calls of stopped nodes", "calls", k)
		}
		select {
		case <-ctx.Done():
			return
		case <-n.gossip.Changed():
			// Metadata changes often (load); look at most 5 times a second.
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		case <-t.C:
		}
	}
}
