//go:build linux

package chaos

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
)

// The checkers' names.
const (
	CheckSet          = "set"
	CheckBank         = "bank"
	CheckHolder       = "single holder"
	CheckAvailability = "availability"
)

// Finding is one checker's verdict on a run.
type Finding struct {
	Checker string
	OK      bool
	Summary string   // one line: what was checked and what was found
	Details []string // what failed and where to look, or the figures
	// Subjects are what the checker found wrong: the accounts whose
	// bindings or money are off, the addresses held twice, the faults
	// not recovered from.
	Subjects []string
}

// FaultFigures is what the availability checker measured for a fault.
type FaultFigures struct {
	Fault
	// From is when recovery is counted from: the fault, or its repair
	// when every node was down.
	From time.Time
	// Recovery is the time from From to the first successful REGISTER
	// after it, the longest over the REGISTER loads (virtual IP, alias).
	Recovery  time.Duration
	Recovered bool
	// OK and Failed count the transactions (REGISTERs and calls) that
	// ended from the fault to the next one (or the end of the loads).
	OK, Failed int
	PerLoad    []string
}

func (x *Experiment) check() ([]Finding, []FaultFigures) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	avail, figures := x.checkAvailability()
	return []Finding{x.checkSet(ctx), x.checkBank(ctx), x.checkHolder(), avail}, figures
}

// bindingKey names a binding by account and contact address.
func bindingKey(account, hostport string) string { return account + " " + hostport }

// contactHostPort is the host:port of a contact URI
// (sip:ph0001@10.64.3.200:15061;transport=udp -> 10.64.3.200:15061).
func contactHostPort(contact string) string {
	s := strings.Trim(contact, "<>")
	if i := strings.LastIndex(s, "@"); i >= 0 {
		s = s[i+1:]
	} else {
		s = strings.TrimPrefix(strings.TrimPrefix(s, "sips:"), "sip:")
	}
	if i := strings.IndexAny(s, ";>?"); i >= 0 {
		s = s[:i]
	}
	return s
}

