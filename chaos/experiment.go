//go:build linux

package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/internal/retry"
)

// An experiment is one scenario under the mixed workload, then the
// checkers: what the chaos command runs (Run) and what the broken-build
// tests run against deliberately broken builds.
//
//	setup      three nodes with the virtual IP and an alias, a tariff,
//	           the accounts (phones, callers, callees)
//	workload   phones registering and refreshing through the virtual IP
//	           and the alias; prepaid calls (several accounts, several
//	           calls at once on each balance, some long enough to need
//	           extensions, some cut when the money runs out); top-ups
//	           with idempotency keys, each sent again once as a client
//	           that lost the answer would
//	faults     the scenario, after a warm-up and before the tail of the
//	           workload; then every node is running and every split healed
//	settle     the loads end, every call ends, every top-up is resolved,
//	           every node has caught up
//	checkers   set, bank, single holder, availability (checks.go)

// Config is one experiment.
type Config struct {
	Scenario string        // a name of Scenarios
	Duration time.Duration // how long the workload runs; the faults happen within it. Default 60 s
	Seed     uint64        // the random choices (flapping's splits); 0: from the clock
	Binary   string        // the troika binary under test (required)
	// OldBinary is the build rolling-upgrade starts the cluster on.
	OldBinary string
	Dir       string // where the run directory is made (Options.Dir)
	Keep      bool   // keep the run directory even when every checker passes
	// Phones is the number of phone accounts that register, default 500.
	Phones int
	// ExpectFailures: a run against a deliberately broken build, whose
	// checkers are meant to fail: a failed checker does not keep the run
	// directory (a failed test still does).
	ExpectFailures bool
	// MaxRecovery bounds, for the availability checker, how long after a
	// fault (after the repair, when every node was down) REGISTERs may
	// fail before one succeeds again. Default 10 s.
	MaxRecovery time.Duration
}

