package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/retry"
)

// Ownership of the virtual and alias addresses (docs/ARCHITECTURE.md).
//
// Every node runs an Owner. Its holder loop (Run) takes and gives up the
// addresses the replicated ownership map assigns to the node, under the
// self-fencing rules of lease.go: take = add the address to the interface
// (with a kernel lifetime), open its SIP sockets, announce it (gratuitous
// ARP or unsolicited NA, several times); give up = close the sockets,
// remove the address. While the node leads, Lead also runs the placement
// loop: it turns gossip health and raft reachability into changes of the
// map (placement.go), proposed as AssignAddresses. Gossip never changes
// the map by itself: only the leader writes it, through raft.

// The Owner's code is in four files, one a job:
//   - ownership.go (this file): its configuration, state and public
//     controls (NewOwner, SetDraining, Held);
//   - ownership_holder.go: the holder loop (Run), on every node;
//   - ownership_placer.go: the placement loop (Lead), on the leader;
//   - ownership_status.go: what an operator sees (AddressStatuses).

// AddrOps adds, removes, lists and announces the addresses of one
// interface (netlink on Linux; tests use a fake).
type AddrOps interface {
	// Add adds p, or renews its valid lifetime if it is there; a zero
	// lifetime means forever.
	Add(p netip.Prefix, lifetime time.Duration) error
	// Del removes p; an address already gone is not an error.
	Del(p netip.Prefix) error
	// List returns the interface's addresses.
	List() ([]netip.Prefix, error)
	// Announce sends one gratuitous ARP (IPv4) or unsolicited neighbour
	// advertisement (IPv6) for ip.
	Announce(ip netip.Addr) error
}

// Sockets opens and closes the SIP sockets of the addresses a node holds
// (sipstack.Server implements it).
type Sockets interface {
	// ServeAddress opens the sockets of ip: the main ports, plus extra
	// (an alias's own ports; nil for a virtual IP).
	ServeAddress(ip string, extra *fsm.AliasPorts) error
	// CloseAddress closes them.
	CloseAddress(ip string)
}

// OwnerConfig configures an Owner. Zero values take the defaults in
// parentheses.
type OwnerConfig struct {
	// VIPs are the main virtual addresses with their prefix length, e.g.
	// 10.0.0.100/24. Aliases come from the replicated state (a /32 or
	// /128 each).
	VIPs []netip.Prefix
	// Timing of the self-fencing rules; its LeaderLeaseTimeout must be
	// raft's.
	Timing LeaseTiming
	// Placement is PlacementSpread (default) or PlacementSingle.
	Placement string
	// Prefer maps an address to the node it goes to when placed.
	Prefer map[string]string
	// GARPCount announcements are sent when an address is taken,
	// GARPInterval apart (3, 500ms).
	GARPCount    int
	GARPInterval time.Duration
	// Settle is how long a new leader waits for every voter to show up
	// healthy before it places addresses nobody holds (5s).
	Settle time.Duration
	// Unreachable is how long the leader's heartbeats to a follower must
	// fail before its addresses move (the timing's LeaderLeaseTimeout).
	Unreachable time.Duration
	// Tick is the holder loop's period (25ms): part of Timing.Margin.
	Tick time.Duration

	Addrs   AddrOps
	Sockets Sockets
	Logger  *slog.Logger
}

// Owner takes and gives up this node's addresses, and places addresses
// while the node leads.
type Owner struct {
	cfg    OwnerConfig
	node   *Node
	state  *fsm.State
	gossip *Gossip
	log    *slog.Logger
	self   string
	vips   map[string]netip.Prefix

	started  atomic.Bool
	draining atomic.Bool // this node is draining (SetDraining): its addresses move
	wake     chan struct{}

	// holder loop state (its goroutine only)
	held      map[string]*holding
	seen      map[string]seen
	wasFresh  bool
	lastStep  time.Time
	lastClean time.Time
	// unheldSince: the addresses assigned here but not held after the
	// last pass, since when; unheldAt: when that pass ran.
	unheldSince map[string]time.Time
	unheldAt    time.Time
	// backoff: ip -> no new attempt to take it before (acquireBackoff
	// after a failure). Not a retry.Backoff: the loop must not block on
	// one address, and it goes by the pass's now.
	backoff map[string]time.Time

	// barrierWait paces address barriers after a failure (used by the
	// one barrier in flight).
	barrierWait *retry.Backoff

	mu       sync.Mutex
	synced   bool   // an AddressBarrier applied since the last loss of contact
	syncing  bool   // one is in flight
	lossGen  uint64 // bumped at every loss of contact
	status   map[string]string
	heldView map[string]time.Time // ip -> held since, for Status
	// unheldView: ip -> assigned here but not held since, for Status
	unheldView map[string]time.Time
}

