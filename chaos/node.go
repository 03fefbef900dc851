//go:build linux

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/cluster"
)

// Node is one troika node: a namespace and the agent process in it.
type Node struct {
	Host
	Index      int    // 1-based
	DataDir    string // kept across restarts
	ConfigPath string
	LogPath    string // stdout and stderr of every run, appended
	Binary     string // the binary Start runs; SwapBinary changes it

	admin *admin.Client

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when the current process has exited
	paused bool
	expect bool // the current process's exit is the harness's doing
}

// ClusterAddr is the node's cluster link, host:port.
func (n *Node) ClusterAddr() string {
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(ClusterPort))
}

// SIPAddr is the node's SIP address, host:port.
func (n *Node) SIPAddr() string { return net.JoinHostPort(n.Addr.String(), strconv.Itoa(SIPPort)) }

// APIAddr is the node's admin API, host:port.
func (n *Node) APIAddr() string { return net.JoinHostPort(n.Addr.String(), strconv.Itoa(APIPort)) }

func (n *Node) initAdmin() {
	ns := n.NS
	cl := admin.NewClient(n.APIAddr(), n.c.Token)
	cl.HTTP = &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialIn(ctx, ns, network, addr)
			},
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	n.admin = cl
}

// Admin is the admin API client of this node. Its sockets are made inside
// the node's namespace, so it reaches the node while it is partitioned
// from the others.
func (n *Node) Admin() *admin.Client { return n.admin }

// Running reports whether the node's process is alive (possibly paused).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Paused reports whether the node is frozen by Pause.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused && n.cmd != nil
}

// PID is the node process's id, 0 when it is not running.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Start starts the node (again) from its data directory with n.Binary,
// rewriting its configuration, and waits until its admin API answers.
func (n *Node) Start() error {
	if n.Running() {
		return fmt.Errorf("%s: already running", n.Name)
	}
	if err := n.c.writeConfig(n); err != nil {
		return err
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "\n=== chaos %s: %s agent --config %s (in %s)\n", time.Now().Format(time.RFC3339Nano), n.Binary, n.ConfigPath, n.NS)
	cmd := exec.Command("ip", "netns", "exec", n.NS, n.Binary, "agent", "--config", n.ConfigPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	// ip netns exec execs the binary: the process is troika itself. It
	// dies with the test process, and Ctrl-C on the test reaches only
	// the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	done := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.done, n.paused, n.expect = cmd, done, false, false
	n.mu.Unlock()
	n.c.event(n.Name, "start", fmt.Sprintf("pid %d, %s", cmd.Process.Pid, n.Binary))
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.mu.Lock()
		expected := n.expect
		n.mu.Unlock()
		close(done)
		if !expected {
			n.c.event(n.Name, "exit", fmt.Sprintf("unexpected: %v", errOrStatus(err, cmd)))
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := n.Status(ctx)
		cancel()
		if err == nil {
			n.c.event(n.Name, "ready", "admin API answers")
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited while starting: %v (log %s)", n.Name, errOrStatus(nil, cmd), n.LogPath)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: admin API not up within 30 s: %v (log %s)", n.Name, err, n.LogPath)
		}
	}
}

func errOrStatus(err error, cmd *exec.Cmd) string {
	if cmd.ProcessState != nil {
		return cmd.ProcessState.String()
	}
	if err != nil {
		return err.Error()
	}
	return "?"
}

// signal sends sig to the running process.
func (n *Node) signal(sig syscall.Signal) (chan struct{}, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return nil, fmt.Errorf("%s: not running", n.Name)
	}
	select {
	case <-n.done:
		return nil, fmt.Errorf("%s: not running", n.Name)
	default:
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		n.expect = true
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return nil, fmt.Errorf("%s: %v: %w", n.Name, sig, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		n.paused = true
	case syscall.SIGCONT:
		n.paused = false
	}
	return n.done, nil
}

// Kill SIGKILLs the node and waits until it is gone.
func (n *Node) Kill() error {
	done, err := n.signal(syscall.SIGKILL)
	if err != nil {
		return err
	}
	n.c.event(n.Name, "kill", "SIGKILL")
	<-done
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
	return nil
}

// Stop asks the node to stop (SIGTERM, after SIGCONT if paused) and
// SIGKILLs it if it has not exited within grace (default 15 s).
func (n *Node) Stop(grace time.Duration) error {
	if grace == 0 {
		grace = 15 * time.Second
	}
	n.mu.Lock()
	paused := n.paused
	n.mu.Unlock()
	if paused {
		if err := n.Resume(); err != nil {
			return err
		}
	}
	done, err := n.signal(syscall.SIGTERM)
	if err != nil {
		return err
	}
	start := time.Now()
	n.c.event(n.Name, "stop", "SIGTERM")
	select {
	case <-done:
		n.c.event(n.Name, "exit", fmt.Sprintf("stopped after %v", time.Since(start).Round(time.Millisecond)))
		return nil
	case <-time.After(grace):
		n.signal(syscall.SIGKILL)
		<-done
		n.c.event(n.Name, "kill", fmt.Sprintf("SIGKILL: still running %v after SIGTERM", grace))
		return fmt.Errorf("%s did not stop within %v of SIGTERM", n.Name, grace)
	}
}

// Pause freezes the node (SIGSTOP): it holds its sockets and addresses but
// answers nothing.
func (n *Node) Pause() error {
	if _, err := n.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	n.c.event(n.Name, "pause", "SIGSTOP")
	return nil
}

// Resume thaws a paused node (SIGCONT).
func (n *Node) Resume() error {
	if _, err := n.signal(syscall.SIGCONT); err != nil {
		return err
	}
	n.c.event(n.Name, "resume", "SIGCONT")
	return nil
}