func (c Config) withDefaults() Config {
	if c.Duration == 0 {
		c.Duration = 60 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.Phones == 0 {
		c.Phones = 500
	}
	if c.MaxRecovery == 0 {
		c.MaxRecovery = 10 * time.Second
	}
	return c
}

// Outcome is what an experiment found.
type Outcome struct {
	Scenario   string
	Seed       uint64
	VIP, Alias netip.Addr
	Findings   []Finding
	Faults     []FaultFigures
	Loads      []*LoadResult
	// RunDir is the run directory: the nodes' logs, SIPp's files and the
	// reports. Kept when a checker failed or Config.Keep.
	RunDir string
	Kept   bool
	// ReportText and ReportHTML are the reports (report.txt and
	// report.html in the run directory).
	ReportText, ReportHTML string
	Took                   time.Duration
}

// OK reports whether every checker passed.
func (o *Outcome) OK() bool {
	for _, f := range o.Findings {
		if !f.OK {
			return false
		}
	}
	return len(o.Findings) > 0
}

// Finding returns the named checker's finding.
func (o *Outcome) Finding(checker string) (Finding, bool) {
	for _, f := range o.Findings {
		if f.Checker == checker {
			return f, true
		}
	}
	return Finding{}, false
}

// Fault is one fault a scenario injected.
type Fault struct {
	Name string    // e.g. "kill n2 (holder of 10.64.3.100)"
	At   time.Time // when it began
	// RepairedAt is when the scenario undid it (heal, restart, resume);
	// zero when the cluster had to cope alone.
	RepairedAt time.Time
	// AllDown: every node was down, so nothing can fail over: recovery
	// counts from the repair.
	AllDown bool
}

// Experiment is an experiment in progress: what a scenario's faults act
// on.
type Experiment struct {
	t     T
	cfg   Config
	ctx   context.Context
	C     *Cluster
	VIP   netip.Addr
	Alias netip.Addr
	Rand  *rand.Rand // seeded with Config.Seed
	work  *workload
	// fromOldBuild: the cluster starts on Config.OldBinary.
	fromOldBuild bool

	nodeTurn atomic.Int64 // onAnyNode's next node

	mu     sync.Mutex
	faults []Fault
}

// Run runs the experiment cfg describes and returns what the checkers
// found. Setup failures are fatal to t; the checkers' verdicts are not
// (the caller decides: the chaos command fails on them, the broken-build
// tests want them to fail). The run directory is kept when a checker
// failed. ctx cuts the run short (the workload and waits end, then the
// cleanup runs).
func Run(ctx context.Context, t T, cfg Config) *Outcome {
	t.Helper()
	started := time.Now()
	cfg = cfg.withDefaults()
	sc, ok := ScenarioNamed(cfg.Scenario)
	if !ok {
		t.Fatalf("chaos: no scenario %q: choose one of %s", cfg.Scenario, strings.Join(ScenarioNames(), ", "))
	}
	if cfg.Binary == "" {
		t.Fatal("chaos: Config.Binary is required: the troika binary under test")
	}
	if sc.FromOldBuild && cfg.OldBinary == "" {
		t.Fatalf("chaos: scenario %s starts the cluster on an earlier build: set Config.OldBinary (the command: -old-binary PATH or -from-rev REV)", sc.Name)
	}
	x := &Experiment{t: t, cfg: cfg, ctx: ctx, fromOldBuild: sc.FromOldBuild, Rand: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	x.C = New(t, x.options(sc))
	x.VIP, x.Alias = vipAddr(x.C.Nodes[0].Addr), aliasAddr(x.C.Nodes[0].Addr)
	x.C.Mark("scenario " + sc.Name)
	t.Logf("chaos: scenario %s (%s), workload %s, seed %d, run directory %s", sc.Name, sc.Summary, cfg.Duration, cfg.Seed, x.C.Dir)
	x.C.WatchLeader(250 * time.Millisecond)
	if err := x.setup(); err != nil {
		t.Fatalf("chaos: setup: %v (node logs in %s)", err, x.C.Dir)
	}

	x.work = x.startWorkload()
	warm, window := x.schedule()
	x.C.Mark("workload started")
	if err := x.work.waitWarm(warm); err != nil {
		t.Fatalf("chaos: the workload did not get going before the faults: %v (node logs in %s)", err, x.C.Dir)
	}
	x.C.Mark("faults begin")
	t.Logf("chaos: %s: injecting faults for up to %s", sc.Name, window.Round(time.Second))
	if err := sc.Inject(x, window); err != nil {
		x.C.Mark("fault injection failed")
		t.Errorf("chaos: %s: the faults could not be injected as planned: %v", sc.Name, err)
	}
	x.C.Mark("faults end")
	if err := x.repairAll(); err != nil {
		t.Fatalf("chaos: bringing every node back after the faults: %v (node logs in %s)", err, x.C.Dir)
	}
	x.work.startAfterFaults()
	if err := x.work.finish(); err != nil {
		t.Errorf("chaos: ending the workload: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("chaos: %s: interrupted; the cleanup stops every process and deletes the namespaces", sc.Name)
	}
	if err := x.settle(); err != nil {
		t.Errorf("chaos: the cluster did not settle after the workload: %v", err)
	}
	x.C.Mark("checkers")
	x.C.AddSection(x.work.section())
	out := &Outcome{Scenario: sc.Name, Seed: cfg.Seed, VIP: x.VIP, Alias: x.Alias, RunDir: x.C.Dir}
	out.Findings, out.Faults = x.check()
	for _, f := range out.Findings {
		status := "PASS"
		if !f.OK {
			status = "FAIL"
		}
		t.Logf("chaos: %s: checker %-13s %s: %s", sc.Name, f.Checker, status, f.Summary)
	}
	x.C.SetFindings(out.Findings)
	if !out.OK() && !cfg.ExpectFailures {
		x.C.KeepRunDir()
	}
	out.Loads = x.C.loadResults()
	out.ReportText, out.ReportHTML = x.C.ReportText(), x.C.ReportHTML()
	out.Kept = cfg.Keep || (!out.OK() && !cfg.ExpectFailures)
	out.Took = time.Since(started)
	return out
}

// options are the cluster's: the virtual IP, billing by chunks of 10 s
// (so calls extend within a run), calls at most a minute; rolling-upgrade
// starts on the old build with plaintext cluster ports (the TLS move is
// TestUpgradeFromEarlierBuild's).
func (x *Experiment) options(sc Scenario) Options {
	o := Options{Binary: x.cfg.Binary, Dir: x.cfg.Dir, Keep: x.cfg.Keep, StartTimeout: 40 * time.Second}
	if sc.FromOldBuild {
		o.Binary, o.PlaintextCluster = x.cfg.OldBinary, true
	}
	old := x.cfg.OldBinary
	o.Config = func(n *Node, cfg TOML) {
		vipConfig(n, cfg)
		cfg.Set("billing.reserve_chunk", "10s")
		cfg.Set("billing.max_call_duration", "1m")
		if old != "" && n.Binary == old && old != x.cfg.Binary {
			// Keys an earlier build may not know (it refuses unknown
			// keys): its defaults instead.
			cfg.Delete("log_format")
			cfg.Delete("billing.reserve_chunk")
		}
	}
	return o
}

// schedule returns the warm-up (the workload alone) and the window the
// faults have: from the warm-up to a tail of the workload in which the
// cluster recovers under load.
func (x *Experiment) schedule() (warm, window time.Duration) {
	d := x.cfg.Duration
	warm = min(8*time.Second, d/5)
	tail := min(15*time.Second, d/3)
	return warm, max(d-warm-tail, 5*time.Second)
}

// Fault records a fault that begins now and returns its index, for
// Repaired.
func (x *Experiment) Fault(name string, allDown bool) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.faults = append(x.faults, Fault{Name: name, At: time.Now(), AllDown: allDown})
	x.C.Mark("fault: " + name)
	return len(x.faults) - 1
}

// Repaired records that fault i was undone now.
func (x *Experiment) Repaired(i int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.faults[i].RepairedAt = time.Now()
}

// Faults returns the faults so far.
func (x *Experiment) Faults() []Fault {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.faults)
}

// Sleep waits d, or less when the run is cut short.
func (x *Experiment) Sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-x.ctx.Done():
		return x.ctx.Err()
	}
}

