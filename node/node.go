package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/cluster"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack"
)

// Version is the build's release version, set by the linker (-X
// github.com/troika-sip/troika/node.Version=1.4.0); empty: the main
// module's version the toolchain recorded, else "dev" (Build).
var Version string

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

	drain drainer // planned stop (drain.go)
	// outOfStep: this node's state copy may lag the cluster's (instep.go).
	outOfStep atomic.Bool
	// unbound caches unboundNonces's answer (gossip.go): it is asked on
	// every digest challenge, and working it out reads raft's
	// configuration and gossip's members.
	unbound   atomic.Pointer[cachedAnswer]
	restoring sync.Mutex         // held while a backup is restored (snapshot.go)
	startedAt time.Time          // when Start began
	stopSIP   context.CancelFunc // stops the SIP server (after announceLeaving)

	// dispatch is the dispatcher's cluster side (dispatch.go); nil when
	// this node does not dispatch.
	dispatch *dispatch

	metrics   *prometheus.Registry // what /metrics serves
	failovers failoverLog          // recent moves of addresses (status.go)
}

// Start brings a node up: the cluster first (so the state is replayed),
// then SIP and the admin API. It returns once every socket is open; Wait
// returns when the node has stopped after ctx is cancelled.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Node, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	cs, err := readClusterSettings(cfg)
	if err != nil {
		return nil, err
	}
	n := newNode(cfg, log)
	ctx = n.drain.init(ctx) // a drain ends it
	if err := n.openAddressInterface(); err != nil {
		return nil, err
	}
	reg := newMetricsRegistry()
	n.metrics = reg
	n.registerStatusMetrics(reg)
	if err := n.startRaft(ctx, cs); err != nil {
		return nil, err
	}
	registerPortMetrics(reg, n.cluster)
	if err := n.startGossip(cs); err != nil {
		n.cluster.Shutdown()
		return nil, err
	}
	if err := n.buildServers(reg); err != nil {
		n.stop()
		return nil, err
	}
	sipErr := n.runServers(ctx)
	if err := n.waitSIPReady(ctx, sipErr); err != nil {
		n.stop()
		return nil, err
	}
	n.startLoops(ctx)
	close(n.ready)
	log.Info("node started", "node", cfg.NodeID, "version", Build().String(), "sip", n.sip.Sockets(),
		"admin", n.adminLn.Addr().String(), "gossip", n.gossip.Addr(), "state", n.state.Counts().String())
	go n.stopWhenDone(ctx, sipErr)
	return n, nil
}

// clusterSettings are the parts of the configuration the cluster starts
// from, checked before anything runs.
type clusterSettings struct {
	key    []byte
	peers  []Peer
	gossip GossipAddrs
	tls    *cluster.TLSConfig // nil: plaintext
}

func readClusterSettings(cfg Config) (clusterSettings, error) {
	var cs clusterSettings
	var err error
	if cs.key, err = cfg.ClusterKey(); err != nil {
		return cs, err
	}
	if cs.peers, err = cfg.ClusterPeers(); err != nil {
		return cs, err
	}
	if cs.gossip, err = cfg.GossipAddrs(); err != nil {
		return cs, err
	}
	if cs.tls, err = cfg.ClusterTLS(time.Now()); err != nil {
		return cs, err
	}
	return cs, nil
}

// newNode makes the node, with its dispatcher's cluster side when it
// dispatches; nothing runs yet.
func newNode(cfg Config, log *slog.Logger) *Node {
	n := &Node{cfg: cfg, log: log, state: fsm.New(), ready: make(chan struct{}), done: make(chan struct{}), startedAt: time.Now()}
	if cfg.DispatchEnabled() {
		n.dispatch = newDispatch(n)
	}
	return n
}

// openAddressInterface opens vip.interface, so that a missing interface
// fails the start before anything runs ([vip] only).
func (n *Node) openAddressInterface() error {
	if n.cfg.VIP == nil {
		return nil
	}
	var err error
	if n.addrOps, err = cluster.NewNetlinkAddrs(n.cfg.VIP.Interface); err != nil {
		return fmt.Errorf("vip.interface: %w", err)
	}
	n.ownerReady, n.ownerDone = make(chan struct{}), make(chan struct{})
	return nil
}

