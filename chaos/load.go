//go:build linux

package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/troika-sip/troika/internal/sipptest"
)

// RegisterLoad describes a steady REGISTER load from SIPp in the client
// namespace (reg_auth.xml: REGISTER, 401, REGISTER with digest, 200). One
// SIPp "call" is one registration.
type RegisterLoad struct {
	Name     string        // in the report and the run directory; default load1, load2... (a name used before gets -2, -3...)
	Target   string        // host:port, e.g. node.SIPAddr() or a VIP's
	Users    []string      // account ids, password sipptest.APIPassword(id); SIPp cycles through them
	Rate     int           // registrations started per second, default 20
	Duration time.Duration // how long to keep starting them, default 10 s
	// Total, when set, is the number of registrations instead of
	// Rate×Duration.
	Total int
	// Concurrency caps registrations in progress, default Rate×16: a
	// stalled switch must not slow the load down, or the first success
	// after a fault would be measured late.
	Concurrency int
	// StatEvery is the resolution of the per-period counters, default
	// 200 ms.
	StatEvery time.Duration
	// From is where SIPp runs, default the client namespace.
	From *Host
	// LogAcks records every registration the registrar acknowledged (a
	// 200) in RUN_DIR/sipp-NAME/acks.log, one "registered USER" line
	// each: Load.Acked reads it.
	LogAcks bool
}

// Load is a SIPp run in progress: REGISTERs (StartRegisters) or calls
// (StartCalls).
type Load struct {
	RegisterLoad
	Kind   string // what SIPp counts: "REGISTER" or "call"
	Dir    string // SIPp's files: stat.csv, errors.log
	Port   int    // SIPp's local port: the phones' contacts
	Start  time.Time
	cancel context.CancelFunc
	done   chan struct{}
	res    *LoadResult
}

// LoadResult is what a load saw.
type LoadResult struct {
	Name, Target string
	Kind         string // "REGISTER" or "call"
	Start, End   time.Time
	sipptest.Stats
	Dir string
	// Failures counts the failed registrations by cause read from SIPp's
	// error log: "503", "408", ... for final responses other than the
	// expected one, "timeout" for registrations that got no answer.
	Failures map[string]int
	Err      error // SIPp could not run or left no statistics
}

// StartRegisters starts SIPp in the background.
func (c *Cluster) StartRegisters(l RegisterLoad) (*Load, error) {
	if l.Target == "" || len(l.Users) == 0 {
		return nil, fmt.Errorf("StartRegisters: Target and Users are required")
	}
	if l.Rate == 0 {
		l.Rate = 20
	}
	if l.Duration == 0 {
		l.Duration = 10 * time.Second
	}
	if l.Total == 0 {
		l.Total = max(1, int(float64(l.Rate)*l.Duration.Seconds()))
	}
	if l.Concurrency == 0 {
		l.Concurrency = l.Rate * 16
	}
	dir, err := c.prepareLoad("StartRegisters", &l)
	if err != nil {
		return nil, err
	}
	ld := &Load{RegisterLoad: l, Kind: "REGISTER", Dir: dir, Port: c.localPort(), Start: time.Now(), done: make(chan struct{})}
	opts := sipptest.Options{
		Target:    l.Target,
		Scenario:  "reg_auth.xml",
		Inject:    sipptest.APIUsers(l.Users...),
		LocalIP:   l.From.Addr.String(),
		LocalPort: ld.Port,
		Calls:     l.Total,
		Rate:      l.Rate,
		Limit:     l.Concurrency,
		// Long enough for the last registrations' retransmissions to end.
		Timeout:   time.Duration(float64(l.Total)/float64(l.Rate)*float64(time.Second)) + 45*time.Second,
		Netns:     l.From.NS,
		StatEvery: l.StatEvery,
		// Abort failed registrations quietly: SIPp's default BYE for an
		// aborted "call" is noise to a registrar. Answer the switch's
		// NAT keepalive (OPTIONS), as phones do (-aa).
		Extra: []string{"-default_behaviors", "all,-bye", "-aa"},
	}
	if l.LogAcks {
		opts.Scenario = "reg_auth_ack.xml"
		opts.Extra = append(opts.Extra, "-trace_logs", "-log_file", filepath.Join(dir, "acks.log"))
	}
	c.run(ld, opts, fmt.Sprintf("%s: %d REGISTERs at %d/s to %s", l.Name, l.Total, l.Rate, l.Target))
	return ld, nil
}

