// Package baresiptest runs baresip (Debian's baresip-core) from Go tests
// as a real softphone: it writes the phone's configuration directory,
// starts baresip on it (-f DIR), drives it through its ctrl_tcp module
// (netstring-framed JSON: commands such as uanew, dial, hangup, accept;
// events such as REGISTER_OK, CALL_INCOMING, CALL_ESTABLISHED,
// CALL_CLOSED) and reads the SIP trace it prints (-s).
//
// The phone is signalling only as far as the tests care: G.711 with a
// sine tone as its audio source (ausine), no audio device, everything on
// loopback (net_interface, sip_listen and the RTP of the SDP).
//
// What Debian's baresip 1.0.0 (libre 1.1.0) can and cannot do, as found
// against troika: it answers digest challenges with MD5 only, and gives up
// on a 401 that also offers SHA-256 ("Register: Function not
// implemented"); sips: URIs fail the same way, so TLS is asked for with
// ;transport=tls in the account line; it does not verify the server's
// certificate (sip_cafile is read but not enforced).
//
// Only tests import it.
package baresiptest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ModulePath is where Debian's baresip-core installs its modules.
const ModulePath = "/usr/lib/baresip/modules"

// modules are those the phone loads: G.711, the sine source, the account
// file reader, the menu (dial, hangup, accept) and ctrl_tcp.
var modules = []string{"g711.so", "ausine.so", "account.so", "menu.so", "ctrl_tcp.so"}

// Need skips the test when baresip or one of its modules is not installed
// (CI installs it).
func Need(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("baresip"); err != nil {
		t.Skip("baresip is not installed (apt-get install -y baresip-core)")
	}
	for _, m := range modules {
		if _, err := os.Stat(filepath.Join(ModulePath, m)); err != nil {
			t.Skipf("baresip module %s is missing (%v): apt-get install -y baresip-core", m, err)
		}
	}
}

// Account is a SIP account of a phone: one line of baresip's accounts
// file (Line), or the parameter of its uanew command.
type Account struct {
	User, Password string
	// Server is host:port of the switch, where the phone registers and
	// sends its calls.
	Server string
	// Transport is "udp" (default), "tcp" or "tls".
	Transport string
	// Manual: the phone rings and waits for Accept instead of answering
	// at once (answermode=auto).
	Manual bool
	// RegInterval is how often the phone registers, in seconds (regint;
	// default 600).
	RegInterval int
}

// Line is the account's line in baresip's accounts file, for example
// <sip:1001@127.0.0.1:5061;transport=tls>;auth_pass=PW;regint=600;answermode=auto
func (a Account) Line() string {
	uri := "sip:" + a.User + "@" + a.Server
	if a.Transport != "" && a.Transport != "udp" {
		uri += ";transport=" + a.Transport
	}
	regint := a.RegInterval
	if regint == 0 {
		regint = 600
	}
	mode := "auto"
	if a.Manual {
		mode = "manual"
	}
	return fmt.Sprintf("<%s>;auth_pass=%s;regint=%d;answermode=%s", uri, a.Password, regint, mode)
}

// Options describe a phone.
type Options struct {
	// Name names the phone in failure messages and its kept directory.
	Name string
	// LocalIP is the address the phone listens on and puts in its SDP
	// (default 127.0.0.1).
	LocalIP string
	// CAFile is the phone's sip_cafile: the CA it is told to trust for
	// TLS (libre 1.1.0 does not check the server's certificate against
	// it, but a phone that does needs it).
	CAFile string
	// Timeout bounds each wait (default 15 s).
	Timeout time.Duration
}

// Event is an event baresip reported on ctrl_tcp.
type Event struct {
	Type      string `json:"type"`
	Class     string `json:"class"`
	AOR       string `json:"accountaor"`
	Direction string `json:"direction"`
	PeerURI   string `json:"peeruri"`
	ID        string `json:"id"`
	Param     string `json:"param"`
	At        time.Time
}