// newMetricsRegistry is the registry /metrics serves: the Go runtime's and
// the process's metrics, and those the parts of the node add.
func newMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// startRaft starts the raft node, which replays the replicated state.
func (n *Node) startRaft(ctx context.Context, cs clusterSettings) error {
	cfg := n.cfg
	ccfg := cluster.Config{
		NodeID:        cfg.NodeID,
		DataDir:       filepath.Join(cfg.DataDir, "raft"),
		BindAddr:      cfg.Cluster.Bind,
		AdvertiseAddr: cfg.Cluster.Advertise,
		Key:           cs.key,
		TLS:           cs.tls,
		Bootstrap:     cfg.Cluster.Bootstrap,
		Join:          cfg.Cluster.Join,
		OnLeader:      n.leaderDuties,
		Logger:        n.log.With("component", "cluster"),
		Metrics:       n.metrics,

		HeartbeatTimeout:   cfg.Cluster.HeartbeatTimeout,
		ElectionTimeout:    cfg.Cluster.ElectionTimeout,
		LeaderLeaseTimeout: cfg.Cluster.LeaderLeaseTimeout,
	}
	for _, p := range cs.peers {
		ccfg.Peers = append(ccfg.Peers, cluster.Peer{ID: p.ID, Addr: p.Addr})
	}
	logClusterTLS(ccfg.Logger, cs.tls, time.Now())
	var err error
	if n.cluster, err = cluster.Start(ctx, ccfg, n.state); err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	return nil
}

// startGossip joins the gossip membership, announcing the node as
// starting.
func (n *Node) startGossip(cs clusterSettings) error {
	var err error
	n.gossip, err = cluster.StartGossip(cluster.GossipConfig{
		NodeID:        n.cfg.NodeID,
		BindAddr:      cs.gossip.Bind,
		AdvertiseAddr: cs.gossip.Advertise,
		Join:          cs.gossip.Join,
		Key:           cs.key,
		Meta:          n.meta(cluster.HealthStarting),
		Logger:        n.log.With("component", "cluster"),
	})
	if err != nil {
		return fmt.Errorf("cluster gossip (cluster.gossip_bind): %w", err)
	}
	return nil
}

// buildServers makes the SIP server, the dispatch link (which runs at
// once), the address owner and the admin API with its listening socket.
func (n *Node) buildServers(reg *prometheus.Registry) error {
	var err error
	if n.sip, err = sipstack.New(n.sipConfig(reg), n.state, n.cluster); err != nil {
		return fmt.Errorf("sip: %w", err)
	}
	if n.dispatch != nil {
		if err := n.startDispatchLink(reg); err != nil {
			return fmt.Errorf("dispatch link: %w", err)
		}
	}
	if n.cfg.VIP != nil {
		if err := n.newOwner(); err != nil {
			return err
		}
	}
	return n.newAdminServer(reg)
}

// sipConfig is the SIP server's configuration.
func (n *Node) sipConfig(reg prometheus.Registerer) sipstack.Config {
	cfg := n.cfg
	var disp sipstack.DispatchConfig
	if n.dispatch != nil {
		disp = sipstack.DispatchConfig{Enabled: true, Peers: n.dispatch}
	}
	return sipstack.Config{
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

			AuthFailuresPerMinute:   cfg.Registrar.AuthFailuresPerMinute,
			AuthBlockFor:            cfg.Registrar.AuthBlockFor,
			AccountGuessesPerMinute: cfg.Registrar.AccountGuessesPerMinute,
			AccountGuessBurst:       cfg.Registrar.AccountGuessBurst,
			TrustSourceFor:          cfg.Registrar.TrustSourceFor,
		},
		Calls: sipstack.CallConfig{
			RingTimeout:         cfg.SIP.RingTimeout,
			MaxCallSeconds:      int(cfg.Billing.MaxCallDuration / time.Second),
			ReserveChunkSeconds: int(cfg.Billing.ReserveChunk / time.Second),
			MaxCalls:            cfg.SIP.MaxCalls,
		},
		Keepalive:       cfg.keepaliveConfig(),
		Dispatch:        disp,
		NodeAlive:       n.nodeAlive,
		AdoptThroughLog: n.adoptThroughLog,
		QuotaThroughLog: n.quotaThroughLog,
		UnboundNonces:   n.unboundNonces,
		NodeID:          cfg.NodeID,
		Logger:          n.log.With("component", "sip"),
		Metrics:         reg,
	}
}