type holding struct {
	prefix    netip.Prefix
	epoch     uint64
	since     time.Time
	ports     string // the alias ports the sockets were opened with
	refreshed time.Time
	stopGARP  context.CancelFunc
}

type seen struct {
	epoch uint64
	at    time.Time
}

const (
	defaultGARPCount    = 3
	defaultGARPInterval = 500 * time.Millisecond
	defaultSettle       = 5 * time.Second
	defaultOwnerTick    = 25 * time.Millisecond
	refreshEvery        = 100 * time.Millisecond
	cleanEvery          = time.Second
	acquireBackoff      = time.Second
	barrierTimeout      = 2 * time.Second
	placeTimeout        = 2 * time.Second
	placeEvery          = 50 * time.Millisecond
	// failedWritePause: after a failed address barrier or placement,
	// how long before the next try.
	failedWritePause = 100 * time.Millisecond
	// staleDecision: a decision to take or renew an address older than
	// this (the loop was held up between deciding and acting) is not
	// acted on.
	staleDecision = 100 * time.Millisecond
)

// NewOwner prepares the owner of node's addresses; Run starts it.
func NewOwner(cfg OwnerConfig, node *Node, state *fsm.State, gossip *Gossip) (*Owner, error) {
	if node == nil || state == nil || gossip == nil || cfg.Addrs == nil || cfg.Sockets == nil {
		return nil, errors.New("ownership: node, state, gossip, address operations and sockets are required")
	}
	if err := cfg.Timing.Validate(); err != nil {
		return nil, fmt.Errorf("ownership: %w", err)
	}
	switch cfg.Placement {
	case "":
		cfg.Placement = PlacementSpread
	case PlacementSpread, PlacementSingle:
	default:
		return nil, fmt.Errorf("ownership: placement %q: must be %q or %q", cfg.Placement, PlacementSpread, PlacementSingle)
	}
	setDefault(&cfg.GARPCount, defaultGARPCount)
	setDefault(&cfg.GARPInterval, defaultGARPInterval)
	setDefault(&cfg.Settle, defaultSettle)
	setDefault(&cfg.Unreachable, cfg.Timing.LeaderLeaseTimeout)
	setDefault(&cfg.Tick, defaultOwnerTick)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	o := &Owner{
		cfg:         cfg,
		node:        node,
		state:       state,
		gossip:      gossip,
		log:         cfg.Logger.With("component", "ownership"),
		self:        node.ID(),
		vips:        map[string]netip.Prefix{},
		wake:        make(chan struct{}, 1),
		held:        map[string]*holding{},
		seen:        map[string]seen{},
		backoff:     map[string]time.Time{},
		barrierWait: retry.Policy{Initial: failedWritePause}.New(),
		status:      map[string]string{},
		heldView:    map[string]time.Time{},
	}
	for _, p := range cfg.VIPs {
		ip := p.Addr().Unmap()
		if _, dup := o.vips[ip.String()]; dup {
			return nil, fmt.Errorf("ownership: virtual IP %s listed twice", ip)
		}
		o.vips[ip.String()] = netip.PrefixFrom(ip, p.Bits())
	}
	node.metrics.owner.Store(o)
	return o, nil
}

func (o *Owner) kick() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// SetDraining marks this node as draining (a planned stop) or back in
// service. Draining, the holder loop gives up every address and takes
// none, and while the node leads its own addresses move like those of a
// member whose gossip health says draining. SetDraining(true) returns once
// the holder loop has given its addresses up (or after timeout): call it
// before telling the others (gossip) that the node drains.
func (o *Owner) SetDraining(on bool, timeout time.Duration) {
	o.draining.Store(on)
	o.kick()
	if !on || !o.started.Load() {
		return
	}
	deadline := time.Now().Add(timeout)
	for len(o.Held()) > 0 && time.Now().Before(deadline) {
		o.kick()
		time.Sleep(o.cfg.Tick / 2)
	}
}

// Held returns the addresses this node holds now.
func (o *Owner) Held() []string {
	o.mu.Lock()
	out := make([]string, 0, len(o.heldView))
	for ip := range o.heldView {
		out = append(out, ip)
	}
	o.mu.Unlock()
	slices.SortFunc(out, fsm.CompareAddr)
	return out
}