// Logf prints a progress line.
func (x *Experiment) Logf(format string, args ...any) { x.t.Logf("chaos: "+format, args...) }

// Leader waits (up to 20 s) for an agreed leader among the running nodes.
func (x *Experiment) Leader() (*Node, error) { return x.C.WaitLeader(20 * time.Second) }

// Holder waits (up to 20 s) for the virtual IP's sole holder.
func (x *Experiment) Holder() (*Node, error) {
	n, _, err := x.C.WaitSoleHolder(x.VIP, 20*time.Second)
	return n, err
}

// repairAll brings the cluster back whatever a scenario left: every node
// running and thawed (a partition heals with its scenario). Then it waits
// for a leader.
func (x *Experiment) repairAll() error {
	var errs []error
	for _, n := range x.C.Nodes {
		switch {
		case n.Paused():
			errs = append(errs, n.Resume())
		case !n.Running():
			errs = append(errs, n.Start())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	_, err := x.C.WaitLeader(30 * time.Second)
	return err
}

// settle waits until every node agrees on a leader, has applied what it
// committed and sees every other node healthy.
func (x *Experiment) settle() error {
	if _, err := x.C.WaitLeader(30 * time.Second); err != nil {
		return err
	}
	for _, n := range x.C.Nodes {
		if err := x.C.WaitCaughtUp(n, 30*time.Second); err != nil {
			return err
		}
	}
	return x.C.WaitHealthy(30 * time.Second)
}

// adminWrites is how admin API writes are retried: through the next
// running node, with growing waits, for as long as their context lasts.
var adminWrites = retry.Policy{Initial: 200 * time.Millisecond, Max: time.Second}

// onAnyNode calls f with the running, unpaused nodes in turn until one
// call succeeds, a call's error is permanent (retry.Permanent) or ctx
// ends: an admin API client that moves on to another node when one
// does not answer.
func (x *Experiment) onAnyNode(ctx context.Context, f func(ctx context.Context, n *Node) error) error {
	next := int(x.nodeTurn.Add(1))
	_, err := retry.Do(ctx, adminWrites, func(ctx context.Context) (struct{}, error) {
		for range x.C.Nodes {
			n := x.C.Nodes[next%len(x.C.Nodes)]
			next++
			if !n.Running() || n.Paused() {
				continue
			}
			actx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err := f(actx, n)
			cancel()
			return struct{}{}, err
		}
		return struct{}{}, errors.New("no node is running")
	}, nil)
	return err
}

// permanentAPIError marks the API's refusals of a request as such (4xx
// other than 408 and 429): sending it again cannot help.
func permanentAPIError(err error) error {
	var ae *admin.APIError
	if errors.As(err, &ae) && ae.Status/100 == 4 && ae.Status != 408 && ae.Status != 429 {
		return retry.Permanent(err)
	}
	return err
}

// setup adds the alias, waits until the virtual IP and the alias are
// held, and creates the tariffs and accounts (accounts.go).
func (x *Experiment) setup() error {
	ctx, cancel := context.WithTimeout(x.ctx, 60*time.Second)
	defer cancel()
	if _, err := x.C.WaitLeader(30 * time.Second); err != nil {
		return err
	}
	err := x.onAnyNode(ctx, func(ctx context.Context, n *Node) error {
		_, err := n.Admin().PutAlias(ctx, admin.Alias{IP: x.Alias.String(), Ports: admin.AliasPorts{UDP: []int{aliasExtraPort}}})
		return permanentAPIError(err)
	})
	if err != nil {
		return fmt.Errorf("adding the alias %s: %w", x.Alias, err)
	}
	for _, a := range []netip.Addr{x.VIP, x.Alias} {
		n, _, err := x.C.WaitSoleHolder(a, 30*time.Second)
		if err != nil {
			return err
		}
		x.Logf("%s is held by %s", a, n.Name)
	}
	if err := x.createAccounts(ctx); err != nil {
		return err
	}
	for _, n := range x.C.Nodes {
		if err := x.C.WaitCaughtUp(n, 20*time.Second); err != nil {
			return err
		}
	}
	return nil
}
