//go:build linux

// Command chaos runs troika's chaos scenarios: three nodes as real
// processes in network namespaces under a mixed workload (phones, prepaid
// calls, top-ups), faults (kill, partition, pause, restart, upgrade), then
// the checkers (set, bank, single holder, availability) and a report per
// scenario. It needs root (network namespaces, iptables), sipp, ip and
// iptables, and runs from a troika checkout:
//
//	sudo go run ./chaos/cmd/chaos -scenario kill-holder -duration 60s -report /tmp/chaos
//
// Scenarios: partition-leader, partition-holder, asymmetric, kill-leader,
// kill-holder, pause-leader, flapping, full-restart, rolling-upgrade, or
// all; several may be given, separated by commas. The exit status is 0
// when every checker of every scenario passed, 1 when one failed, 2 when
// the run could not be made. See chaos/doc.go and the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/troika-sip/troika/chaos"
	"github.com/troika-sip/troika/internal/testkit"
)

func main() {
	os.Exit(run())
}

type options struct {
	scenarios   []string
	duration    time.Duration
	seed        uint64
	reportDir   string
	binary      string
	tags        string
	oldBinary   string
	fromRev     string
	phones      int
	maxRecovery time.Duration
	keep        bool
}

func parseFlags() (options, error) {
	var o options
	var scen string
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.StringVar(&scen, "scenario", "", "scenario to run: "+strings.Join(chaos.ScenarioNames(), ", ")+", or all (several separated by commas)")
	fs.DurationVar(&o.duration, "duration", 60*time.Second, "how long the workload runs in each scenario; the faults happen within it")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the random choices (flapping's splits); 0 picks one and prints it")
	fs.StringVar(&o.reportDir, "report", "", "directory for the reports (SCENARIO.txt, SCENARIO.html, index.html, summary.txt); default a new one under the system temporary directory")
	fs.StringVar(&o.binary, "binary", "", "troika binary under test; default: built from this checkout")
	fs.StringVar(&o.tags, "tags", "", "build tags for the binary built from this checkout, e.g. chaosbroken_bank (a deliberately broken build)")
	fs.StringVar(&o.oldBinary, "old-binary", "", "rolling-upgrade: the earlier troika binary the cluster starts on (instead of building -from-rev)")
	fs.StringVar(&o.fromRev, "from-rev", "", "rolling-upgrade: the git revision to build the earlier binary from; default .ci/run's previous=")
	fs.IntVar(&o.phones, "phones", 500, "phone accounts registering")
	fs.DurationVar(&o.maxRecovery, "max-recovery", 10*time.Second, "availability: the longest a fault may keep REGISTERs failing")
	fs.BoolVar(&o.keep, "keep", false, "keep every run directory (node logs, SIPp files); by default only those of failed runs are kept")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q: flags only", fs.Args())
	}
	if scen == "" {
		return o, errors.New("-scenario is required: " + strings.Join(chaos.ScenarioNames(), ", ") + ", or all")
	}
	for _, s := range strings.Split(scen, ",") {
		s = strings.TrimSpace(s)
		switch _, ok := chaos.ScenarioNamed(s); {
		case s == "all":
			o.scenarios = append(o.scenarios, chaos.ScenarioNames()...)
		case ok:
			o.scenarios = append(o.scenarios, s)
		default:
			return o, fmt.Errorf("-scenario %q: no such scenario; choose from %s, or all", s, strings.Join(chaos.ScenarioNames(), ", "))
		}
	}
	if o.duration < 20*time.Second {
		return o, fmt.Errorf("-duration %s: at least 20s (a warm-up, the faults and a tail of recovery under load)", o.duration)
	}
	return o, nil
}

func run() int {
	o, err := parseFlags()
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	if err := preflight(o); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	if o.reportDir == "" {
		if o.reportDir, err = os.MkdirTemp("", "troika-chaos-report-"); err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			return 2
		}
	}
	if err := os.MkdirAll(o.reportDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	if o.binary, err = binaryUnderTest(o); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	if slices.Contains(o.scenarios, "rolling-upgrade") {
		if o.oldBinary, err = earlierBinary(o); err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			return 2
		}
	}
	fmt.Printf("chaos: %d scenario(s): %s; workload %s each; seed %d; reports in %s\n", len(o.scenarios), strings.Join(o.scenarios, ", "), o.duration, o.seed, o.reportDir)

	var rows []summaryRow
	for i, name := range o.scenarios {
		if ctx.Err() != nil {
			break
		}
		fmt.Printf("\n== %s (%d of %d)\n", name, i+1, len(o.scenarios))
		rows = append(rows, runScenario(ctx, o, name))
	}
	summary := summaryText(rows)
	fmt.Print("\n" + summary)
	if err := os.WriteFile(filepath.Join(o.reportDir, "summary.txt"), []byte(summary), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
	}
	if err := os.WriteFile(filepath.Join(o.reportDir, "index.html"), []byte(indexHTML(rows, summary)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
	}
	fmt.Printf("reports: %s (index.html)\n", o.reportDir)
	switch {
	case ctx.Err() != nil:
		fmt.Println("chaos: interrupted")
		return 2
	case len(rows) < len(o.scenarios):
		return 2
	}
	for _, r := range rows {
		if !r.ok {
			fmt.Println("chaos: FAILED: a checker failed or a run could not be made (see above; the run directories of failed runs are kept)")
			return 1
		}
	}
	fmt.Println("chaos: every checker passed")
	return 0
}

