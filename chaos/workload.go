//go:build linux

package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/sipptest"
	"github.com/troika-sip/troika/internal/tick"
)

// workload is the mixed workload of an experiment (experiment.go): phones,
// calls, top-ups, and a watch on the prepaid balances.
type workload struct {
	x *Experiment

	regLoads  []*Load      // phones-vip, phones-alias: acknowledgements logged
	callees   []*calleeRun // SIPp callees, registered through the virtual IP
	lateCalls sync.WaitGroup
	// afterFaults are call loads that start once the faults are over.
	afterFaults []CallLoad

	stop     context.CancelFunc // ends the top-ups, the balance watch and the progress lines
	ended    chan struct{}      // closed when finish returns
	bgDone   sync.WaitGroup
	stopOnce sync.Once

	mu         sync.Mutex
	callLoads  []*Load
	topups     []*topupRecord
	violations []balanceViolation
	samples    int              // balance samples taken
	lowest     map[string]int64 // the lowest balance seen per prepaid account
}

// calleeRun is a SIPp callee (sipstack/testdata/uas.xml) answering the
// calls to an account, registered from the port it answers on.
type calleeRun struct {
	Account    string
	Port       int
	Registered bool // the registrar acknowledged its REGISTER
	UAS        *SIPpRun
}

// topupRecord is one top-up the workload sent, with its idempotency key.
type topupRecord struct {
	Key      string
	Account  string
	Amount   int64 // negative: money taken back
	Attempts int
	Applied  bool   // answered 200: applied once
	Refused  string // refused (4xx): not applied
	Replayed bool   // sent again with its key after the 200, answered 200
}

// topupCycle is what the top-ups do, in turn: credits, and a debit (a
// negative top-up) of an account whose calls are running.
var topupCycle = []struct {
	account string
	amount  int64
}{
	{"caller-long", 500_000},
	{"caller-short", 500_000},
	{"caller-long", -200_000},
	{"callee1", 300_000},
	// A debit of a poor caller, whose calls compete for the same money:
	// refused (409) once it cannot pay it.
	{"caller-poor1", -50_000},
}

// balanceViolation is a prepaid account seen below zero, or holding more
// for its calls than it has.
type balanceViolation struct {
	At       time.Time
	Node     string
	Account  string
	Balance  int64
	Reserved int64
}

