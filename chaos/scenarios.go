//go:build linux

package chaos

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Scenario is a plan of faults, injected while the workload runs
// (experiment.go).
type Scenario struct {
	Name    string
	Summary string
	// FromOldBuild: the cluster starts on Config.OldBinary.
	FromOldBuild bool
	// Inject injects the faults within window (it may overrun it to
	// finish a step) and undoes them: every split healed, every node
	// started and thawed, before it returns.
	Inject func(x *Experiment, window time.Duration) error
}

// Scenarios are the chaos command's scenarios, in the order "all" runs
// them.
var Scenarios = []Scenario{
	{Name: "partition-leader", Summary: "the leader is cut off from the other nodes, then the split heals", Inject: onNode((*Experiment).Leader, partitionLeader)},
	{Name: "partition-holder", Summary: "the virtual IP's holder is cut off from the other nodes, then the split heals", Inject: onNode((*Experiment).Holder, partitionHolder)},
	{Name: "asymmetric", Summary: "the leader hears nothing from the other nodes while they still hear it, then the split heals", Inject: onNode((*Experiment).Leader, asymmetric)},
	{Name: "kill-leader", Summary: "the leader is SIGKILLed, then started again", Inject: onNode((*Experiment).Leader, killLeader)},
	{Name: "kill-holder", Summary: "the virtual IP's holder is SIGKILLed, then started again", Inject: onNode((*Experiment).Holder, killHolder)},
	{Name: "pause-leader", Summary: "the leader is frozen (SIGSTOP) for longer than the address lease, then thawed", Inject: onNode((*Experiment).Leader, pauseLeader)},
	{Name: "flapping", Summary: "a random node is cut off for 2-4 s every few seconds (seeded)", Inject: flapping},
	{Name: "full-restart", Summary: "every node is SIGKILLed, then all are started again", Inject: fullRestart},
	{Name: "rolling-upgrade", Summary: "the cluster starts on an earlier build; each node in turn is stopped (SIGTERM) and started on this one", FromOldBuild: true, Inject: rollingUpgrade},
}

// ScenarioNamed returns the scenario called name.
func ScenarioNamed(name string) (Scenario, bool) {
	i := slices.IndexFunc(Scenarios, func(s Scenario) bool { return s.Name == name })
	if i < 0 {
		return Scenario{}, false
	}
	return Scenarios[i], true
}

// ScenarioNames lists the scenarios' names.
func ScenarioNames() []string {
	out := make([]string, len(Scenarios))
	for i, s := range Scenarios {
		out[i] = s.Name
	}
	return out
}

// onNode is the Inject of a fault on one node: pick chooses it (the
// leader, the virtual IP's holder) when the fault is due.
func onNode(pick func(*Experiment) (*Node, error), fault func(x *Experiment, n *Node, window time.Duration) error) func(*Experiment, time.Duration) error {
	return func(x *Experiment, window time.Duration) error {
		n, err := pick(x)
		if err != nil {
			return err
		}
		return fault(x, n, window)
	}
}

// splitFor is how long a single fault lasts within window.
func splitFor(window time.Duration) time.Duration { return min(10*time.Second, window/2) }

func partitionLeader(x *Experiment, l *Node, window time.Duration) error {
	return x.cutOff(l, fmt.Sprintf("partition of the leader %s%s", l.Name, x.holding(l)), splitFor(window), false)
}

func partitionHolder(x *Experiment, h *Node, window time.Duration) error {
	return x.cutOff(h, fmt.Sprintf("partition of %s, holder of %s%s", h.Name, x.VIP, x.leading(h)), splitFor(window), false)
}

func asymmetric(x *Experiment, l *Node, window time.Duration) error {
	return x.cutOff(l, fmt.Sprintf("asymmetric split: the leader %s%s hears nobody, the others hear it", l.Name, x.holding(l)), splitFor(window), true)
}

func killLeader(x *Experiment, l *Node, window time.Duration) error {
	return x.killFor(l, fmt.Sprintf("SIGKILL of the leader %s%s", l.Name, x.holding(l)), min(5*time.Second, window/2))
}

func killHolder(x *Experiment, h *Node, window time.Duration) error {
	return x.killFor(h, fmt.Sprintf("SIGKILL of %s, holder of %s%s", h.Name, x.VIP, x.leading(h)), min(5*time.Second, window/2))
}

func pauseLeader(x *Experiment, l *Node, window time.Duration) error {
	d := max(4*vipLease, min(6*time.Second, window/2))
	if err := l.Pause(); err != nil {
		return err
	}
	i := x.Fault(fmt.Sprintf("SIGSTOP of the leader %s%s for %s (address lease %s)", l.Name, x.holding(l), d, vipLease), false)
	slept := x.Sleep(d)
	err := l.Resume()
	x.Repaired(i)
	return errors.Join(slept, err, x.caughtUp(l))
}

