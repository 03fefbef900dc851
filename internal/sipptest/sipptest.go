// Package sipptest runs SIPp (Debian's sip-tester) from Go tests as a real
// SIP peer: phones that register, callers and callees. It owns the
// scenarios the tests share and reading SIPp's statistics.
package sipptest

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

//go:embed scenarios/*.xml
var scenarios embed.FS

// Need skips the test when sipp is not installed (CI installs it).
func Need(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Skip("sipp is not installed (apt-get install -y sip-tester)")
	}
}

// Options describe one SIPp run.
type Options struct {
	Target    string   // host:port of the switch
	Scenario  string   // a file in scenarios/, e.g. "reg_auth.xml", or a path (with a '/') to another
	Inject    []string // injection file lines after SEQUENTIAL
	LocalIP   string   // default 127.0.0.1
	LocalPort int      // 0: SIPp picks
	Calls     int      // -m; default len(Inject)
	Rate      int      // calls per second, default 20
	Limit     int      // simultaneous calls, default Rate
	Timeout   time.Duration
	Extra     []string // more sipp arguments
	// Netns runs SIPp inside that network namespace (`ip netns exec
	// NETNS sipp ...`, needs root); "" runs it in the test's own.
	Netns string
	// StatEvery is how often SIPp writes a statistics row (-fd); Stats.
	// Periods has one entry per row. Default 1 s; SIPp accepts down to
	// milliseconds.
	StatEvery time.Duration
}

// Stats are SIPp's final counters.
type Stats struct {
	OK, Failed, Retrans int
	Output, Errors      string // SIPp's screen and error log, for failure messages
	// Periods are SIPp's statistics rows over time (every
	// Options.StatEvery), oldest first.
	Periods []Period
}

// Period is one row of SIPp's -trace_stat file: the counters of the
// period that ended At (SIPp's "(P)" columns).
type Period struct {
	At                  time.Time
	OK, Failed, Retrans int
	Created             int // calls started (OutgoingCall(P))
	Current             int // calls in progress at At
}

// Users returns injection lines for accounts whose password is "pw"+id,
// the convention of ../shared/bench.
func Users(ids ...string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("%s;[authentication username=%s password=pw%s]", id, id, id)
	}
	return out
}

// APIPassword is the password of test account id for accounts created
// through the admin API, whose password policy refuses "pw"+id (too short,
// and it contains the id): 16 letters and digits derived from id, never
// containing it.
func APIPassword(id string) string {
	for n := 0; ; n++ {
		sum := sha256.Sum256(fmt.Appendf(nil, "troika-test-password:%d:%s", n, id))
		p := "Tk" + hex.EncodeToString(sum[:7])
		if len(id) < 3 || !strings.Contains(strings.ToLower(p), strings.ToLower(id)) {
			return p
		}
	}
}

// APIUsers returns injection lines for accounts whose password is
// APIPassword(id).
func APIUsers(ids ...string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("%s;[authentication username=%s password=%s]", id, id, APIPassword(id))
	}
	return out
}