// startWorkload starts everything: callees, phones, callers, top-ups, the
// balance watch and the progress lines. A part that cannot start is fatal.
func (x *Experiment) startWorkload() *workload {
	w := &workload{x: x, lowest: map[string]int64{}}
	c, d := x.C, x.cfg.Duration
	ctx, cancel := context.WithCancel(x.ctx)
	w.stop = cancel
	// A run that ends before finish (a fatal failure) stops the top-ups,
	// the watch, the progress lines and the late callers before the
	// cluster goes.
	x.t.Cleanup(func() {
		w.stopOnce.Do(w.stop)
		w.bgDone.Wait()
		w.lateCalls.Wait()
	})
	uas, err := SIPpScenario("uas.xml")
	if err != nil {
		x.t.Fatalf("chaos: %v", err)
	}
	for _, acct := range []string{"callee1", "callee2"} {
		cr, err := w.startCallee(acct, uas)
		if err != nil {
			x.t.Fatalf("chaos: callee %s: %v", acct, err)
		}
		w.callees = append(w.callees, cr)
	}
	phones := phoneIDs(x.cfg.Phones)
	for _, l := range []RegisterLoad{
		{Name: "phones-vip", Target: sipAddr(x.VIP, SIPPort), Users: phones, Rate: 25, Duration: d, StatEvery: 200 * time.Millisecond, LogAcks: true},
		{Name: "phones-alias", Target: sipAddr(x.Alias, aliasExtraPort), Users: phones, Rate: 15, Duration: d, StatEvery: 200 * time.Millisecond, LogAcks: true},
	} {
		ld, err := c.StartRegisters(l)
		if err != nil {
			x.t.Fatalf("chaos: %v", err)
		}
		w.regLoads = append(w.regLoads, ld)
	}
	uac, err := SIPpScenario("uac_auth.xml")
	if err != nil {
		x.t.Fatalf("chaos: %v", err)
	}
	cut, err := SIPpScenario("uac_auth_cut.xml")
	if err != nil {
		x.t.Fatalf("chaos: %v", err)
	}
	// SIPp starts at most Parallel calls, each when one ends: the calls
	// of a load number what fits in the workload's duration.
	const shortHold, shortParallel = 3 * time.Second, 3
	const longHold, longEvery = 22 * time.Second, 6 * time.Second
	calls := []CallLoad{
		{Name: "calls-short", Target: sipAddr(x.VIP, SIPPort), Caller: "caller-short", Callee: "callee2", Scenario: uac,
			Hold: shortHold, Parallel: shortParallel, Every: time.Second, Timeout: d + time.Minute,
			Calls: max(1, int((d-shortHold-3*time.Second)*shortParallel/(shortHold+time.Second)))},
		{Name: "calls-long", Target: sipAddr(x.Alias, SIPPort), Caller: "caller-long", Callee: "callee1", Scenario: uac,
			Hold: longHold, Parallel: 4, Every: longEvery, Calls: max(1, int((d-longHold-2*time.Second)/longEvery)+1), Timeout: d + time.Minute},
	}
	for _, l := range calls {
		if _, err := w.startCalls(l); err != nil {
			x.t.Fatalf("chaos: %v", err)
		}
	}
	// The poor callers: the first from the start, the second halfway, so
	// that their money runs out before, during or after the faults. On an
	// earlier build, which reserves a call's whole length at setup (one
	// call at a time on such a balance), both start once every node runs
	// this one (startAfterFaults).
	poor := func(name, caller, callee string) CallLoad {
		return CallLoad{Name: name, Target: sipAddr(x.VIP, SIPPort), Caller: caller, Callee: callee, Scenario: cut,
			Parallel: 3, Calls: 3, Every: 200 * time.Millisecond, Timeout: d + 90*time.Second}
	}
	first, second := poor("calls-poor1", "caller-poor1", "callee1"), poor("calls-poor2", "caller-poor2", "callee2")
	if x.fromOldBuild {
		w.afterFaults = []CallLoad{first, second}
	} else {
		if _, err := w.startCalls(first); err != nil {
			x.t.Fatalf("chaos: %v", err)
		}
		w.lateCalls.Add(1)
		go func() {
			defer w.lateCalls.Done()
			select {
			case <-time.After(d / 2):
			case <-ctx.Done():
				return // the run ended early, or the workload did
			}
			if _, err := w.startCalls(second); err != nil {
				x.t.Errorf("chaos: %v", err)
			}
		}()
	}
	// A run cut short (Ctrl-C) ends every SIPp at once.
	w.ended = make(chan struct{})
	go func() {
		select {
		case <-x.ctx.Done():
			for _, ld := range w.loads() {
				ld.cancel()
			}
		case <-w.ended:
		case <-x.C.bgDone():
		}
	}()

	for _, f := range []func(context.Context){w.runTopups, w.watchBalances, w.printProgress} {
		w.bgDone.Add(1)
		go func() {
			defer w.bgDone.Done()
			f(ctx)
		}()
	}
	return w
}

// startAfterFaults starts the call loads kept for after the faults.
func (w *workload) startAfterFaults() {
	for _, l := range w.afterFaults {
		if _, err := w.startCalls(l); err != nil {
			w.x.t.Errorf("chaos: %v", err)
		}
	}
}

func (w *workload) startCalls(l CallLoad) (*Load, error) {
	if err := w.x.ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s not started: %w", l.Name, err)
	}
	ld, err := w.x.C.StartCalls(l)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.callLoads = append(w.callLoads, ld)
	w.mu.Unlock()
	return ld, nil
}

// loads returns every load of the workload.
func (w *workload) loads() []*Load {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append(append([]*Load(nil), w.regLoads...), w.callLoads...)
}