// preflight checks what the runs need, saying how to get it.
func preflight(o options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, iptables): run it with sudo, e.g. sudo -E go run ./chaos/cmd/chaos " + strings.Join(os.Args[1:], " "))
	}
	for tool, pkg := range map[string]string{"ip": "iproute2", "iptables": "iptables", "sipp": "sip-tester"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed: apt-get install -y %s", tool, pkg)
		}
	}
	if _, err := testkit.ModuleRoot(); err != nil {
		return err
	}
	return nil
}

// binaryUnderTest is -binary, or troika built from this checkout (with
// -tags), cached between runs (testkit.Binary).
func binaryUnderTest(o options) (string, error) {
	if o.binary != "" {
		if o.tags != "" {
			return "", errors.New("-tags applies to the binary built from this checkout: leave out -binary")
		}
		if _, err := os.Stat(o.binary); err != nil {
			return "", fmt.Errorf("-binary: %w", err)
		}
		return filepath.Abs(o.binary)
	}
	var tags []string
	if o.tags != "" {
		tags = strings.Split(o.tags, ",")
	}
	fmt.Printf("chaos: building troika from this checkout%s (cached between runs)...\n", tagText(tags))
	start := time.Now()
	bin, err := testkit.BinaryWithTags(tags)
	if err != nil {
		return "", err
	}
	fmt.Printf("chaos: troika under test: %s (%.1f s)\n", bin, time.Since(start).Seconds())
	return bin, nil
}

func tagText(tags []string) string {
	if len(tags) == 0 {
		return ""
	}
	return " with tags " + strings.Join(tags, ",")
}

var previousLine = regexp.MustCompile(`(?m)^previous=([0-9A-Za-z._/-]+)\s*$`)

// earlierBinary is -old-binary, or troika built from -from-rev (default
// .ci/run's previous=, the previous landed build) in a temporary git
// worktree, cached by commit under the system temporary directory.
func earlierBinary(o options) (string, error) {
	if o.oldBinary != "" {
		if _, err := os.Stat(o.oldBinary); err != nil {
			return "", fmt.Errorf("-old-binary: %w", err)
		}
		return filepath.Abs(o.oldBinary)
	}
	root, err := testkit.ModuleRoot()
	if err != nil {
		return "", err
	}
	rev := o.fromRev
	if rev == "" {
		ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
		if err != nil {
			return "", fmt.Errorf("no -from-rev, and .ci/run (whose previous= names the previous build) cannot be read: %w", err)
		}
		m := previousLine.FindSubmatch(ci)
		if m == nil {
			return "", errors.New("no -from-rev, and .ci/run has no previous=REV line: give -from-rev or -old-binary")
		}
		rev = string(m[1])
	}
	out, err := exec.Command("git", "-C", root, "rev-parse", "--verify", "--quiet", rev+"^{commit}").Output()
	if err != nil {
		return "", fmt.Errorf("revision %s is not in this clone's history (a shallow clone? git fetch --unshallow), or give -old-binary PATH", rev)
	}
	sha := strings.TrimSpace(string(out))
	bin := filepath.Join(os.TempDir(), "troika-testbin", "rev-"+sha[:12], "troika")
	if _, err := os.Stat(bin); err == nil {
		fmt.Printf("chaos: earlier build %s (%s): %s (cached)\n", rev, sha[:12], bin)
		return bin, nil
	}
	fmt.Printf("chaos: building the earlier build %s (%s) in a temporary worktree...\n", rev, sha[:12])
	start := time.Now()
	tmp, err := os.MkdirTemp("", "troika-rev-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "src")
	if out, err := exec.Command("git", "-C", root, "worktree", "add", "--detach", "-q", src, sha).CombinedOutput(); err != nil {
		return "", fmt.Errorf("git worktree add %s: %v\n%s", sha, err, out)
	}
	defer exec.Command("git", "-C", root, "worktree", "remove", "--force", src).Run()
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	build := exec.Command("go", "build", "-o", bin+".tmp", "./cmd/troika")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %v\n%s", rev, err, out)
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		return "", err
	}
	fmt.Printf("chaos: earlier build %s: %s (%.0f s)\n", rev, bin, time.Since(start).Seconds())
	return bin, nil
}

