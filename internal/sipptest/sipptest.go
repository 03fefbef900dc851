// Package sipptest runs SIPp (Debian's sip-tester) from Go tests as a real
// SIP peer: phones that register, callers and callees. It owns the
// scenarios the tests share and reading SIPp's statistics.
package sipptest

import (
	"context"
	"embed"
	"encoding/csv"
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
	Scenario  string   // a file in scenarios/, e.g. "reg_auth.xml"
	Inject    []string // injection file lines after SEQUENTIAL
	LocalIP   string   // default 127.0.0.1
	LocalPort int      // 0: SIPp picks
	Calls     int      // -m; default len(Inject)
	Rate      int      // calls per second, default 20
	Limit     int      // simultaneous calls, default Rate
	Timeout   time.Duration
	Extra     []string // more sipp arguments
}

// Stats are SIPp's final counters.
type Stats struct {
	OK, Failed, Retrans int
	Output, Errors      string // SIPp's screen and error log, for failure messages
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

// Run runs SIPp to completion and returns its statistics. A SIPp exit
// code for failed calls is not an error here: callers check Stats.
func Run(t testing.TB, o Options) Stats {
	t.Helper()
	dir := t.TempDir()
	scen, err := scenarios.ReadFile("scenarios/" + o.Scenario)
	if err != nil {
		t.Fatalf("sipptest: %v", err)
	}
	sf := filepath.Join(dir, o.Scenario)
	must(t, os.WriteFile(sf, scen, 0o600))
	args := []string{o.Target, "-sf", sf, "-nostdin", "-fd", "1", "-trace_stat", "-stf", filepath.Join(dir, "stat.csv"),
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log")}
	if len(o.Inject) > 0 {
		inf := filepath.Join(dir, "inject.csv")
		must(t, os.WriteFile(inf, []byte("SEQUENTIAL\n"+strings.Join(o.Inject, "\n")+"\n"), 0o600))
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
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout+10*time.Second)
	defer cancel()
	out, runErr := exec.CommandContext(ctx, "sipp", args...).CombinedOutput()
	errs, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
	st := Stats{Output: tail(string(out), 3000), Errors: tail(string(errs), 3000)}
	rows, err := readStats(filepath.Join(dir, "stat.csv"))
	if err != nil {
		t.Fatalf("sipp %v: %v (run: %v)\n%s\n%s", args, err, runErr, st.Output, st.Errors)
	}
	st.OK, st.Failed, st.Retrans = rows["SuccessfulCall(C)"], rows["FailedCall(C)"], rows["Retransmissions(C)"]
	return st
}

func readStats(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma = ';'
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(rows) < 2 {
		return nil, fmt.Errorf("%s has no statistics rows", path)
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
	return out, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