// startCallee registers account through the virtual IP from a port of the
// client namespace and starts a SIPp callee answering on it.
func (w *workload) startCallee(account, scenario string) (*calleeRun, error) {
	c := w.x.C
	cr := &calleeRun{Account: account, Port: c.localPort()}
	ctx, cancel := context.WithTimeout(w.x.ctx, 30*time.Second)
	defer cancel()
	dir := filepath.Join(c.Dir, "sipp-register-"+account)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	st, err := sipptest.Exec(ctx, dir, sipptest.Options{Target: sipAddr(w.x.VIP, SIPPort), Scenario: "reg_auth.xml",
		Inject: sipptest.APIUsers(account), LocalIP: c.Client.Addr.String(), LocalPort: cr.Port, Netns: c.Client.NS, Timeout: 20 * time.Second})
	if err != nil || st.OK != 1 {
		return nil, fmt.Errorf("REGISTER through %s: %v, %d ok\n%s", w.x.VIP, err, st.OK, st.Errors)
	}
	cr.Registered = true
	cr.UAS, err = c.Client.StartSIPp("uas-"+account, "-sf", scenario, "-i", c.Client.Addr.String(), "-p", strconv.Itoa(cr.Port), "-aa",
		"-timeout", strconv.Itoa(int((w.x.cfg.Duration+5*time.Minute)/time.Second))+"s")
	if err != nil {
		return nil, err
	}
	if err := c.Client.WaitListening(c.Client.Addr, cr.Port, 5*time.Second); err != nil {
		return nil, err
	}
	return cr, nil
}

// waitWarm waits until the phones register and a call has been answered,
// and at least warm has passed since the workload began.
func (w *workload) waitWarm(warm time.Duration) error {
	start := time.Now()
	for _, ld := range w.regLoads {
		if err := ld.WaitOK(10, warm+20*time.Second); err != nil {
			return err
		}
	}
	if left := warm - time.Since(start); left > 0 {
		return w.x.Sleep(left)
	}
	return nil
}

// runTopups sends a top-up every 700 ms until ctx ends, each with its own
// idempotency key, through any node, retried with the same key after an
// error; once answered, it is sent once more with the same key, as a
// client that lost the answer would: that must apply nothing.
func (w *workload) runTopups(ctx context.Context) {
	i := 0
	tick.Every(ctx.Done(), 700*time.Millisecond, func() {
		i++
		w.topup(ctx, i)
	})
}

// topup records and sends the i-th top-up of the cycle, then sends it
// once more with the same key if it applied.
func (w *workload) topup(ctx context.Context, i int) {
	p := topupCycle[i%len(topupCycle)]
	rec := &topupRecord{Key: fmt.Sprintf("chaos-%s-%04d", w.x.C.ID, i), Account: p.account, Amount: p.amount}
	w.mu.Lock()
	w.topups = append(w.topups, rec)
	w.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	w.sendTopup(sctx, rec)
	if w.applied(rec) {
		w.replayTopup(sctx, rec)
	}
}

func (w *workload) applied(rec *topupRecord) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return rec.Applied
}