// summaryRow is one scenario's line of the summary.
type summaryRow struct {
	scenario string
	ok       bool
	verdicts map[string]bool
	recovery time.Duration // the longest, over the faults
	failed   int           // transactions (REGISTERs, calls) failed
	total    int           // transactions in all
	faults   []chaos.FaultFigures
	harness  string // why the run could not be made or finished as planned
	report   string // SCENARIO.html
	runDir   string
	took     time.Duration
}

func runScenario(ctx context.Context, o options, name string) summaryRow {
	row := summaryRow{scenario: name, verdicts: map[string]bool{}}
	runner := chaos.NewRunner(os.Stdout)
	var out *chaos.Outcome
	err := runner.Do(func() {
		out = chaos.Run(ctx, runner, chaos.Config{Scenario: name, Duration: o.duration, Seed: o.seed, Binary: o.binary,
			OldBinary: o.oldBinary, Dir: o.reportDir, Keep: o.keep, Phones: o.phones, MaxRecovery: o.maxRecovery})
	})
	if err != nil {
		row.harness = err.Error()
	}
	if out == nil {
		return row
	}
	row.ok = out.OK() && err == nil
	row.took, row.faults = out.Took, out.Faults
	if out.Kept {
		row.runDir = out.RunDir
	}
	for _, f := range out.Findings {
		row.verdicts[f.Checker] = f.OK
	}
	for _, fg := range out.Faults {
		row.recovery = max(row.recovery, fg.Recovery)
	}
	for _, l := range out.Loads {
		row.total += l.OK + l.Failed
		row.failed += l.Failed
	}
	row.report = name + ".html"
	for file, body := range map[string]string{name + ".txt": out.ReportText, name + ".html": out.ReportHTML} {
		if werr := os.WriteFile(filepath.Join(o.reportDir, file), []byte(body), 0o644); werr != nil {
			fmt.Fprintln(os.Stderr, "chaos:", werr)
		}
	}
	return row
}

var checkers = []string{chaos.CheckSet, chaos.CheckBank, chaos.CheckHolder, chaos.CheckAvailability}

func summaryText(rows []summaryRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-17s %-6s %-5s %-5s %-13s %-12s %9s %14s %7s\n", "scenario", "result", "set", "bank", "single-holder", "availability", "recovery", "failed/total", "took")
	for _, r := range rows {
		result := "PASS"
		if !r.ok {
			result = "FAIL"
		}
		fmt.Fprintf(&b, "%-17s %-6s", r.scenario, result)
		for i, c := range checkers {
			v, ok := r.verdicts[c]
			text := "-"
			if ok && v {
				text = "pass"
			} else if ok {
				text = "FAIL"
			}
			fmt.Fprintf(&b, " %-*s", []int{5, 5, 13, 12}[i], text)
		}
		fmt.Fprintf(&b, " %8.1fs %14s %6.0fs\n", r.recovery.Seconds(), fmt.Sprintf("%d/%d", r.failed, r.total), r.took.Seconds())
		for _, fg := range r.faults {
			fmt.Fprintf(&b, "    fault: %s: recovery %.1f s, %d failed\n", fg.Name, fg.Recovery.Seconds(), fg.Failed)
		}
		if r.harness != "" {
			fmt.Fprintf(&b, "    run: %s\n", r.harness)
		}
		if r.runDir != "" {
			fmt.Fprintf(&b, "    run directory kept: %s\n", r.runDir)
		}
	}
	return b.String()
}

func indexHTML(rows []summaryRow, summary string) string {
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>troika chaos</title><style>body{font-family:sans-serif;margin:1em}pre{font-size:12px}</style></head><body>\n<h2>troika chaos runs</h2>\n<ul>\n")
	for _, r := range rows {
		result := "PASS"
		if !r.ok {
			result = "FAIL"
		}
		if r.report != "" {
			fmt.Fprintf(&b, "<li><a href=\"%s\">%s</a>: %s</li>\n", html.EscapeString(r.report), html.EscapeString(r.scenario), result)
		} else {
			fmt.Fprintf(&b, "<li>%s: %s</li>\n", html.EscapeString(r.scenario), result)
		}
	}
	b.WriteString("</ul>\n<pre>" + html.EscapeString(summary) + "</pre>\n</body></html>\n")
	return b.String()
}