// newAdminServer makes the admin API and opens admin.listen, over TLS
// when admin.tls_cert_file is set.
func (n *Node) newAdminServer(reg *prometheus.Registry) error {
	ac := n.cfg.Admin
	api, err := admin.New(admin.Config{
		Tokens:    ac.APITokens(),
		Metrics:   promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Logger:    n.log.With("component", "admin"),
		Level:     n.cfg.LogLevelVar,
		Keepalive: n.keepaliveViews,
	}, n.state, n)
	if err != nil {
		return err
	}
	var tlsConf *tls.Config
	if ac.TLS() {
		if tlsConf, err = admin.ServerTLS(ac.TLSCertFile, ac.TLSKeyFile, ac.TLSClientCAFile); err != nil {
			return fmt.Errorf("admin.tls_cert_file, admin.tls_key_file, admin.tls_client_ca_file: %w", err)
		}
	} else if !loopback(ac.Listen) {
		n.log.Warn("the admin API is plain HTTP on a non-loopback address: its bearer tokens cross the network in clear; set admin.tls_cert_file and admin.tls_key_file (deploy/runbook.md)",
			"listen", ac.Listen)
	}
	if n.adminLn, err = net.Listen("tcp", ac.Listen); err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	if tlsConf != nil {
		n.adminLn = tls.NewListener(n.adminLn, tlsConf)
	}
	n.admin = api.HTTPServer()
	return nil
}

// loopback reports whether the host of a host:port is a loopback address
// (or localhost).
func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// runServers runs the SIP server and the admin API. The SIP server
// outlives the node's context by the leave announcement
// (announceLeaving), so that no node dispatches to a stopped stack. The
// channel gets what the SIP server's Run returns.
func (n *Node) runServers(ctx context.Context) chan error {
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
			n.log.Error("admin API stopped", "error", err)
		}
	}()
	return sipErr
}

// waitSIPReady waits until every SIP socket is open.
func (n *Node) waitSIPReady(ctx context.Context, sipErr <-chan error) error {
	select {
	case <-n.sip.Ready():
		return nil
	case err := <-sipErr:
		return fmt.Errorf("sip: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startLoops starts what runs beside the servers: the address owner, the
// gossiped metadata, call adoption and the dispatcher's list of
// processing nodes.
func (n *Node) startLoops(ctx context.Context) {
	if n.owner != nil {
		n.ownerRuns = true
		go func() {
			defer close(n.ownerDone)
			n.owner.Run(ctx)
		}()
	}
	if err := n.publishMeta(); err != nil {
		n.log.Warn("gossip: updating this node's metadata failed", "error", err)
	}
	go n.metaLoop(ctx)
	go n.adoptLoop(ctx)
	go n.watchFailovers(ctx)
	if n.dispatch != nil {
		go n.processorsLoop(ctx)
	}
}

// stopWhenDone stops the node once the SIP server ends or ctx does, and
// records why for Wait.
func (n *Node) stopWhenDone(ctx context.Context, sipErr <-chan error) {
	select {
	case err := <-sipErr:
		n.runErr = err
	case <-ctx.Done():
		n.runErr = <-sipErr
	}
	n.stop()
	close(n.done)
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

// Propose applies a command through the cluster (admin.Backend). A clear
// password a command carries (the admin API's) is hashed into digest
// credentials for the registrar's realm before it enters the log. While a
// voter still runs a build that stores clear passwords, the command goes
// in that build's version instead (fsm.LegacyCommand), or is refused with
// ErrUpgradeInProgress when that build has none; while a voter has not
// been heard of yet in gossip, a command with credentials is refused with
// ErrMembersUnknown (the write is tried again in a moment).
func (n *Node) Propose(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	old, err := fsm.LegacyCommand(cmd)
	versioned := err != nil || old.Type() != cmd.Type() // a command older builds know in another version
	switch {
	case n.credentialsThroughLog():
		cmd = fsm.SecureCommand(cmd, n.cfg.Registrar.Realm)
	case !versioned:
	case n.olderVoter() && err != nil:
		return fsm.Result{}, fmt.Errorf("%w: %v", ErrUpgradeInProgress, err)
	case n.olderVoter():
		cmd = old
	default:
		return fsm.Result{}, ErrMembersUnknown
	}
	return n.cluster.Propose(ctx, cmd)
}

var (
	// ErrUpgradeInProgress: a write needs a command an older voter cannot
	// apply yet.
	ErrUpgradeInProgress = errors.New("the cluster is being upgraded")
	// ErrMembersUnknown: a write with credentials waits until every voter
	// has been heard of, to know which command version they apply.
	ErrMembersUnknown = errors.New("not every node of the cluster has been heard of yet; try again in a few seconds")
)

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