func (e Event) String() string {
	return fmt.Sprintf("%s %s %s %s %q", e.At.Format("15:04:05.000"), e.Type, e.AOR, e.PeerURI, e.Param)
}

type message struct {
	Event
	IsEvent  bool   `json:"event"`
	Response bool   `json:"response"`
	OK       bool   `json:"ok"`
	Data     string `json:"data"`
	Token    string `json:"token"`
}

// Phone is a running baresip.
type Phone struct {
	t       testing.TB
	name    string
	dir     string
	logPath string
	timeout time.Duration
	cmd     *exec.Cmd
	exited  chan struct{}
	conn    net.Conn

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced at every new message
	events    []Event
	taken     []bool
	responses map[string]message
	readErr   error
	token     int
}

// Start writes a configuration directory and starts baresip on it. The
// phone has no account yet (Register adds one). It is stopped when the
// test ends; if the test failed, its directory (config, baresip.log with
// the SIP trace) is kept and named in the test's log.
func Start(t testing.TB, o Options) *Phone {
	t.Helper()
	if o.LocalIP == "" {
		o.LocalIP = "127.0.0.1"
	}
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Name == "" {
		o.Name = "phone"
	}
	dir, err := os.MkdirTemp("", "troika-baresip-"+o.Name+"-")
	if err != nil {
		t.Fatalf("baresip %s: %v", o.Name, err)
	}
	p := &Phone{t: t, name: o.Name, dir: dir, logPath: filepath.Join(dir, "baresip.log"), timeout: o.Timeout,
		exited: make(chan struct{}), changed: make(chan struct{}), responses: map[string]message{}}
	t.Cleanup(p.cleanup)
	ctrl, err := freePort(o.LocalIP)
	if err != nil {
		t.Fatalf("baresip %s: a port for ctrl_tcp: %v", o.Name, err)
	}
	if err := writeConfig(dir, o, ctrl); err != nil {
		t.Fatalf("baresip %s: %v", o.Name, err)
	}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatalf("baresip %s: %v", o.Name, err)
	}
	// stdbuf: baresip prints through stdio, which a pipe or file would
	// buffer until exit; line buffering keeps the log current. -t quits
	// on its own should this test process die without stopping it.
	args := []string{"-f", dir, "-s", "-t", "600"}
	name := "baresip"
	if sb, err := exec.LookPath("stdbuf"); err == nil {
		name, args = sb, append([]string{"-oL", "-eL", "baresip"}, args...)
	}
	p.cmd = exec.Command(name, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("baresip %s: start: %v", o.Name, err)
	}
	go func() {
		p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	addr := net.JoinHostPort(o.LocalIP, strconv.Itoa(ctrl))
	deadline := time.Now().Add(o.Timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			p.conn = c
			break
		}
		select {
		case <-p.exited:
			t.Fatalf("baresip %s exited at start (%v):\n%s", o.Name, p.cmd.ProcessState, p.Log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("baresip %s: its ctrl_tcp %s does not answer after %s (%v):\n%s", o.Name, addr, o.Timeout, err, p.Log())
		}
	}
	go p.read()
	return p
}

// writeConfig writes config (and an empty accounts file) into dir.
func writeConfig(dir string, o Options, ctrlPort int) error {
	lines := []string{
		"poll_method epoll",
		"sip_listen " + net.JoinHostPort(o.LocalIP, "0"),
		"net_interface " + o.LocalIP,
		"call_local_timeout 120",
		"call_max_calls 4",
		"audio_buffer 20-160",
		"module_path " + ModulePath,
		"module g711.so",
		"module ausine.so",
		"audio_source ausine,440",
		"ausrc_srate 48000",
		"ausrc_channels 2",
		"module_tmp account.so",
		"module_app menu.so",
		"module_app ctrl_tcp.so",
		"ctrl_tcp_listen " + net.JoinHostPort(o.LocalIP, strconv.Itoa(ctrlPort)),
		"statmode_default off",
	}
	if o.CAFile != "" {
		lines = append(lines, "sip_cafile "+o.CAFile)
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "accounts"), nil, 0o600)
}