// prepareLoad applies the defaults of what every load has (StatEvery,
// From) to l, names it (unnamed: load1, load2..) so that no earlier load
// of the cluster has its name, and makes its run directory.
func (c *Cluster) prepareLoad(op string, l *RegisterLoad) (dir string, err error) {
	if l.StatEvery == 0 {
		l.StatEvery = 200 * time.Millisecond
	}
	if l.From == nil {
		l.From = c.Client
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return "", fmt.Errorf("%s: cluster closed", op)
	}
	if l.Name == "" {
		l.Name = fmt.Sprintf("load%d", len(c.loads)+1)
	}
	// A name used before gets a suffix: each load has its own directory
	// (its statistics file would otherwise be the earlier load's).
	for base, k := l.Name, 2; c.loadNamed(l.Name); k++ {
		l.Name = fmt.Sprintf("%s-%d", base, k)
	}
	c.mu.Unlock()
	dir = filepath.Join(c.Dir, "sipp-"+l.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	return dir, nil
}

// run starts SIPp for the load in the background and records it.
func (c *Cluster) run(ld *Load, opts sipptest.Options, what string) {
	c.mu.Lock()
	c.loads = append(c.loads, ld)
	c.mu.Unlock()
	c.event(ld.From.Name, "load", what)
	ctx, cancel := context.WithCancel(context.Background())
	ld.cancel = cancel
	go func() {
		defer close(ld.done)
		st, err := sipptest.Exec(ctx, ld.Dir, opts)
		r := &LoadResult{Name: ld.Name, Target: ld.Target, Kind: ld.Kind, Start: ld.Start, End: time.Now(), Stats: st, Dir: ld.Dir, Err: err}
		r.Failures = failureCauses(filepath.Join(ld.Dir, "errors.log"))
		ld.res = r
		c.event(ld.From.Name, "load-end", fmt.Sprintf("%s: %d ok, %d failed, %d retransmissions", ld.Name, st.OK, st.Failed, st.Retrans))
	}()
}

// Acked returns the users whose registration the registrar acknowledged
// (a 200) so far, for a load started with LogAcks.
func (l *Load) Acked() (map[string]bool, error) {
	data, err := os.ReadFile(filepath.Join(l.Dir, "acks.log"))
	if err != nil {
		return nil, fmt.Errorf("load %s: its acknowledgements: %w", l.Name, err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if user, ok := strings.CutPrefix(strings.TrimSpace(line), "registered "); ok && user != "" {
			out[user] = true
		}
	}
	return out, nil
}

// CallLoad describes SIPp callers of one account in a host's namespace
// (sipstack/testdata/uac_auth.xml: INVITE, 407, INVITE with digest, 200,
// ACK, hold, BYE; or uac_auth_cut.xml, which waits for the switch's BYE).
// One SIPp "call" is one call; its message log (messages.log) names every
// call's Call-ID.
type CallLoad struct {
	Name     string // in the report and the run directory
	Target   string // host:port
	Caller   string // the account calling: digest user, password sipptest.APIPassword
	Callee   string // the number called (-s)
	Scenario string // path of the SIPp scenario file
	Hold     time.Duration
	Calls    int           // calls in all (-m), default 1
	Parallel int           // calls at once (-l), default 1
	Every    time.Duration // one call started every Every at most, default 1 s
	// Timeout ends SIPp (calls still up fail), default 2 minutes.
	Timeout   time.Duration
	StatEvery time.Duration // default 200 ms
	From      *Host         // default the client namespace
}

// StartCalls starts SIPp callers in the background.
func (c *Cluster) StartCalls(l CallLoad) (*Load, error) {
	if l.Target == "" || l.Caller == "" || l.Callee == "" || l.Scenario == "" {
		return nil, fmt.Errorf("StartCalls: Target, Caller, Callee and Scenario are required")
	}
	l.Calls, l.Parallel = max(l.Calls, 1), max(l.Parallel, 1)
	if l.Every == 0 {
		l.Every = time.Second
	}
	if l.Timeout == 0 {
		l.Timeout = 2 * time.Minute
	}
	common := RegisterLoad{Name: l.Name, Target: l.Target, StatEvery: l.StatEvery, From: l.From}
	dir, err := c.prepareLoad("StartCalls", &common)
	if err != nil {
		return nil, err
	}
	l.Name, l.StatEvery, l.From = common.Name, common.StatEvery, common.From
	ld := &Load{RegisterLoad: common,
		Kind: "call", Dir: dir, Port: c.localPort(), Start: time.Now(), done: make(chan struct{})}
	opts := sipptest.Options{
		Target: l.Target, Scenario: l.Scenario, LocalIP: l.From.Addr.String(), LocalPort: ld.Port,
		Calls: l.Calls, Rate: 1, Limit: l.Parallel, Timeout: l.Timeout, Netns: l.From.NS, StatEvery: l.StatEvery,
		Extra: []string{"-s", l.Callee, "-au", l.Caller, "-ap", sipptest.APIPassword(l.Caller),
			"-d", strconv.FormatInt(l.Hold.Milliseconds(), 10), "-rp", strconv.FormatInt(l.Every.Milliseconds(), 10),
			"-default_behaviors", "all,-bye", "-trace_msg", "-message_file", filepath.Join(dir, "messages.log")},
	}
	c.run(ld, opts, fmt.Sprintf("%s: %d calls of %s to %s, %d at once, held %s, through %s", l.Name, l.Calls, l.Caller, l.Callee, l.Parallel, l.Hold, l.Target))
	return ld, nil
}

// AnsweredCalls returns the Call-IDs of the calls SIPp saw answered (a 200
// to its INVITE), from its message log: a load of StartCalls.
func (l *Load) AnsweredCalls() ([]string, error) {
	data, err := os.ReadFile(filepath.Join(l.Dir, "messages.log"))
	if err != nil {
		return nil, fmt.Errorf("load %s: its message log: %w", l.Name, err)
	}
	return answeredCallIDs(string(data)), nil
}

// answeredCallIDs reads a SIPp message log: the Call-IDs of received 200
// responses to an INVITE, each once, in order.
func answeredCallIDs(log string) []string {
	var out []string
	seen := map[string]bool{}
	for _, block := range strings.Split(log, "\n----------") {
		if !strings.Contains(block, "message received") {
			continue
		}
		status, callID, inviteCSeq := false, "", false
		for _, line := range strings.Split(block, "\n") {
			line = strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(line, "SIP/2.0 200"):
				status = true
			case hasHeader(line, "call-id", "i"):
				callID = headerValue(line)
			case hasHeader(line, "cseq"):
				inviteCSeq = strings.HasSuffix(strings.ToUpper(headerValue(line)), " INVITE")
			}
		}
		if status && inviteCSeq && callID != "" && !seen[callID] {
			seen[callID] = true
			out = append(out, callID)
		}
	}
	return out
}

func hasHeader(line string, names ...string) bool {
	name, _, ok := strings.Cut(line, ":")
	if !ok {
		return false
	}
	for _, n := range names {
		if strings.EqualFold(strings.TrimSpace(name), n) {
			return true
		}
	}
	return false
}

func headerValue(line string) string {
	_, v, _ := strings.Cut(line, ":")
	return strings.TrimSpace(v)
}

// loadNamed reports whether a load called name was started; c.mu held.
func (c *Cluster) loadNamed(name string) bool {
	return slices.ContainsFunc(c.loads, func(ld *Load) bool { return ld.Name == name })
}

// Progress returns how many REGISTERs SIPp has counted as successful so
// far (its statistics file, written every StatEvery).
func (l *Load) Progress() int {
	st, err := sipptest.ReadStats(filepath.Join(l.Dir, "stat.csv"))
	if err != nil {
		return 0
	}
	return st.OK
}

// WaitOK waits until SIPp has counted n successful REGISTERs, or fails
// after timeout (or when SIPp ends first).
func (l *Load) WaitOK(n int, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(l.StatEvery)
	defer tick.Stop()
	for {
		if got := l.Progress(); got >= n {
			return nil
		}
		select {
		case <-tick.C:
		case <-l.done:
			return fmt.Errorf("load %s ended with %d successful REGISTERs, before %d", l.Name, l.Progress(), n)
		case <-deadline.C:
			return fmt.Errorf("load %s: %d successful REGISTERs after %s, want %d", l.Name, l.Progress(), timeout, n)
		}
	}
}

// Wait waits for SIPp to end and returns what it saw.
func (l *Load) Wait() *LoadResult {
	<-l.done
	return l.res
}

// Stop ends the load early (SIPp is killed: the counters of its last
// period are lost).
func (l *Load) Stop() *LoadResult {
	l.cancel()
	return l.Wait()
}

var (
	sippUnexpected = regexp.MustCompile(`received 'SIP/2\.0 (\d{3})`)
	sippTimeout    = regexp.MustCompile(`(?i)max retrans|timeout`)
)

// failureCauses counts the causes in SIPp's error log.
func failureCauses(path string) map[string]int {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	out := map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, "Aborting call") {
			continue // "Dead call" lines are messages for calls already aborted
		}
		if m := sippUnexpected.FindStringSubmatch(line); m != nil {
			out[m[1]]++
		} else if sippTimeout.MatchString(line) {
			out["timeout"]++
		} else {
			out["other"]++
		}
	}
	return out
}

