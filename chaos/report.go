//go:build linux

package chaos

import (
	"fmt"
	"html"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// faultKinds are the events the report measures recovery from.
var faultKinds = map[string]bool{"kill": true, "stop": true, "pause": true, "resume": true, "partition": true, "heal": true, "swap": true}

// ReportSection is a titled block of lines the report prints after the
// checkers' findings.
type ReportSection struct {
	Title string
	Lines []string
}

// SetFindings puts the checkers' verdicts at the top of the report.
func (c *Cluster) SetFindings(fs []Finding) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.findings = slices.Clone(fs)
}

// AddSection adds a section to the report.
func (c *Cluster) AddSection(s ReportSection) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sections = append(c.sections, s)
}

// KeepRunDir keeps the run directory at Close, as Options.Keep does.
func (c *Cluster) KeepRunDir() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opts.Keep = true
}

func (c *Cluster) reportParts() ([]Finding, []ReportSection) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.findings), slices.Clone(c.sections)
}

// WriteReport writes report.txt and report.html (with an SVG timeline)
// into the run directory. Close calls it; a test may call it earlier.
func (c *Cluster) WriteReport() error {
	if err := os.WriteFile(filepath.Join(c.Dir, "report.txt"), []byte(c.ReportText()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.Dir, "report.html"), []byte(c.ReportHTML()), 0o644)
}

// ReportHTML is the report as one self-contained HTML page: the checkers'
// verdicts, the SVG timeline and the text summary, with no external
// resource.
func (c *Cluster) ReportHTML() string {
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>troika chaos " + c.ID + "</title>\n" +
		"<style>body{font-family:sans-serif;margin:1em}pre{font-size:12px}table{border-collapse:collapse;margin-bottom:1em}" +
		"td,th{border:1px solid #ccc;padding:3px 8px;vertical-align:top;font-size:13px;text-align:left}" +
		".pass{background:#e8f5e9;color:#1b5e20;font-weight:bold}.fail{background:#ffebee;color:#b71c1c;font-weight:bold}" +
		"details{font-size:12px;margin-top:3px}</style></head><body>\n<h2>troika chaos run " + c.ID + "</h2>\n")
	if findings, _ := c.reportParts(); len(findings) > 0 {
		b.WriteString("<table><tr><th>checker</th><th>verdict</th><th>what it found</th></tr>\n")
		for _, f := range findings {
			cls, verdict := "pass", "PASS"
			if !f.OK {
				cls, verdict = "fail", "FAIL"
			}
			fmt.Fprintf(&b, "<tr><td>%s</td><td class=\"%s\">%s</td><td>%s", html.EscapeString(f.Checker), cls, verdict, html.EscapeString(f.Summary))
			if len(f.Details) > 0 {
				b.WriteString("<details><summary>details</summary><ul>")
				for _, d := range f.Details {
					b.WriteString("<li>" + html.EscapeString(d) + "</li>")
				}
				b.WriteString("</ul></details>")
			}
			b.WriteString("</td></tr>\n")
		}
		b.WriteString("</table>\n")
	}
	b.WriteString(c.ReportSVG() + "\n<pre>" + html.EscapeString(c.ReportText()) + "</pre>\n</body></html>\n")
	return b.String()
}

func (c *Cluster) rel(t time.Time) string { return fmt.Sprintf("%+8.3fs", t.Sub(c.started).Seconds()) }