// Run runs SIPp to completion and returns its statistics. A SIPp exit
// code for failed calls is not an error here: callers check Stats.
func Run(t testing.TB, o Options) Stats {
	t.Helper()
	st, err := Exec(context.Background(), t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Exec is Run without a testing.TB, for SIPp runs in the background: it
// writes the scenario, injection file, statistics (stat.csv) and error log
// (errors.log) into dir, which must exist, and runs SIPp until it ends,
// o.Timeout passes or ctx is done. A SIPp exit code for failed calls is not
// an error: callers check Stats.
func Exec(ctx context.Context, dir string, o Options) (Stats, error) {
	var scen []byte
	var err error
	if strings.Contains(o.Scenario, "/") {
		scen, err = os.ReadFile(o.Scenario)
	} else {
		scen, err = scenarios.ReadFile("scenarios/" + o.Scenario)
	}
	if err != nil {
		return Stats{}, fmt.Errorf("sipptest: %w", err)
	}
	sf := filepath.Join(dir, filepath.Base(o.Scenario))
	if err := os.WriteFile(sf, scen, 0o600); err != nil {
		return Stats{}, err
	}
	fd := "1"
	if o.StatEvery > 0 {
		fd = fmt.Sprintf("%dms", max(o.StatEvery.Milliseconds(), 1))
	}
	args := []string{o.Target, "-sf", sf, "-nostdin", "-fd", fd, "-trace_stat", "-stf", filepath.Join(dir, "stat.csv"),
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log")}
	if len(o.Inject) > 0 {
		inf := filepath.Join(dir, "inject.csv")
		if err := os.WriteFile(inf, []byte("SEQUENTIAL\n"+strings.Join(o.Inject, "\n")+"\n"), 0o600); err != nil {
			return Stats{}, err
		}
		args = append(args, "-inf", inf)
	}
	if o.LocalIP == "" {
		o.LocalIP = "127.0.0.1"
	}
	args = append(args, "-i", o.LocalIP)
	if o.LocalPort != 0 {
		args = append(args, "-p", strconv.Itoa(o.LocalPort))
	}
	if o.Calls == 0 {
		o.Calls = len(o.Inject)
	}
	if o.Rate == 0 {
		o.Rate = 20
	}
	if o.Limit == 0 {
		o.Limit = o.Rate
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	args = append(args, "-m", strconv.Itoa(o.Calls), "-r", strconv.Itoa(o.Rate), "-l", strconv.Itoa(o.Limit),
		"-timeout", fmt.Sprintf("%ds", int(o.Timeout.Seconds())), "-timeout_error")
	args = append(args, o.Extra...)
	ctx, cancel := context.WithTimeout(ctx, o.Timeout+10*time.Second)
	defer cancel()
	name := "sipp"
	if o.Netns != "" {
		name, args = "ip", append([]string{"netns", "exec", o.Netns, "sipp"}, args...)
	}
	out, runErr := exec.CommandContext(ctx, name, args...).CombinedOutput()
	errs, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
	st := Stats{Output: tail(string(out), 3000), Errors: tail(string(errs), 3000)}
	counts, err := ReadStats(filepath.Join(dir, "stat.csv"))
	if err != nil {
		return st, fmt.Errorf("sipp %v: %v (run: %v)\n%s\n%s", args, err, runErr, st.Output, st.Errors)
	}
	st.OK, st.Failed, st.Retrans, st.Periods = counts.OK, counts.Failed, counts.Retrans, counts.Periods
	return st, nil
}

// ReadStats reads a SIPp -trace_stat file: the final counters and the
// rows over time (Output and Errors stay empty).
func ReadStats(path string) (Stats, error) {
	rows, periods, err := readStats(path)
	if err != nil {
		return Stats{}, err
	}
	return Stats{OK: rows["SuccessfulCall(C)"], Failed: rows["FailedCall(C)"], Retrans: rows["Retransmissions(C)"], Periods: periods}, nil
}

func readStats(path string) (map[string]int, []Period, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma = ';'
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, nil, err
	}
	if len(rows) < 2 {
		return nil, nil, fmt.Errorf("%s has no statistics rows", path)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	num := func(row []string, name string) int {
		if i, ok := col[name]; ok && i < len(row) {
			if n, err := strconv.Atoi(row[i]); err == nil {
				return n
			}
		}
		return 0
	}
	var periods []Period
	for _, row := range rows[1:] {
		p := Period{OK: num(row, "SuccessfulCall(P)"), Failed: num(row, "FailedCall(P)"),
			Retrans: num(row, "Retransmissions(P)"), Created: num(row, "OutgoingCall(P)"), Current: num(row, "CurrentCall")}
		if i, ok := col["CurrentTime"]; ok && i < len(row) {
			p.At = statTime(row[i])
		}
		periods = append(periods, p)
	}
	out := map[string]int{}
	last := rows[len(rows)-1]
	for i, h := range rows[0] {
		if i < len(last) {
			n, err := strconv.Atoi(last[i])
			if err == nil {
				out[h] = n
			}
		}
	}
	return out, periods, nil
}

// statTime reads SIPp's time column, "2024-01-02\t15:04:05.000000\t1704207845.000000":
// the last field is Unix seconds.
func statTime(s string) time.Time {
	f := strings.Fields(s)
	if len(f) == 0 {
		return time.Time{}
	}
	sec, frac, _ := strings.Cut(f[len(f)-1], ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}
	}
	var ns int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		ns, _ = strconv.ParseInt(frac, 10, 64)
	}
	return time.Unix(n, ns)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