// sendTopup sends rec until it is answered: applied (200) or refused
// (4xx). On an error (no answer, 5xx) it stays pending: sent again later
// with the same key.
func (w *workload) sendTopup(ctx context.Context, rec *topupRecord) {
	err := w.x.onAnyNode(ctx, func(ctx context.Context, n *Node) error {
		w.mu.Lock()
		rec.Attempts++
		w.mu.Unlock()
		_, err := n.Admin().Topup(ctx, rec.Account, admin.TopupRequest{Amount: billing.FormatMoney(rec.Amount), Key: rec.Key, Note: "chaos workload"})
		return permanentAPIError(err)
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	var ae *admin.APIError
	switch {
	case err == nil:
		rec.Applied = true
	case errors.As(err, &ae) && ae.Status/100 == 4:
		rec.Refused = err.Error()
	}
}

// replayTopup sends an applied top-up again with its key.
func (w *workload) replayTopup(ctx context.Context, rec *topupRecord) {
	err := w.x.onAnyNode(ctx, func(ctx context.Context, n *Node) error {
		_, err := n.Admin().Topup(ctx, rec.Account, admin.TopupRequest{Amount: billing.FormatMoney(rec.Amount), Key: rec.Key, Note: "chaos workload (sent again)"})
		return permanentAPIError(err)
	})
	if err == nil {
		w.mu.Lock()
		rec.Replayed = true
		w.mu.Unlock()
	}
}

// pendingTopups returns the top-ups neither applied nor refused yet.
func (w *workload) pendingTopups() []*topupRecord {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*topupRecord
	for _, r := range w.topups {
		if !r.Applied && r.Refused == "" {
			out = append(out, r)
		}
	}
	return out
}

// watchBalances reads every account from a node every second until ctx
// ends and records any prepaid account below zero, or holding more for
// its calls than it has.
func (w *workload) watchBalances(ctx context.Context) {
	turn := 0
	tick.Every(ctx.Done(), time.Second, func() {
		for range w.x.C.Nodes {
			n := w.x.C.Nodes[turn%len(w.x.C.Nodes)]
			turn++
			if n.Running() && !n.Paused() {
				w.sampleBalances(ctx, n)
				return
			}
		}
	})
}

// sampleBalances reads every account from n and records the lowest
// prepaid balances and any below zero or holding more than it has.
func (w *workload) sampleBalances(ctx context.Context, n *Node) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	accts, err := accountsOn(rctx, n)
	cancel()
	if err != nil {
		return // a node cut off or restarting: the next sample is another's
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples++
	for _, a := range accts {
		if a.Billing != fsm.Prepaid {
			continue
		}
		bal, err1 := billing.ParseMoney(a.Balance)
		held, err2 := billing.ParseMoney(a.Reserved)
		if err1 != nil || err2 != nil {
			continue
		}
		if low, ok := w.lowest[a.ID]; !ok || bal < low {
			w.lowest[a.ID] = bal
		}
		if bal < 0 || bal-held < 0 {
			w.violations = append(w.violations, balanceViolation{At: now, Node: n.Name, Account: a.ID, Balance: bal, Reserved: held})
		}
	}
}

// printProgress prints a line every 5 s: the loads' counters, the
// top-ups, the leader and the address holders.
func (w *workload) printProgress(ctx context.Context) {
	tick.Every(ctx.Done(), 5*time.Second, func() { w.x.Logf("%s", w.progressLine()) })
}

func (w *workload) progressLine() string {
	var regOK, regFailed, callOK, callFailed, up int
	for _, ld := range w.loads() {
		st, err := sipptest.ReadStats(filepath.Join(ld.Dir, "stat.csv"))
		if err != nil {
			continue
		}
		if ld.Kind == "REGISTER" {
			regOK, regFailed = regOK+st.OK, regFailed+st.Failed
			continue
		}
		callOK, callFailed = callOK+st.OK, callFailed+st.Failed
		if len(st.Periods) > 0 {
			up += st.Periods[len(st.Periods)-1].Current
		}
	}
	w.mu.Lock()
	applied, pending := 0, 0
	for _, r := range w.topups {
		switch {
		case r.Applied:
			applied++
		case r.Refused == "":
			pending++
		}
	}
	w.mu.Unlock()
	leader := "none"
	if tl := w.x.C.LeaderTimeline(); len(tl) > 0 && tl[len(tl)-1].Leader != "" {
		leader = tl[len(tl)-1].Leader
	}
	return fmt.Sprintf("workload %+3.0fs: REGISTER %d ok, %d failed; calls %d ok, %d failed, %d up; top-ups %d applied, %d pending; leader %s; %s on %s, %s on %s",
		time.Since(w.x.C.started).Seconds(), regOK, regFailed, callOK, callFailed, up, applied, pending, leader,
		w.x.VIP, holdersText(w.x.C.Holders(w.x.VIP)), w.x.Alias, holdersText(w.x.C.Holders(w.x.Alias)))
}

func holdersText(h []string) string {
	if len(h) == 0 {
		return "nobody"
	}
	return strings.Join(h, "+")
}

// finish ends the workload: it waits for the loads, every top-up's
// answer and the end of every call, then stops the callees and the
// watchers.
func (w *workload) finish() error {
	defer close(w.ended)
	var errs []error
	for _, ld := range w.regLoads {
		ld.Wait()
	}
	w.lateCalls.Wait()
	for _, ld := range w.loads() {
		if ld.Kind == "call" {
			ld.Wait()
		}
	}
	w.x.Logf("the loads ended; %s", w.progressLine())
	w.stopOnce.Do(w.stop)
	w.bgDone.Wait()

	// Every top-up answered: sent again with its key until it is.
	if err := w.x.ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(w.x.ctx, 45*time.Second)
	defer cancel()
	for _, rec := range w.pendingTopups() {
		w.sendTopup(ctx, rec)
	}
	if p := w.pendingTopups(); len(p) > 0 {
		errs = append(errs, fmt.Errorf("%d top-ups still unanswered after 45 s (first: %s)", len(p), p[0].Key))
	} else {
		w.x.Logf("every top-up answered")
	}

	// Every call ended: a call whose caller gave up is cut at
	// billing.max_call_duration (1 minute) at the latest.
	if err := w.waitCallsEnded(90 * time.Second); err != nil {
		errs = append(errs, err)
	}
	for _, cr := range w.callees {
		cr.UAS.Wait(0)
	}
	return errors.Join(errs...)
}

// waitCallsEnded waits until no node lists a call in progress.
func (w *workload) waitCallsEnded(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for {
		var up []string
		ids := map[string]bool{}
		for _, n := range w.x.C.Nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			calls, err := n.Admin().Calls(ctx, "")
			cancel()
			if err != nil {
				up = append(up, fmt.Sprintf("%s: %v", n.Name, err))
				continue
			}
			for _, cl := range calls {
				ids[cl.ID] = true
				up = append(up, fmt.Sprintf("%s lists %s's call %s (on %s)", n.Name, cl.Account, cl.ID, cl.Node))
			}
		}
		if len(up) == 0 {
			w.x.Logf("no call in progress on any node")
			return nil
		}
		if err := w.x.ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("calls still in progress %s after the loads ended: %s", timeout, strings.Join(up[:min(len(up), 5)], "; "))
		}
		if time.Since(lastLog) > 10*time.Second {
			w.x.Logf("waiting for %d calls to end (the switch cuts a call whose caller gave up at max_call_duration, 1 minute): %s",
				len(ids), strings.Join(slices.Sorted(maps.Keys(ids)), ", "))
			lastLog = time.Now()
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// section describes the workload for the report.
func (w *workload) section() ReportSection {
	s := ReportSection{Title: "Workload"}
	s.Lines = append(s.Lines, fmt.Sprintf("%d phones (ph0000...) registering (Expires 3600) through %s and %s, each user again every cycle of its load",
		w.x.cfg.Phones, sipAddr(w.x.VIP, SIPPort), sipAddr(w.x.Alias, aliasExtraPort)))
	for _, cr := range w.callees {
		s.Lines = append(s.Lines, fmt.Sprintf("callee %s: SIPp answering on %s, registered through %s", cr.Account, sipAddr(w.x.C.Client.Addr, cr.Port), w.x.VIP))
	}
	for _, a := range moneyAccounts {
		s.Lines = append(s.Lines, fmt.Sprintf("account %-13s prepaid, opening balance %s: %s", a.ID, billing.FormatMoney(a.Balance), a.Role))
	}
	s.Lines = append(s.Lines, "billing: 0.60 a minute for callers, 0.06 for callees, by the second; calls reserve 10 s at a time (billing.reserve_chunk), last at most 1 minute")
	w.mu.Lock()
	defer w.mu.Unlock()
	var applied, refused, replayed, attempts int
	for _, r := range w.topups {
		attempts += r.Attempts
		switch {
		case r.Applied:
			applied++
		case r.Refused != "":
			refused++
		}
		if r.Replayed {
			replayed++
		}
	}
	s.Lines = append(s.Lines, fmt.Sprintf("top-ups: %d sent (%d attempts with their idempotency keys), %d applied, %d refused, %d sent again after their answer",
		len(w.topups), attempts, applied, refused, replayed))
	return s
}