// Restart kills the node (SIGKILL) if it runs and starts it again from its
// data directory.
func (n *Node) Restart() error {
	if n.Running() {
		if err := n.Kill(); err != nil {
			return err
		}
	}
	return n.Start()
}

// SwapBinary is one step of a rolling upgrade: it stops the node
// gracefully if it runs (Stop with grace), then starts binary from the same
// data directory and configuration. Later Starts use binary too.
func (n *Node) SwapBinary(binary string, grace time.Duration) error {
	if _, err := os.Stat(binary); err != nil {
		return err
	}
	if n.Running() {
		if err := n.Stop(grace); err != nil {
			return err
		}
	}
	old := n.Binary
	n.Binary = binary
	n.c.event(n.Name, "swap", fmt.Sprintf("%s -> %s", old, binary))
	return n.Start()
}

// killForClose ends the process at teardown, without events.
func (n *Node) killForClose() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.expect = true
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// Status is the part of GET /v1/cluster the harness reads; Raw has the
// whole answer (IP owners and whatever later versions add).
type Status struct {
	Version string         `json:"version"`
	Cluster cluster.Status `json:"cluster"` // the node's view of raft
	Sockets []string       `json:"sip_sockets"`
	// ClearPasswords counts records still holding a clear password
	// (from a build before digest credentials); absent (0) on such builds.
	ClearPasswords int             `json:"clear_passwords"`
	Raw            json.RawMessage `json:"-"`
}

// Status reads GET /v1/cluster from the node.
func (n *Node) Status(ctx context.Context) (Status, error) {
	raw, err := n.admin.ClusterStatus(ctx)
	if err != nil {
		return Status{}, err
	}
	s := Status{Raw: raw}
	if err := json.Unmarshal(raw, &s); err != nil {
		return Status{}, fmt.Errorf("%s: GET /v1/cluster: %w", n.Name, err)
	}
	return s, nil
}

// Voters counts the voters in the node's raft configuration.
func (s Status) Voters() int {
	v := 0
	for _, sv := range s.Cluster.Servers {
		if sv.Suffrage == "Voter" {
			v++
		}
	}
	return v
}

// Running returns the nodes whose process is alive.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// Others returns the nodes other than the given ones.
func (c *Cluster) Others(not ...*Node) []*Node {
	var out []*Node
outer:
	for _, n := range c.Nodes {
		for _, x := range not {
			if n == x {
				continue outer
			}
		}
		out = append(out, n)
	}
	return out
}

// WaitLeader waits until every given node (default: every running node
// that is not paused) answers, they all name the same leader, that leader
// is one of them and says it leads. It returns the leader.
func (c *Cluster) WaitLeader(timeout time.Duration, nodes ...*Node) (*Node, error) {
	if len(nodes) == 0 {
		for _, n := range c.Running() {
			if !n.Paused() {
				nodes = append(nodes, n)
			}
		}
	}
	if len(nodes) == 0 {
		return nil, errors.New("WaitLeader: no node is running")
	}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		leader, why := c.agreedLeader(nodes)
		if leader != nil {
			return leader, nil
		}
		last = why
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no agreed leader among %s within %v: %s", names(nodes), timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) agreedLeader(nodes []*Node) (*Node, string) {
	leaderID := ""
	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s, err := n.Status(ctx)
		cancel()
		switch {
		case err != nil:
			return nil, fmt.Sprintf("%s: %v", n.Name, err)
		case s.Cluster.LeaderID == "":
			return nil, fmt.Sprintf("%s knows no leader (%s)", n.Name, s.Cluster.State)
		case leaderID != "" && s.Cluster.LeaderID != leaderID:
			return nil, fmt.Sprintf("%s says %s leads, another says %s", n.Name, s.Cluster.LeaderID, leaderID)
		}
		leaderID = s.Cluster.LeaderID
	}
	for _, n := range nodes {
		if n.Name == leaderID {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			s, err := n.Status(ctx)
			cancel()
			if err != nil || s.Cluster.State != "leader" {
				return nil, fmt.Sprintf("%s is named leader but says %q (%v)", n.Name, s.Cluster.State, err)
			}
			return n, ""
		}
	}
	return nil, fmt.Sprintf("the leader %s is not among %s", leaderID, names(nodes))
}

// WaitCaughtUp waits until node n has applied every entry the leader
// (among the running, unpaused nodes) had committed when WaitCaughtUp was
// called.
func (c *Cluster) WaitCaughtUp(n *Node, timeout time.Duration) error {
	leader, err := c.WaitLeader(timeout)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ls, err := leader.Status(ctx)
	if err != nil {
		return err
	}
	target := ls.Cluster.CommitIndex
	for {
		s, err := n.Status(ctx)
		if err == nil && s.Cluster.AppliedIndex >= target {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s has not applied index %d (the leader's commit index) within %v: %+v %v", n.Name, target, timeout, s.Cluster, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitBindings waits until node n lists want registration bindings and
// returns how many it last saw.
func (n *Node) WaitBindings(want int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	got := -1
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		regs, err := n.admin.Registrations(ctx, "")
		cancel()
		if err == nil {
			got = len(regs)
			if got == want {
				return got, nil
			}
		}
		lastErr = err
		if time.Now().After(deadline) {
			return got, fmt.Errorf("%s lists %d bindings, want %d (%v)", n.Name, got, want, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func names(nodes []*Node) string {
	s := ""
	for i, n := range nodes {
		if i > 0 {
			s += ","
		}
		s += n.Name
	}
	return s
}