// ReportText is the text summary: events, address ownership, double
// holders, loads and, for every fault, the time to the first successful
// REGISTER and the failed ones that followed.
func (c *Cluster) ReportText() string {
	var b strings.Builder
	rounds := c.AddrTimeline()
	events := c.Events()
	loads := c.loadResults()
	end := time.Now()
	fmt.Fprintf(&b, "troika chaos run %s: subnet %s, %d nodes, %.1f s, run directory %s\n\n", c.ID, c.Subnet, len(c.Nodes), end.Sub(c.started).Seconds(), c.Dir)
	for _, h := range c.Hosts() {
		fmt.Fprintf(&b, "  %-7s %-15s namespace %s\n", h.Name, h.Addr, h.NS)
	}
	findings, sections := c.reportParts()
	if len(findings) > 0 {
		b.WriteString("\nCheckers:\n")
		for _, f := range findings {
			verdict := "PASS"
			if !f.OK {
				verdict = "FAIL"
			}
			fmt.Fprintf(&b, "  %s %-13s %s\n", verdict, f.Checker, f.Summary)
			for _, d := range f.Details {
				fmt.Fprintf(&b, "         %s\n", d)
			}
		}
	}
	for _, s := range sections {
		fmt.Fprintf(&b, "\n%s:\n", s.Title)
		for _, l := range s.Lines {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	b.WriteString("\nEvents (seconds since setup):\n")
	for _, e := range events {
		who := e.Host
		if who == "" {
			who = "cluster"
		}
		fmt.Fprintf(&b, "  %s  %-8s %-10s %s\n", c.rel(e.At), who, e.Kind, e.Detail)
	}
	fmt.Fprintf(&b, "\nAddress ownership (%d samples, every %v):\n", len(rounds), SampleEvery)
	for _, a := range WatchedAddrs(rounds) {
		var parts []string
		for _, h := range Ownership(rounds, a) {
			to := c.rel(h.To)
			if h.Open {
				to = "end"
			}
			parts = append(parts, fmt.Sprintf("%s %s..%s", h.Host, strings.TrimSpace(c.rel(h.From)), strings.TrimSpace(to)))
		}
		fmt.Fprintf(&b, "  %-15s %s\n", a, strings.Join(parts, "; "))
	}
	dups := CheckSingleHolder(rounds)
	if len(dups) == 0 {
		b.WriteString("\nDouble holders: none (no sample shows an address in two namespaces)\n")
	} else {
		fmt.Fprintf(&b, "\nDouble holders: %d samples\n", len(dups))
		for _, iv := range mergeDups(dups, rounds) {
			fmt.Fprintf(&b, "  %-15s %s from %s to %s (%d samples)\n", iv.addr, strings.Join(iv.holders, "+"), c.rel(iv.from), c.rel(iv.to), iv.n)
		}
	}
	if len(loads) > 0 {
		b.WriteString("\nLoads:\n")
		for _, r := range loads {
			fmt.Fprintf(&b, "  %s  %s..%s\n", r.Summary(), strings.TrimSpace(c.rel(r.Start)), strings.TrimSpace(c.rel(r.End)))
		}
		b.WriteString("\nFaults (first success after the fault, within one statistics period; failures in the next 30 s):\n")
		for _, e := range events {
			if !faultKinds[e.Kind] {
				continue
			}
			for _, r := range loads {
				if e.At.Before(r.Start) || e.At.After(r.End) || r.Kind == "call" {
					continue
				}
				first := "none"
				if t, ok := r.FirstOKAfter(e.At); ok {
					first = fmt.Sprintf("%.3f s", t.Sub(e.At).Seconds())
				}
				ok, failed, _ := r.Between(e.At, e.At.Add(30*time.Second))
				fmt.Fprintf(&b, "  %s %-8s %-10s %s: first ok after %s; next 30 s: %d ok, %d failed\n", c.rel(e.At), e.Host, e.Kind, r.Name, first, ok, failed)
			}
		}
	}
	return b.String()
}

type dupInterval struct {
	addr     netip.Addr
	holders  []string
	from, to time.Time
	n        int
}

// mergeDups folds double holders of consecutive rounds into intervals.
func mergeDups(dups []DoubleHolder, rounds []Round) []dupInterval {
	idx := map[time.Time]int{}
	for i, r := range rounds {
		idx[r.At] = i
	}
	var out []dupInterval
	last := map[string]int{} // key -> index in out
	lastRound := map[string]int{}
	for _, d := range dups {
		key := d.Addr.String() + "/" + strings.Join(d.Holders, ",")
		ri := idx[d.At]
		if i, ok := last[key]; ok && lastRound[key] == ri-1 {
			out[i].to, out[i].n = d.At, out[i].n+1
		} else {
			last[key] = len(out)
			out = append(out, dupInterval{addr: d.Addr, holders: d.Holders, from: d.At, to: d.At, n: 1})
		}
		lastRound[key] = ri
	}
	return out
}

// state is a node process's state over an interval, for the timeline.
type state struct {
	from, to time.Time
	kind     string // running, starting, paused, stopping, down
}

func (c *Cluster) nodeStates(node string, events []Event, end time.Time) (procs []state, cuts []state) {
	cur, since := "down", c.started
	cut, cutSince := false, time.Time{}
	for _, e := range events {
		if e.Kind == "partition" || e.Kind == "heal" {
			for _, h := range strings.Split(e.Host, ",") {
				if h != node {
					continue
				}
				if e.Kind == "partition" && !cut {
					cut, cutSince = true, e.At
				} else if e.Kind == "heal" && cut {
					cut = false
					cuts = append(cuts, state{cutSince, e.At, "partitioned"})
				}
			}
			continue
		}
		if e.Host != node {
			continue
		}
		next := cur
		switch e.Kind {
		case "start":
			next = "starting"
		case "ready", "resume":
			next = "running"
		case "pause":
			next = "paused"
		case "stop":
			next = "stopping"
		case "kill", "exit":
			next = "down"
		}
		if next != cur {
			procs = append(procs, state{since, e.At, cur})
			cur, since = next, e.At
		}
	}
	procs = append(procs, state{since, end, cur})
	if cut {
		cuts = append(cuts, state{cutSince, end, "partitioned"})
	}
	return procs, cuts
}

var (
	stateColor = map[string]string{"running": "#43a047", "starting": "#a5d6a7", "paused": "#fb8c00", "stopping": "#fff176", "down": "#e0e0e0"}
	hostColors = []string{"#1e88e5", "#8e24aa", "#00897b", "#f4511e", "#6d4c41", "#3949ab", "#c0ca33", "#d81b60", "#546e7a"}
)

func (c *Cluster) hostColor(name string) string {
	for i, n := range c.Nodes {
		if n.Name == name {
			return hostColors[i%len(hostColors)]
		}
	}
	return "#757575"
}

// ReportSVG draws the run: faults (vertical lines), each node's process
// state and partitions, who held each address, and each load's successful
// (up, green) and failed (down, red) REGISTERs per second.
func (c *Cluster) ReportSVG() string {
	rounds := c.AddrTimeline()
	events := c.Events()
	loads := c.loadResults()
	t0, t1 := c.started, time.Now()
	span := t1.Sub(t0).Seconds()
	if span <= 0 {
		span = 1
	}
	const left, width, lane = 170.0, 900.0, 18.0
	x := func(t time.Time) float64 {
		return left + math.Max(0, math.Min(1, t.Sub(t0).Seconds()/span))*width
	}
	var body strings.Builder
	y := 10.0
	// Event labels, in four staggered rows.
	var marks []Event
	for _, e := range events {
		if faultKinds[e.Kind] || e.Kind == "mark" || e.Kind == "addr-add" || e.Kind == "addr-del" {
			marks = append(marks, e)
		}
	}
	labelRows := 4.0
	for i, e := range marks {
		ly := y + 10 + float64(i%int(labelRows))*12
		label := e.Host + " " + e.Kind
		if e.Kind == "mark" {
			label = e.Detail
		} else if strings.HasPrefix(e.Kind, "addr") {
			label += " " + e.Detail
		}
		lx, anchor := x(e.At)+2, "start"
		if lx > left+width-150 { // near the right edge: the label ends at its line
			lx, anchor = x(e.At)-2, "end"
		}
		fmt.Fprintf(&body, `<text x="%.1f" y="%.1f" font-size="10" fill="#b71c1c" text-anchor="%s">%s</text>`+"\n", lx, ly, anchor, html.EscapeString(label))
	}
	y += labelRows*12 + 10
	top := y
	row := func(label string) float64 {
		fmt.Fprintf(&body, `<text x="4" y="%.1f" font-size="11">%s</text>`+"\n", y+lane-5, html.EscapeString(label))
		ry := y
		y += lane + 4
		return ry
	}
	rect := func(x0, x1, ry, h float64, fill, title string) {
		x1 = math.Min(x1, left+width)
		if x1-x0 < 0.5 {
			x1 = x0 + 0.5
		}
		fmt.Fprintf(&body, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n", x0, ry, x1-x0, h, fill, html.EscapeString(title))
	}
	for _, n := range c.Nodes {
		ry := row(n.Name + " process")
		procs, cuts := c.nodeStates(n.Name, events, t1)
		for _, s := range procs {
			rect(x(s.from), x(s.to), ry, lane, stateColor[s.kind], fmt.Sprintf("%s %s %s..%s", n.Name, s.kind, c.rel(s.from), c.rel(s.to)))
		}
		for _, s := range cuts {
			rect(x(s.from), x(s.to), ry+lane*0.6, lane*0.4, "#d32f2f", fmt.Sprintf("%s partitioned %s..%s", n.Name, c.rel(s.from), c.rel(s.to)))
		}
	}
	if leaders := c.LeaderTimeline(); len(leaders) > 0 {
		ry := row("leader")
		for i := 0; i < len(leaders); {
			s := leaders[i]
			j := i + 1
			for j < len(leaders) && leaders[j].Leader == s.Leader && leaders[j].Term == s.Term {
				j++
			}
			to := t1
			if j < len(leaders) {
				to = leaders[j].At
			}
			fill, title := "#e0e0e0", "no leader answered"
			if s.Leader != "" {
				fill, title = c.hostColor(s.Leader), fmt.Sprintf("%s leads (term %d)", s.Leader, s.Term)
			}
			rect(x(s.At), x(to), ry+2, lane-4, fill, fmt.Sprintf("%s %s..%s", title, c.rel(s.At), c.rel(to)))
			i = j
		}
	}
	y += 6
	dups := mergeDups(CheckSingleHolder(rounds), rounds)
	for _, a := range WatchedAddrs(rounds) {
		ry := row(a.String())
		holds := Ownership(rounds, a)
		for _, h := range holds {
			rect(x(h.From), x(h.To), ry+2, lane-4, c.hostColor(h.Host), fmt.Sprintf("%s held by %s %s..%s", a, h.Host, c.rel(h.From), c.rel(h.To)))
		}
		for _, d := range dups {
			if d.addr == a {
				rect(x(d.from), x(d.to.Add(SampleEvery)), ry, lane, "#ff1744", fmt.Sprintf("DOUBLE HOLDER %s: %s %s..%s", a, strings.Join(d.holders, "+"), c.rel(d.from), c.rel(d.to)))
			}
		}
	}
	y += 6
	for _, r := range loads {
		per := r.PerSecond(t0)
		peak := 1
		for _, v := range per {
			peak = max(peak, v[0], v[1])
		}
		const h = 40.0
		fmt.Fprintf(&body, `<text x="4" y="%.1f" font-size="11">%s</text>`+"\n", y+h, html.EscapeString(r.Name+" "+r.Kind+"s/s"))
		fmt.Fprintf(&body, `<text x="4" y="%.1f" font-size="9" fill="#555">peak %d/s; %s</text>`+"\n", y+h+12, peak, html.EscapeString(r.Target))
		if r.OK+r.Failed == 0 {
			fmt.Fprintf(&body, `<text x="%.1f" y="%.1f" font-size="10" fill="#555">no %s ended</text>`+"\n", left+4, y+h-4, html.EscapeString(r.Kind))
		}
		mid := y + h
		fmt.Fprintf(&body, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#999"/>`+"\n", left, left+width, mid, mid)
		secs := make([]int, 0, len(per))
		for s := range per {
			secs = append(secs, s)
		}
		sort.Ints(secs)
		bw := width / span
		for _, s := range secs {
			v := per[s]
			bx := x(t0.Add(time.Duration(s) * time.Second))
			if v[0] > 0 {
				hh := h * float64(v[0]) / float64(peak)
				rect(bx, bx+math.Max(bw-1, 1), mid-hh, hh, "#43a047", fmt.Sprintf("%s second %d: %d ok", r.Name, s, v[0]))
			}
			if v[1] > 0 {
				hh := h * float64(v[1]) / float64(peak)
				rect(bx, bx+math.Max(bw-1, 1), mid, hh, "#e53935", fmt.Sprintf("%s second %d: %d failed", r.Name, s, v[1]))
			}
		}
		y += 2*h + 10
	}
	// Fault lines over everything, and the time axis.
	for _, e := range marks {
		fmt.Fprintf(&body, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#b71c1c" stroke-dasharray="3,3" stroke-width="0.8"/>`+"\n", x(e.At), x(e.At), 10.0, y)
	}
	step := niceStep(span)
	for s := 0.0; s <= span; s += step {
		tx := left + s/span*width
		fmt.Fprintf(&body, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ccc"/><text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%gs</text>`+"\n", tx, tx, top-4, y, tx, y+12, s)
	}
	y += 30
	legend := `<text x="4" y="%.1f" font-size="10">process: <tspan fill="#43a047">running</tspan> <tspan fill="#a5d6a7">starting</tspan> <tspan fill="#fb8c00">paused</tspan> <tspan fill="#c0b000">stopping</tspan> <tspan fill="#9e9e9e">down</tspan> <tspan fill="#d32f2f">partitioned</tspan>; addresses and leader coloured by node: %s; <tspan fill="#ff1744">double holder</tspan></text>`
	var hl []string
	for _, n := range c.Nodes {
		hl = append(hl, fmt.Sprintf(`<tspan fill="%s">%s</tspan>`, c.hostColor(n.Name), n.Name))
	}
	hl = append(hl, `<tspan fill="#757575">client</tspan>`)
	fmt.Fprintf(&body, legend+"\n", y-8, strings.Join(hl, " "))
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif">`+"\n%s</svg>", left+width+20, y, body.String())
}

func niceStep(span float64) float64 {
	for _, s := range []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600} {
		if span/s <= 20 {
			return s
		}
	}
	return 1200
}