func flapping(x *Experiment, window time.Duration) error {
	end := time.Now().Add(window)
	for k := 1; ; k++ {
		n := x.C.Nodes[x.Rand.IntN(len(x.C.Nodes))]
		hold := 2*time.Second + time.Duration(x.Rand.Int64N(int64(2*time.Second)))
		calm := time.Second + time.Duration(x.Rand.Int64N(int64(2*time.Second)))
		if time.Until(end) < hold {
			return nil
		}
		p, err := x.C.Partition(n)
		if err != nil {
			return err
		}
		i := x.Fault(fmt.Sprintf("split %d: %s%s%s cut off for %.1f s", k, n.Name, x.leading(n), x.holding(n), hold.Seconds()), false)
		slept := x.Sleep(hold)
		err = p.Heal()
		x.Repaired(i)
		if err := errors.Join(slept, err); err != nil {
			return err
		}
		if err := x.Sleep(calm); err != nil {
			return err
		}
	}
}

func fullRestart(x *Experiment, window time.Duration) error {
	killed := onEvery(x.C.Nodes, (*Node).Kill)
	f := x.Fault("SIGKILL of every node", true)
	if killed != nil {
		return killed
	}
	slept := x.Sleep(min(3*time.Second, window/3))
	started := onEvery(x.C.Nodes, (*Node).Start)
	x.Repaired(f)
	if err := errors.Join(started, slept); err != nil {
		return err
	}
	l, err := x.C.WaitLeader(30 * time.Second)
	if err == nil {
		x.Logf("every node restarted; %s leads", l.Name)
	}
	return err
}

// rollingUpgrade stops each node in turn (SIGTERM, as systemctl restart
// does) and starts it on the binary under test, the holders of the
// addresses first, each once the cluster has caught up and is healthy.
func rollingUpgrade(x *Experiment, window time.Duration) error {
	done := map[*Node]bool{}
	for len(done) < len(x.C.Nodes) {
		var n *Node
		for _, a := range []netip.Addr{x.VIP, x.Alias} {
			if h := x.C.Holders(a); len(h) == 1 && n == nil {
				if cand := x.C.Node(h[0]); cand != nil && !done[cand] {
					n = cand
				}
			}
		}
		for _, cand := range x.C.Nodes {
			if n == nil && !done[cand] {
				n = cand
			}
		}
		done[n] = true
		i := x.Fault(fmt.Sprintf("upgrade of %s%s%s: SIGTERM, then this build", n.Name, x.leading(n), x.holding(n)), false)
		err := n.SwapBinary(x.cfg.Binary, 15*time.Second)
		x.Repaired(i)
		if err != nil {
			return fmt.Errorf("upgrading %s: %w", n.Name, err)
		}
		if err := x.caughtUp(n); err != nil {
			return err
		}
		if err := x.C.WaitHealthy(30 * time.Second); err != nil {
			return err
		}
		if len(done) < len(x.C.Nodes) {
			// Old and new builds serve side by side for a while.
			if err := x.Sleep(min(5*time.Second, window/6)); err != nil {
				return err
			}
		}
	}
	x.Logf("every node runs %s", x.cfg.Binary)
	return nil
}

// cutOff partitions n from the other nodes (only its inbound traffic
// when inbound) for d, then heals, and waits until n has caught up.
func (x *Experiment) cutOff(n *Node, name string, d time.Duration, inbound bool) error {
	cut := x.C.Partition
	if inbound {
		cut = x.C.PartitionInbound
	}
	p, err := cut(n)
	if err != nil {
		return err
	}
	i := x.Fault(name, false)
	slept := x.Sleep(d)
	err = p.Heal()
	x.Repaired(i)
	return errors.Join(slept, err, x.caughtUp(n))
}

// killFor SIGKILLs n, waits d and starts it again.
func (x *Experiment) killFor(n *Node, name string, d time.Duration) error {
	if err := n.Kill(); err != nil {
		return err
	}
	i := x.Fault(name, false)
	slept := x.Sleep(d)
	err := n.Start()
	x.Repaired(i)
	if err != nil {
		return errors.Join(slept, err)
	}
	return errors.Join(slept, x.caughtUp(n))
}

// caughtUp waits until n has applied what the leader had committed, and
// logs how long that took.
func (x *Experiment) caughtUp(n *Node) error {
	start := time.Now()
	if err := x.C.WaitCaughtUp(n, 30*time.Second); err != nil {
		return err
	}
	x.Logf("%s caught up in %.1f s", n.Name, time.Since(start).Seconds())
	return nil
}

// holding says which of the addresses n holds now, for fault names.
func (x *Experiment) holding(n *Node) string {
	var held []string
	for _, a := range []netip.Addr{x.VIP, x.Alias} {
		if slices.Contains(x.C.Holders(a), n.Name) {
			held = append(held, a.String())
		}
	}
	if len(held) == 0 {
		return ""
	}
	return " (holding " + strings.Join(held, ", ") + ")"
}

// leading says whether n leads, as last sampled, for fault names.
func (x *Experiment) leading(n *Node) string {
	if tl := x.C.LeaderTimeline(); len(tl) > 0 && tl[len(tl)-1].Leader == n.Name {
		return " (leader)"
	}
	return ""
}