// FirstOKAfter returns the end of the first statistics period that began
// at or after t and counted a successful registration: the first success
// after t happened within one period (StatEvery) before the time returned.
// (A period that straddles t is skipped: its successes may predate t.)
func (r *LoadResult) FirstOKAfter(t time.Time) (time.Time, bool) {
	prev := r.Start
	for _, p := range r.Periods {
		if !prev.Before(t) && p.OK > 0 {
			return p.At, true
		}
		prev = p.At
	}
	return time.Time{}, false
}

// LastFailure returns the end of the last period in [from, to) that
// counted a failure.
func (r *LoadResult) LastFailure(from, to time.Time) (time.Time, bool) {
	var last time.Time
	for _, p := range r.Periods {
		if !p.At.Before(from) && p.At.Before(to) && p.Failed > 0 {
			last = p.At
		}
	}
	return last, !last.IsZero()
}

// Between sums the periods that ended in [from, to).
func (r *LoadResult) Between(from, to time.Time) (ok, failed, retrans int) {
	for _, p := range r.Periods {
		if !p.At.Before(from) && p.At.Before(to) {
			ok += p.OK
			failed += p.Failed
			retrans += p.Retrans
		}
	}
	return
}

// PerSecond folds the periods into whole seconds since t0: ok and failed
// registrations counted in each.
func (r *LoadResult) PerSecond(t0 time.Time) map[int][2]int {
	out := map[int][2]int{}
	for _, p := range r.Periods {
		s := int(p.At.Sub(t0) / time.Second)
		v := out[s]
		v[0] += p.OK
		v[1] += p.Failed
		out[s] = v
	}
	return out
}

// Summary is a one-line account of the load.
func (r *LoadResult) Summary() string {
	causes := make([]string, 0, len(r.Failures))
	for k, v := range r.Failures {
		causes = append(causes, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(causes)
	s := fmt.Sprintf("%s → %s: %d ok, %d failed, %d retransmissions", r.Name, r.Target, r.OK, r.Failed, r.Retrans)
	if len(causes) > 0 {
		s += " (" + strings.Join(causes, ", ") + ")"
	}
	if r.Err != nil {
		s += fmt.Sprintf("; error: %v", r.Err)
	}
	return s
}

// Loads returns the cluster's loads so far.
func (c *Cluster) Loads() []*Load {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Load(nil), c.loads...)
}

// loadResults returns the results of the loads that ended.
func (c *Cluster) loadResults() []*LoadResult {
	var out []*LoadResult
	for _, l := range c.Loads() {
		select {
		case <-l.done:
			if l.res != nil {
				out = append(out, l.res)
			}
		default:
		}
	}
	return out
}