// checkSet: every binding the registrar acknowledged (a 200 to the
// phone, logged by SIPp; every REGISTER asks for 3600 s, longer than any
// run, so none has expired) is listed by every node once the cluster has
// settled (every node caught up). It waits up to 10 s for the nodes to
// agree.
func (x *Experiment) checkSet(ctx context.Context) Finding {
	f := Finding{Checker: CheckSet}
	want := map[string]bool{}
	client := x.C.Client.Addr.String()
	for _, ld := range x.work.regLoads {
		acked, err := ld.Acked()
		if err != nil {
			f.Summary = "cannot tell what was acknowledged: " + err.Error()
			f.Details = []string{"SIPp's acknowledgement log is missing: look at " + ld.Dir}
			return f
		}
		for user := range acked {
			want[bindingKey(user, sipAddr(x.C.Client.Addr, ld.Port))] = true
		}
	}
	for _, cr := range x.work.callees {
		if cr.Registered {
			want[bindingKey(cr.Account, sipAddr(x.C.Client.Addr, cr.Port))] = true
		}
	}
	missing := map[string][]string{} // node -> binding keys
	deadline := time.Now().Add(10 * time.Second)
	for {
		clear(missing)
		for _, n := range x.C.Nodes {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			regs, err := n.Admin().Registrations(rctx, "")
			cancel()
			if err != nil {
				missing[n.Name] = []string{"(cannot list: " + err.Error() + ")"}
				continue
			}
			have := make(map[string]bool, len(regs))
			for _, r := range regs {
				have[bindingKey(r.Account, contactHostPort(r.Contact))] = true
			}
			for k := range want {
				if !have[k] {
					missing[n.Name] = append(missing[n.Name], k)
				}
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(missing) == 0 {
		f.OK = true
		f.Summary = fmt.Sprintf("all %d acknowledged bindings (phones through %s and %s, callees) are listed by every node (%s); phones at %s",
			len(want), x.VIP, x.Alias, names(x.C.Nodes), client)
		return f
	}
	lost := map[string]bool{}
	for _, node := range slices.Sorted(maps.Keys(missing)) {
		keys := missing[node]
		sort.Strings(keys)
		f.Details = append(f.Details, fmt.Sprintf("%s lacks %d of %d acknowledged bindings: %s", node, len(keys), len(want), strings.Join(keys[:min(len(keys), 10)], ", ")))
		for _, k := range keys {
			account, _, _ := strings.Cut(k, " ")
			lost[account] = true
		}
	}
	f.Subjects = slices.Sorted(maps.Keys(lost))
	f.Summary = fmt.Sprintf("bindings the registrar acknowledged are missing after the heal (accounts %s)", strings.Join(f.Subjects[:min(len(f.Subjects), 10)], ", "))
	f.Details = append(f.Details, "what to do: find the REGISTERs of these accounts in the node logs (RUN_DIR/nN.log, "+
		`"registered"`+") and follow them to fsm.Register; a node missing what the others list has not applied the log (its applied index in GET /v1/cluster)")
	return f
}

// bankView is one node's view of the money.
type bankView struct {
	accounts map[string]admin.Account
	xdrs     []admin.XDR
	calls    []admin.Call
}

// checkBank: on every node, each account's balance is its opening
// balance plus the top-ups applied less what its xDRs charged it, to the
// micro-unit (so in sum too: balances + charges - top-ups is constant);
// every call id has at most one xDR, and every call a caller saw answered
// exactly one; no prepaid balance is below zero, at the end or in any
// sample taken during the run, nor holds more than it has; nothing stays
// reserved and no call is left once all ended; every node agrees.
func (x *Experiment) checkBank(ctx context.Context) Finding {
	f := Finding{Checker: CheckBank}
	w := x.work
	w.mu.Lock()
	topups := map[string]int64{}
	applied, replayed, refused := 0, 0, 0
	var unresolved []string
	for _, r := range w.topups {
		switch {
		case r.Applied:
			topups[r.Account] += r.Amount
			applied++
			if r.Replayed {
				replayed++
			}
		case r.Refused != "":
			refused++
		default:
			unresolved = append(unresolved, r.Key)
		}
	}
	violations := slices.Clone(w.violations)
	samples := w.samples
	w.mu.Unlock()
	opening := map[string]int64{}
	for _, a := range moneyAccounts {
		opening[a.ID] = a.Balance
	}
	var answered []string
	for _, ld := range w.loads() {
		if ld.Kind != "call" {
			continue
		}
		ids, err := ld.AnsweredCalls()
		if err != nil {
			f.Summary = "cannot tell which calls were answered: " + err.Error()
			return f
		}
		answered = append(answered, ids...)
	}

	bad := map[string]bool{}
	problem := func(subject, format string, args ...any) {
		bad[subject] = true
		f.Details = append(f.Details, fmt.Sprintf(format, args...))
	}
	if len(unresolved) > 0 {
		problem("top-ups", "%d top-ups never answered (%s): whether they were applied is unknown, so the sums below may be off by them", len(unresolved), strings.Join(unresolved, ", "))
	}
	var ref *bankView
	var refNode string
	var xdrCount, cutForCredit int
	for _, n := range x.C.Nodes {
		v, err := readBank(ctx, n)
		if err != nil {
			problem(n.Name, "%v", err)
			continue
		}
		var total, start, charged, topped int64
		charges := map[string]int64{}
		perCall := map[string]int{}
		for _, xd := range v.xdrs {
			perCall[xd.CallID]++
			var sum int64
			for _, ch := range xd.Charges {
				amt, err := billing.ParseMoney(ch.Amount)
				if err != nil {
					problem(n.Name, "%s: xDR %d: charge %q: %v", n.Name, xd.ID, ch.Amount, err)
					continue
				}
				charges[ch.Account] += amt
				sum += amt
			}
			if amt, err := billing.ParseMoney(xd.Amount); err != nil || amt != sum {
				problem(xd.CallID, "%s: xDR %d of call %s says %s, its charges sum to %s", n.Name, xd.ID, xd.CallID, xd.Amount, billing.FormatMoney(sum))
			}
		}
		for _, id := range slices.Sorted(maps.Keys(v.accounts)) {
			a := v.accounts[id]
			bal, err1 := billing.ParseMoney(a.Balance)
			held, err2 := billing.ParseMoney(a.Reserved)
			if err1 != nil || err2 != nil {
				problem(id, "%s: account %s: balance %q, reserved %q: not money", n.Name, id, a.Balance, a.Reserved)
				continue
			}
			want := opening[id] + topups[id] - charges[id]
			total, start, charged, topped = total+bal, start+opening[id], charged+charges[id], topped+topups[id]
			if bal != want {
				problem(id, "%s: %s's balance is %s, want %s (%s at start + %s top-ups - %s charged by its xDRs): %s %s",
					n.Name, id, a.Balance, billing.FormatMoney(want), billing.FormatMoney(opening[id]), billing.FormatMoney(topups[id]),
					billing.FormatMoney(charges[id]), billing.FormatMoney(abs(bal-want)), moreOrLess(bal-want))
			}
			if a.Billing == fsm.Prepaid && bal < 0 {
				problem(id, "%s: prepaid %s ended at %s, below zero", n.Name, id, a.Balance)
			}
			if held != 0 {
				problem(id, "%s: %s still has %s reserved with no call in progress", n.Name, id, a.Reserved)
			}
		}
		for id := range charges {
			if _, ok := v.accounts[id]; !ok {
				problem(id, "%s: xDRs charge %s, which %s does not list", n.Name, id, n.Name)
			}
		}
		if total+charged-topped != start {
			problem("sum", "%s: balances %s + charges %s - top-ups %s = %s, want the opening %s",
				n.Name, billing.FormatMoney(total), billing.FormatMoney(charged), billing.FormatMoney(topped), billing.FormatMoney(total+charged-topped), billing.FormatMoney(start))
		}
		for id, k := range perCall {
			if k > 1 {
				problem(id, "%s: call %s has %d xDRs: charged %d times", n.Name, id, k, k)
			}
		}
		for _, id := range answered {
			if perCall[id] != 1 {
				problem(id, "%s: call %s, answered (the caller got its 200), has %d xDRs, want 1", n.Name, id, perCall[id])
			}
		}
		for _, cl := range v.calls {
			problem(cl.ID, "%s: call %s of %s is still listed in progress (on %s) after every call ended", n.Name, cl.ID, cl.Account, cl.Node)
		}
		if ref == nil {
			ref, refNode, xdrCount = v, n.Name, len(v.xdrs)
			cutForCredit = countCause(v.xdrs, "Out of Credit")
			continue
		}
		if len(v.xdrs) != len(ref.xdrs) {
			problem(n.Name, "%s lists %d xDRs, %s %d", n.Name, len(v.xdrs), refNode, len(ref.xdrs))
		}
		for id, a := range v.accounts {
			if r, ok := ref.accounts[id]; !ok || r.Balance != a.Balance {
				problem(id, "%s says %s's balance is %s, %s says %s", n.Name, id, a.Balance, refNode, r.Balance)
			}
		}
	}
	for _, v := range violations {
		problem(v.Account, "%s: %s read %s's balance %s with %s reserved during the run: a prepaid balance below zero or holding more than it has",
			v.At.Format("15:04:05.000"), v.Node, v.Account, billing.FormatMoney(v.Balance), billing.FormatMoney(v.Reserved))
	}
	// No call of the workload lasts a minute: one cut at
	// max_call_duration outlived its caller's hang-up (a BYE the switch
	// lost or refused), and was charged for the time after it.
	if ref != nil {
		for _, xd := range ref.xdrs {
			if xd.CauseText == "Maximum Duration" {
				problem(xd.Account, "call %s of %s ran %d s to max_call_duration and was charged %s: its caller had hung up (see RUN_DIR/sipp-*/errors.log)",
					xd.CallID, xd.Account, xd.Duration, xd.Amount)
			}
		}
	}
	f.Subjects = slices.Sorted(maps.Keys(bad))
	facts := fmt.Sprintf("%d accounts, %d xDRs (%d calls answered by SIPp's callers, %d cut for want of credit), %d top-ups applied (%d sent again with their key), %d refused, %d balance samples",
		len(moneyAccounts)+x.cfg.Phones, xdrCount, len(answered), cutForCredit, applied, replayed, refused, samples)
	if len(f.Subjects) == 0 {
		f.OK = true
		f.Summary = "money conserved to the micro-unit on every node: " + facts + "; no prepaid balance below zero; one xDR per call; nothing left reserved; no call charged past its caller's hang-up"
		w.mu.Lock()
		for _, a := range moneyAccounts {
			if low, ok := w.lowest[a.ID]; ok && ref != nil {
				f.Details = append(f.Details, fmt.Sprintf("%s (%s): opened at %s, lowest seen %s, closed at %s", a.ID, a.Role,
					billing.FormatMoney(a.Balance), billing.FormatMoney(low), ref.accounts[a.ID].Balance))
			}
		}
		w.mu.Unlock()
		return f
	}
	f.Summary = fmt.Sprintf("money is off (%s): %s", strings.Join(f.Subjects[:min(len(f.Subjects), 8)], ", "), facts)
	if len(f.Details) > 40 {
		f.Details = append(f.Details[:40], fmt.Sprintf("... and %d more", len(f.Details)-40))
	}
	f.Details = append(f.Details, "what to do: for an account, compare GET /v1/xdrs?account=ID and the top-ups (keys chaos-RUNID-N, in the node logs' audit lines) with its balance; "+
		"a second xDR or a second debit for one call or key is a write applied twice (a retry the fsm did not recognise)")
	return f
}

func countCause(xs []admin.XDR, text string) int {
	n := 0
	for _, x := range xs {
		if x.CauseText == text {
			n++
		}
	}
	return n
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func moreOrLess(d int64) string {
	if d > 0 {
		return "more"
	}
	return "less"
}

func readBank(ctx context.Context, n *Node) (*bankView, error) {
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	accts, err := accountsOn(rctx, n)
	if err != nil {
		return nil, err
	}
	xdrs, err := xdrsOn(rctx, n)
	if err != nil {
		return nil, err
	}
	calls, err := n.Admin().Calls(rctx, "")
	if err != nil {
		return nil, fmt.Errorf("%s: GET /v1/calls: %w", n.Name, err)
	}
	return &bankView{accounts: accts, xdrs: xdrs, calls: calls}, nil
}

// checkHolder: no sample (every 50 ms, every node's and the client's
// namespace) shows an address in two namespaces.
func (x *Experiment) checkHolder() Finding {
	f := Finding{Checker: CheckHolder}
	rounds := x.C.AddrTimeline()
	dups := CheckSingleHolder(rounds)
	span := time.Duration(0)
	if len(rounds) > 1 {
		span = rounds[len(rounds)-1].At.Sub(rounds[0].At)
	}
	if len(dups) == 0 {
		f.OK = true
		f.Summary = fmt.Sprintf("no sample of %d (every %s over %.0f s) shows an address in two namespaces", len(rounds), SampleEvery, span.Seconds())
		for _, a := range []netip.Addr{x.VIP, x.Alias} {
			var holds []string
			for _, h := range Ownership(rounds, a) {
				holds = append(holds, fmt.Sprintf("%s %s..%s", h.Host, strings.TrimSpace(x.C.rel(h.From)), strings.TrimSpace(x.C.rel(h.To))))
			}
			f.Details = append(f.Details, fmt.Sprintf("%s held by %s", a, strings.Join(holds, "; ")))
		}
		return f
	}
	addrs := map[string]bool{}
	for _, iv := range mergeDups(dups, rounds) {
		addrs[iv.addr.String()] = true
		f.Details = append(f.Details, fmt.Sprintf("%s held by %s from %s to %s (%d samples)", iv.addr, strings.Join(iv.holders, " and "),
			strings.TrimSpace(x.C.rel(iv.from)), strings.TrimSpace(x.C.rel(iv.to)), iv.n))
	}
	f.Subjects = slices.Sorted(maps.Keys(addrs))
	f.Summary = fmt.Sprintf("%d samples show an address in two namespaces (%s)", len(dups), strings.Join(f.Subjects, ", "))
	f.Details = append(f.Details, "what to do: a holder must drop an address within its lease of losing the leader (cluster/lease.go); "+
		`look in the nodes' logs for "ownership" lines around those times, and at the timeline in report.html`)
	return f
}

// checkAvailability measures each fault: the time from the fault (from
// its repair when every node was down) to the first successful REGISTER
// through the virtual IP and through the alias, and the transactions
// that failed until the next fault. It fails when a fault was not
// recovered from within Config.MaxRecovery, or no fault was injected.
func (x *Experiment) checkAvailability() (Finding, []FaultFigures) {
	f := Finding{Checker: CheckAvailability}
	faults := x.Faults()
	results := x.C.loadResults()
	if len(faults) == 0 {
		f.Summary = "no fault was injected: nothing to measure"
		f.Subjects = []string{"no fault"}
		return f, nil
	}
	var end time.Time
	var total, failed int
	for _, r := range results {
		end = latest(end, r.End)
		total += r.OK + r.Failed
		failed += r.Failed
	}
	var figures []FaultFigures
	var worst time.Duration
	for i, ft := range faults {
		fg := FaultFigures{Fault: ft, From: ft.At, Recovered: true}
		if ft.AllDown && !ft.RepairedAt.IsZero() {
			fg.From = ft.RepairedAt
		}
		until := end
		if i+1 < len(faults) {
			until = faults[i+1].At
		}
		for _, r := range results {
			ok, bad, _ := r.Between(ft.At, until)
			fg.OK, fg.Failed = fg.OK+ok, fg.Failed+bad
			line := fmt.Sprintf("%s: %d ok, %d failed", r.Name, ok, bad)
			if r.Kind == "REGISTER" {
				first, found := r.FirstOKAfter(fg.From)
				if found {
					fg.Recovery = max(fg.Recovery, first.Sub(fg.From))
					line += fmt.Sprintf(", first success %.1f s after", first.Sub(fg.From).Seconds())
				} else {
					fg.Recovered = false
					line += ", no success after it"
				}
			}
			fg.PerLoad = append(fg.PerLoad, line)
		}
		worst = max(worst, fg.Recovery)
		if !fg.Recovered || fg.Recovery > x.cfg.MaxRecovery {
			f.Subjects = append(f.Subjects, ft.Name)
		}
		figures = append(figures, fg)
	}
	lines := make([]string, 0, len(figures))
	for _, fg := range figures {
		rec := "never"
		if fg.Recovered {
			rec = fmt.Sprintf("%.1f s", fg.Recovery.Seconds())
		}
		from := "the fault"
		if !fg.From.Equal(fg.At) {
			from = "the repair"
		}
		lines = append(lines, fmt.Sprintf("%s %s: recovery %s (from %s), %d transactions failed, %d ok until the next fault [%s]",
			strings.TrimSpace(x.C.rel(fg.At)), fg.Name, rec, from, fg.Failed, fg.OK, strings.Join(fg.PerLoad, "; ")))
	}
	f.Details = lines
	avail := 100.0
	if total > 0 {
		avail = 100 * float64(total-failed) / float64(total)
	}
	facts := fmt.Sprintf("%d faults, longest recovery %.1f s (bound %s); %d of %d transactions failed (%.2f%% succeeded)",
		len(figures), worst.Seconds(), x.cfg.MaxRecovery, failed, total, avail)
	if len(f.Subjects) == 0 {
		f.OK = true
		f.Summary = facts
		return f, figures
	}
	f.Summary = fmt.Sprintf("not recovered within %s from: %s; %s", x.cfg.MaxRecovery, strings.Join(f.Subjects, ", "), facts)
	f.Details = append(f.Details, "what to do: see when REGISTERs failed in report.html (load rows) against the leader and holder rows; the node logs say why requests were refused")
	return f, figures
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
