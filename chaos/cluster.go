//go:build linux

package chaos

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Fixed ports on every node's address.
const (
	ClusterPort = 7000
	SIPPort     = 5060
	APIPort     = 8080
)

// Iface is the name of every host's interface on the test subnet (a veth
// whose peer is a port of the switch's bridge br0): the interface a VIP
// configuration names.
const Iface = "eth0"

// lockDir holds one lock file per live run; Sweep leaves alone the
// namespaces of runs whose lock is held.
const lockDir = "/run/troika-chaos"

// namePrefix starts every run id; runName matches the names the harness
// gives to namespaces ("tk3fa9c1-n1").
const namePrefix = "tk"

var runName = regexp.MustCompile(`^(` + namePrefix + `[0-9a-f]{6})-[a-z0-9]+$`)

// Options configure a cluster.
type Options struct {
	// Binary is the troika binary the nodes run (testkit.Binary). Required.
	Binary string
	// Nodes is the number of nodes, default 3 (at most 9).
	Nodes int
	// LogLevel of the nodes, default "info".
	LogLevel string
	// Config may change node n's generated configuration before it is
	// written (at New, and again at every Start): add the VIP section,
	// aliases, registrar settings... See TOML.Set.
	Config func(n *Node, cfg TOML)
	// Sysctls are set in every node namespace before the nodes start,
	// e.g. {"net.ipv4.ip_nonlocal_bind": "1"}.
	Sysctls map[string]string
	// PlaintextCluster leaves [cluster.tls] out of the generated
	// configurations: the cluster port runs without TLS. By default each
	// node gets a certificate of the run's CA (RUN_DIR/tls) and requires
	// TLS both ways; Config can change the switches, or delete
	// "cluster.tls" for one node (a binary that knows no TLS).
	PlaintextCluster bool
	// NoStart builds the network and writes the configurations but starts
	// no node: call Node.Start, or use the namespaces by hand.
	NoStart bool
	// StartTimeout bounds New's wait for the nodes' admin APIs and a
	// leader. Default 30 s.
	StartTimeout time.Duration
	// Keep keeps the run directory even when the test passes (also:
	// environment CHAOS_KEEP=1).
	Keep bool
	// Dir is where run directories are made, default $CHAOS_DIR or the
	// system temporary directory.
	Dir string
}

// Cluster is a troika cluster in network namespaces, with a client
// namespace for phones.
type Cluster struct {
	t    T
	opts Options

	ID     string       // run id, e.g. "tk3fa9c1": the prefix of every name
	Subnet netip.Prefix // the test subnet, 10.X.Y.0/24
	Switch string       // the switch namespace (bridge br0)
	Nodes  []*Node      // n1, n2, n3...
	Client *Host        // the phones' namespace
	Dir    string       // the run directory: configs, data, logs, SIPp files, report
	Token  string       // the admin API token of every node
	TLSDir string       // the run's CA and node certificates: ca.pem, nN.pem, nN-key.pem

	clusterKey string
	lock       *os.File
	started    time.Time

	mu        sync.Mutex
	events    []Event
	loads     []*Load
	nextPort  int
	closed    bool
	sampler   *sampler
	bgCtx     context.Context // ends at Close: the background watchers stop
	bgCancel  context.CancelFunc
	bgWG      sync.WaitGroup
	namespace []string // every namespace made, for Close

	leaderWatch bool           // WatchLeader runs
	leaders     []LeaderSample // its samples
	findings    []Finding      // the checkers' results, for the report
	sections    []ReportSection
}

// Event is one entry of the run's timeline: a fault, a node's start or
// exit, an address added by hand, or a test's Mark.
type Event struct {
	At     time.Time
	Kind   string // start, ready, kill, stop, pause, resume, exit, partition, heal, swap, addr-add, addr-del, mark
	Host   string // the node or host concerned, "" for the cluster
	Detail string
}

// NeedRoot skips the test unless it runs as root with ip and iptables.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chaos tests need root (network namespaces, iptables); CI runs them as root")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("chaos tests need %s", tool)
		}
	}
}

