//go:build linux

package chaos

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/testkit"
)

// SIPpRun is a SIPp process running any scenario file in a host's
// namespace: a caller (sipstack/testdata/uac_auth.xml) or a callee
// (uas.xml), for the call tests. Its statistics (stat.csv), message trace
// (messages.log) and error log (errors.log) are in RUN_DIR/sipp-NAME.
type SIPpRun struct {
	Name, Dir string
	Start     time.Time
	cmd       *exec.Cmd
	mu        sync.Mutex
	out       bytes.Buffer
	done      chan struct{}
	waitErr   error
}

// SIPpResult is what a SIPpRun saw.
type SIPpResult struct {
	OK, Failed, Retrans int
	// Messages is SIPp's message trace; Output its screen; Errors its
	// error log: for failure messages.
	Messages, Output, Errors string
	Err                      error // SIPp could not run, or left no statistics
}

// StartSIPp runs `sipp ARGS` inside the host's namespace in the
// background, with statistics, message and error traces added; the test's
// cleanup kills it if it still runs.
func (h *Host) StartSIPp(name string, args ...string) (*SIPpRun, error) {
	dir := filepath.Join(h.c.Dir, "sipp-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args = append(args, "-nostdin", "-trace_stat", "-stf", filepath.Join(dir, "stat.csv"), "-fd", "1",
		"-trace_msg", "-message_file", filepath.Join(dir, "messages.log"),
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"))
	r := &SIPpRun{Name: name, Dir: dir, Start: time.Now(), done: make(chan struct{})}
	r.cmd = exec.Command("ip", append([]string{"netns", "exec", h.NS, "sipp"}, args...)...)
	r.cmd.Stdout, r.cmd.Stderr = &lockedWriter{mu: &r.mu, w: &r.out}, &lockedWriter{mu: &r.mu, w: &r.out}
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("sipp %s: %w", name, err)
	}
	h.c.event(h.Name, "sipp", fmt.Sprintf("%s: pid %d", name, r.cmd.Process.Pid))
	go func() {
		r.waitErr = r.cmd.Wait()
		close(r.done)
	}()
	h.c.t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r, nil
}

// WaitListening waits until a UDP socket is bound to ip:port in the
// host's namespace (a SIPp server started in the background).
func (h *Host) WaitListening(ip netip.Addr, port int, timeout time.Duration) error {
	if testkit.Eventually(timeout, func() bool {
		out, err := run(context.Background(), "ip", "netns", "exec", h.NS, "cat", "/proc/net/udp", "/proc/net/udp6")
		return err == nil && sipptest.BoundIn(out, ip, port)
	}) {
		return nil
	}
	return fmt.Errorf("%s: nothing listens on udp %s after %s", h.Name, net.JoinHostPort(ip.String(), strconv.Itoa(port)), timeout)
}

// WaitReceived waits until SIPp's message log shows a received message
// whose text contains what (a request line such as "ACK sip:").
func (r *SIPpRun) WaitReceived(what string, timeout time.Duration) error {
	if testkit.Eventually(timeout, func() bool {
		b, _ := os.ReadFile(filepath.Join(r.Dir, "messages.log"))
		for _, part := range strings.Split(string(b), "message received")[1:] {
			if strings.Contains(part, what) {
				return true
			}
		}
		return false
	}) {
		return nil
	}
	return fmt.Errorf("sipp %s: no message with %q received after %s", r.Name, what, timeout)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Wait waits up to timeout for SIPp to end (then kills it) and reads its
// statistics.
func (r *SIPpRun) Wait(timeout time.Duration) SIPpResult {
	var res SIPpResult
	select {
	case <-r.done:
	case <-time.After(timeout):
		r.cmd.Process.Kill()
		<-r.done
		res.Err = fmt.Errorf("sipp %s still ran after %v: killed", r.Name, timeout)
	}
	r.mu.Lock()
	res.Output = tailString(r.out.String(), 3000)
	r.mu.Unlock()
	m, _ := os.ReadFile(filepath.Join(r.Dir, "messages.log"))
	e, _ := os.ReadFile(filepath.Join(r.Dir, "errors.log"))
	res.Messages, res.Errors = string(m), tailString(string(e), 3000)
	st, err := sipptest.ReadStats(filepath.Join(r.Dir, "stat.csv"))
	if err != nil {
		if res.Err == nil {
			res.Err = fmt.Errorf("sipp %s: %v (exit: %v)", r.Name, err, r.waitErr)
		}
		return res
	}
	res.OK, res.Failed, res.Retrans = st.OK, st.Failed, st.Retrans
	return res
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
