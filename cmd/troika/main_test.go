package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/internal/testkit"
)

// troikaBin is the binary under test: built once per `go test` run and
// shared with the other packages that run it (testkit.Binary).
var troikaBin string

// TestMain finds or builds the binary. It is built without -race: the
// race detector already covers the node in process (the node and admin
// tests, and this package's in-process CLI tests), and a race build of the
// agents these tests start would only make them slower.
func TestMain(m *testing.M) {
	bin, err := testkit.Binary()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build troika: %v\n", err)
		os.Exit(1)
	}
	troikaBin = bin
	os.Exit(m.Run())
}

// proc is a troika process under test.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder // stdout and stderr
	done chan struct{}
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	return startProcBin(t, troikaBin, args...)
}

// startProcBin is startProc with another troika binary.
func startProcBin(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	stdout, _ := p.cmd.StdoutPipe()
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			p.mu.Lock()
			p.out.WriteString(line)
			p.mu.Unlock()
			if err != nil {
				break
			}
		}
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitOutput waits for a line matching re and returns its submatches.
func (p *proc) waitOutput(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(p.output()); m != nil {
			return m
		}
		select {
		case <-p.done:
			t.Fatalf("troika exited (%v) before printing %q:\n%s", p.cmd.ProcessState, re, p.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no %q within %s:\n%s", re, timeout, p.output())
	return nil
}

// stop sends SIGINT and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
		if !p.cmd.ProcessState.Success() {
			t.Fatalf("troika exited with %v after SIGINT:\n%s", p.cmd.ProcessState, p.output())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("troika did not stop within 15 s of SIGINT:\n%s", p.output())
	}
}

// sipOptions sends one OPTIONS over UDP and returns the status line.
func sipOptions(t *testing.T, target string) string {
	t.Helper()
	c, err := net.Dial("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	msg := "OPTIONS sip:" + target + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-opt" + fmt.Sprint(time.Now().UnixNano()) + "\r\n" +
		"From: <sip:probe@" + local + ">;tag=1\r\nTo: <sip:" + target + ">\r\n" +
		"Call-ID: opt-" + fmt.Sprint(time.Now().UnixNano()) + "\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	for range 5 {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err == nil {
			line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
			return line
		}
	}
	t.Fatalf("no answer to OPTIONS from %s", target)
	return ""
}

// cliErr runs the troika CLI with env added to this process's
// environment, and returns its output (stdout and stderr) and error.
func cliErr(env []string, args ...string) (string, error) {
	cmd := exec.Command(troikaBin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runCLI is cliErr for a command that must succeed.
func runCLI(t *testing.T, env []string, args ...string) string {
	t.Helper()
	out, err := cliErr(env, args...)
	if err != nil {
		t.Fatalf("troika %v: %v\n%s", args, err, out)
	}
	return out
}

func newClient(addr, token string) *admin.Client { return admin.NewClient(addr, token) }