// New builds the network, writes the configurations, starts the nodes
// and waits until they agree on a leader (unless Options.NoStart). It
// registers Close with t.Cleanup; any failure is fatal to the test (or,
// with a Runner, to the run).
func New(t T, opts Options) *Cluster {
	t.Helper()
	if opts.Binary == "" {
		t.Fatal("chaos: Options.Binary is required (testkit.Binary)")
	}
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Nodes < 1 || opts.Nodes > 9 {
		t.Fatalf("chaos: %d nodes: 1-9", opts.Nodes)
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.Dir == "" {
		opts.Dir = os.Getenv("CHAOS_DIR")
	}
	if opts.Dir == "" {
		opts.Dir = os.TempDir()
	}
	opts.Keep = opts.Keep || os.Getenv("CHAOS_KEEP") == "1"
	if err := Sweep(); err != nil {
		t.Logf("chaos: sweeping earlier runs: %v", err)
	}
	c := &Cluster{t: t, opts: opts, nextPort: 15060}
	if err := c.lockRun(); err != nil {
		t.Fatalf("chaos: %v", err)
	}
	t.Cleanup(c.Close)
	var err error
	if c.Subnet, err = pickSubnet(); err != nil {
		t.Fatalf("chaos: %v", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		t.Fatalf("chaos: %v", err)
	}
	if c.Dir, err = os.MkdirTemp(opts.Dir, "troika-chaos-"+c.ID+"-"); err != nil {
		t.Fatalf("chaos: %v", err)
	}
	c.Token = randomHex(16)
	c.clusterKey = base64.StdEncoding.EncodeToString(randomBytes(32))
	c.started = time.Now()
	c.event("", "setup", fmt.Sprintf("run %s, subnet %s, run directory %s", c.ID, c.Subnet, c.Dir))
	if err := c.buildNetwork(); err != nil {
		t.Fatalf("chaos: building the network: %v", err)
	}
	if err := c.makeCerts(); err != nil {
		t.Fatalf("chaos: certificates: %v", err)
	}
	for _, n := range c.Nodes {
		if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
			t.Fatalf("chaos: %v", err)
		}
		if err := c.writeConfig(n); err != nil {
			t.Fatalf("chaos: %v", err)
		}
	}
	bg, cancel := context.WithCancel(context.Background())
	c.bgCtx, c.bgCancel = bg, cancel
	if err := c.startSampler(bg); err != nil {
		t.Fatalf("chaos: address sampler: %v", err)
	}
	if opts.NoStart {
		return c
	}
	if err := onEvery(c.Nodes, (*Node).Start); err != nil {
		t.Fatalf("chaos: starting the nodes: %v", err)
	}
	if _, err := c.WaitLeader(opts.StartTimeout); err != nil {
		t.Fatalf("chaos: %v", err)
	}
	return c
}

// onEvery runs f on every node at once and joins their errors.
func onEvery(nodes []*Node, f func(*Node) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// lockRun picks a run id that no namespace uses and holds its lock file.
func (c *Cluster) lockRun() error {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return err
	}
	names, err := netnsNames()
	if err != nil {
		return err
	}
	for range 100 {
		id := namePrefix + randomHex(3)
		if slicesHasPrefix(names, id+"-") {
			continue
		}
		// Lock a private file, then give it its public name: Sweep never
		// sees a run's lock file unlocked while the run lives.
		f, err := os.CreateTemp(lockDir, ".new-")
		if err != nil {
			return err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			os.Remove(f.Name())
			return err
		}
		fmt.Fprintf(f, "pid %d\n", os.Getpid())
		name := filepath.Join(lockDir, id+".lock")
		err = os.Link(f.Name(), name)
		os.Remove(f.Name())
		if errors.Is(err, os.ErrExist) {
			f.Close()
			continue
		}
		if err != nil {
			f.Close()
			return err
		}
		c.ID, c.lock = id, f
		return nil
	}
	return errors.New("no free run id")
}

func slicesHasPrefix(names []string, prefix string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

// Hosts returns the nodes' hosts and the client's.
func (c *Cluster) Hosts() []*Host {
	out := make([]*Host, 0, len(c.Nodes)+1)
	for _, n := range c.Nodes {
		out = append(out, &n.Host)
	}
	return append(out, c.Client)
}

// Node returns the node named name ("n2"), or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Mark adds a labelled event to the timeline (and the test log).
func (c *Cluster) Mark(label string) { c.event("", "mark", label) }

func (c *Cluster) event(host, kind, detail string) Event {
	e := Event{At: time.Now(), Kind: kind, Host: host, Detail: detail}
	c.mu.Lock()
	c.events = append(c.events, e)
	start := c.started
	c.mu.Unlock()
	who := host
	if who == "" {
		who = "cluster"
	}
	c.t.Logf("chaos %+7.3fs %s %s %s", e.At.Sub(start).Seconds(), who, kind, detail)
	return e
}

// Events returns the timeline's events so far.
func (c *Cluster) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

// bgDone is closed at Close: background watchers stop.
func (c *Cluster) bgDone() <-chan struct{} { return c.bgCtx.Done() }

// Since is the time since the cluster was built: the x axis of the report.
func (c *Cluster) Since(t time.Time) time.Duration { return t.Sub(c.started) }

// localPort hands out client-side ports for SIPp runs.
func (c *Cluster) localPort() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextPort++
	return c.nextPort
}

// Close stops everything the cluster started and deletes its namespaces.
// It writes the report first; the run directory is kept (and its path
// logged) when the test failed or Options.Keep is set, and removed
// otherwise. It is safe to call more than once.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	loads := append([]*Load(nil), c.loads...)
	c.mu.Unlock()

	for _, l := range loads {
		l.cancel()
		l.Wait()
	}
	for _, n := range c.Nodes {
		n.killForClose()
	}
	if c.bgCancel != nil {
		c.bgCancel()
	}
	c.bgWG.Wait()
	if c.sampler != nil {
		c.sampler.close()
	}
	var errs []error
	if c.Dir != "" {
		if err := c.WriteReport(); err != nil {
			errs = append(errs, err)
		}
	}
	c.mu.Lock()
	nss := append([]string(nil), c.namespace...)
	c.mu.Unlock()
	for i := len(nss) - 1; i >= 0; i-- {
		if err := deleteNetns(nss[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if c.lock != nil {
		os.Remove(filepath.Join(lockDir, c.ID+".lock"))
		c.lock.Close()
	}
	if err := errors.Join(errs...); err != nil {
		c.t.Errorf("chaos: teardown: %v", err)
	}
	switch {
	case c.Dir == "":
	case c.t.Failed() || c.opts.Keep:
		c.t.Logf("chaos: run %s kept in %s (report.txt, report.html, node logs)", c.ID, c.Dir)
	default:
		os.RemoveAll(c.Dir)
	}
}

// Sweep removes what earlier runs that crashed (or were killed) left
// behind: namespaces named tkXXXXXX-* (and the processes in them) whose run
// does not hold its lock file, and those lock files. Live runs, in this
// process or others, are left alone. New calls it.
func Sweep() error {
	names, err := netnsNames()
	if err != nil {
		return err
	}
	runs := map[string][]string{}
	for _, n := range names {
		if m := runName.FindStringSubmatch(n); m != nil {
			runs[m[1]] = append(runs[m[1]], n)
		}
	}
	if locks, err := os.ReadDir(lockDir); err == nil {
		for _, l := range locks {
			if strings.HasPrefix(l.Name(), ".new-") && !lockHeld(filepath.Join(lockDir, l.Name())) {
				os.Remove(filepath.Join(lockDir, l.Name())) // a run that died while taking its id
			}
			if id, ok := strings.CutSuffix(l.Name(), ".lock"); ok && runName.MatchString(id+"-x") {
				if _, seen := runs[id]; !seen {
					runs[id] = nil
				}
			}
		}
	}
	var errs []error
	for id, nss := range runs {
		if runAlive(id) {
			continue
		}
		for _, ns := range nss {
			if err := deleteNetns(ns); err != nil {
				errs = append(errs, err)
			}
		}
		os.Remove(filepath.Join(lockDir, id+".lock"))
	}
	return errors.Join(errs...)
}

// runAlive reports whether some process holds run id's lock.
func runAlive(id string) bool { return lockHeld(filepath.Join(lockDir, id+".lock")) }

// lockHeld reports whether some process holds a flock on the file.
func lockHeld(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func randomHex(n int) string { return hex.EncodeToString(randomBytes(n)) }