// freePort finds a TCP port free on ip (for ctrl_tcp, which needs a port
// in its configuration).
func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// read reads ctrl_tcp's netstrings until the connection ends.
func (p *Phone) read() {
	r := bufio.NewReader(p.conn)
	for {
		b, err := readNetstring(r)
		var m message
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		p.mu.Lock()
		switch {
		case err != nil:
			p.readErr = err
		case m.IsEvent:
			m.Event.At = time.Now()
			p.events = append(p.events, m.Event)
			p.taken = append(p.taken, false)
		case m.Response:
			p.responses[m.Token] = m
		}
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func readNetstring(r *bufio.Reader) ([]byte, error) {
	n, err := r.ReadString(':')
	if err != nil {
		return nil, err
	}
	size, err := strconv.Atoi(strings.TrimSuffix(n, ":"))
	if err != nil || size < 0 || size > 1<<20 {
		return nil, fmt.Errorf("ctrl_tcp: bad netstring length %q", n)
	}
	buf := make([]byte, size+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	if buf[size] != ',' {
		return nil, errors.New("ctrl_tcp: netstring without its comma")
	}
	return buf[:size], nil
}

// wait waits until found returns true (called under p.mu) or the timeout
// passes.
func (p *Phone) wait(timeout time.Duration, found func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		if found() {
			p.mu.Unlock()
			return nil
		}
		changed, rerr := p.changed, p.readErr
		p.mu.Unlock()
		if rerr != nil {
			return fmt.Errorf("ctrl_tcp connection ended: %w", rerr)
		}
		select {
		case <-changed:
		case <-p.exited:
			return fmt.Errorf("baresip exited (%v)", p.cmd.ProcessState)
		case <-deadline.C:
			return fmt.Errorf("nothing after %s", timeout)
		}
	}
}

// Command sends a ctrl_tcp command and returns the data of its response;
// a response that is not ok is an error.
func (p *Phone) Command(command, params string) (string, error) {
	p.mu.Lock()
	p.token++
	token := strconv.Itoa(p.token)
	p.mu.Unlock()
	req := map[string]string{"command": command, "token": token}
	if params != "" {
		req["params"] = params
	}
	b, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	if _, err := fmt.Fprintf(p.conn, "%d:%s,", len(b), b); err != nil {
		return "", fmt.Errorf("baresip %s: send %s: %w", p.name, command, err)
	}
	var res message
	err = p.wait(p.timeout, func() bool {
		r, ok := p.responses[token]
		res = r
		return ok
	})
	if err != nil {
		return "", fmt.Errorf("baresip %s: %s %s: no response: %w", p.name, command, params, err)
	}
	if !res.OK {
		return res.Data, fmt.Errorf("baresip %s: %s %s: %s", p.name, command, params, strings.TrimSpace(res.Data))
	}
	return res.Data, nil
}

// Do is Command failing the test on an error.
func (p *Phone) Do(command, params string) string {
	p.t.Helper()
	out, err := p.Command(command, params)
	if err != nil {
		p.t.Fatalf("%v\n%s", err, p.tail())
	}
	return out
}

// Next waits for the first event of one of types not returned before
// (events arrive in order; each is returned once).
func (p *Phone) Next(types ...string) (Event, error) {
	var ev Event
	err := p.wait(p.timeout, func() bool {
		for i, e := range p.events {
			if p.taken[i] {
				continue
			}
			for _, typ := range types {
				if e.Type == typ {
					p.taken[i], ev = true, e
					return true
				}
			}
		}
		return false
	})
	if err != nil {
		return Event{}, fmt.Errorf("baresip %s: waiting for %s: %w; events: %v", p.name, strings.Join(types, " or "), err, p.Events())
	}
	return ev, nil
}

// Expect waits for the next event of type typ, failing the test after
// the timeout or when another of the given stop types comes first.
func (p *Phone) Expect(typ string, stop ...string) Event {
	p.t.Helper()
	ev, err := p.Next(append([]string{typ}, stop...)...)
	if err != nil {
		p.t.Fatalf("%v\n%s", err, p.tail())
	}
	if ev.Type != typ {
		p.t.Fatalf("baresip %s: %s (%q) instead of %s\n%s", p.name, ev.Type, ev.Param, typ, p.tail())
	}
	return ev
}

// Events lists every event so far.
func (p *Phone) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// Register adds account a to the phone (uanew) and waits until its
// registration succeeds, failing the test on REGISTER_FAIL.
func (p *Phone) Register(a Account) {
	p.t.Helper()
	p.Do("uanew", a.Line())
	p.Expect("REGISTER_OK", "REGISTER_FAIL")
}

// Dial calls uri (a number alone is completed with the account's server
// and transport, as baresip's /dial does).
func (p *Phone) Dial(uri string) { p.t.Helper(); p.Do("dial", uri) }

// Hangup ends the phone's current call.
func (p *Phone) Hangup() { p.t.Helper(); p.Do("hangup", "") }

// Accept answers the ringing call (an account with Manual set).
func (p *Phone) Accept() { p.t.Helper(); p.Do("accept", "") }

// Log is what baresip printed so far (with its SIP trace).
func (p *Phone) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return ansi.ReplaceAllString(string(b), "")
}

func (p *Phone) tail() string {
	l := p.Log()
	if len(l) > 6000 {
		l = "..." + l[len(l)-6000:]
	}
	return fmt.Sprintf("--- baresip %s log (%s) ---\n%s", p.name, p.logPath, l)
}

// Stop quits baresip (it unregisters first) and waits for it to exit,
// killing it after the timeout.
func (p *Phone) Stop() {
	p.t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	p.Command("quit", "") // it may exit before it answers
	select {
	case <-p.exited:
	case <-time.After(p.timeout):
		p.t.Errorf("baresip %s did not quit within %s: killed", p.name, p.timeout)
		p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *Phone) cleanup() {
	if p.cmd != nil && p.cmd.Process != nil { // it started
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if p.conn != nil {
		p.conn.Close()
	}
	if p.t.Failed() {
		p.t.Logf("baresip %s: configuration and log (with the SIP trace) kept in %s", p.name, p.dir)
		return
	}
	os.RemoveAll(p.dir)
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// Message is a SIP message in baresip's trace: sent or received over
// Transport from Src to Dst.
type Message struct {
	Transport string // UDP, TCP or TLS
	Src, Dst  string // host:port
	StartLine string // request line or status line
	Header    string // the header lines
}

// Method is the request's method, or "" for a response.
func (m Message) Method() string {
	if strings.HasPrefix(m.StartLine, "SIP/2.0 ") {
		return ""
	}
	method, _, _ := strings.Cut(m.StartLine, " ")
	return method
}

// CSeq is the CSeq header's value.
func (m Message) CSeq() string {
	for _, l := range strings.Split(m.Header, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "CSeq") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (m Message) String() string {
	return fmt.Sprintf("%s %s -> %s: %s", m.Transport, m.Src, m.Dst, m.StartLine)
}

var traceLine = regexp.MustCompile(`^(UDP|TCP|TLS) (\S+) -> (\S+)$`)

// Trace is the SIP trace baresip printed so far, in order.
func (p *Phone) Trace() []Message { return ParseTrace(p.Log()) }

// ParseTrace reads the messages of a baresip -s log.
func ParseTrace(log string) []Message {
	var out []Message
	lines := strings.Split(strings.ReplaceAll(log, "\r", ""), "\n")
	for i := 0; i < len(lines); i++ {
		m := traceLine.FindStringSubmatch(lines[i])
		if m == nil || i+1 >= len(lines) {
			continue
		}
		msg := Message{Transport: m[1], Src: m[2], Dst: m[3], StartLine: lines[i+1]}
		var hdr []string
		for i += 2; i < len(lines) && lines[i] != ""; i++ {
			hdr = append(hdr, lines[i])
		}
		msg.Header = strings.Join(hdr, "\n")
		out = append(out, msg)
	}
	return out
}
