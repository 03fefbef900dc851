package b2bua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/auth"
	"github.com/troika-sip/troika/sipstack/sipmsg"
)

// Calls from vendors via SIP (docs/ARCHITECTURE.md).
//
// An INVITE is a vendor's when AuthorizeInvite (sipstack/auth) finds its
// connection by source address or by digest user name. Its numbers are
// then translated by the connection's rules (billing.ParseRules, parsed
// once per rule text and cached): the Request-URI user by translation.cld,
// the From user by translation.cli. The call is then:
//   - refused with 404 Not Found when the translated called number is not
//     one of the switch's accounts (the vendor routes traffic that is not
//     ours: a configuration error on its side);
//   - refused with 500 Translation Failed when a rule cannot be applied: a
//     rule that timed out (billing.ErrRuleTimeout: a hostile pattern such
//     as `(a+)+$` costs the call, never the node), a rule set the engine
//     no longer accepts, or a result over billing.MaxNumberLength. That
//     is the switch's own problem for that call, hence a 5xx the vendor
//     may route around;
//   - otherwise delivered like any incoming call of that account (the
//     same deliveryTargets, call.run), charged to the RECEIVING account by
//     its incoming tariff, with the vendor's cost computed by the fsm from
//     the connection's tariff (StartCall.VendorTariff, xDR VendorCost).
//
// Each refusal is logged with its reason, counted
// (troika_vendor_calls_total{result}), and recorded as an xDR of the
// refused attempt with no charge: StartCall with no charges (direction
// from-vendor, account "", since no account is involved and vendor ids
// share no namespace with account ids; vendor and connection set; the
// dialed and translated numbers), then EndCall with the SIP cause and a
// CauseText saying why.
//
// On the callee leg the translated called number is the To user (and, for
// static delivery, the Request-URI user; a registered phone is called at
// its Contact as usual), the translated calling number the From user. The
// numbers as the vendor sent them appear only in the xDR (CLD) and logs.

// Outcomes of INVITEs from vendors: the result label of
// troika_vendor_calls_total.
const (
	VendorAccepted    = "accepted"     // StartCall accepted: delivered to the account
	VendorNotAccount  = "not_account"  // 404: the translated number is no account (or the dialed one is unusable)
	VendorRuleTimeout = "rule_timeout" // 500: a translation rule ran out of time
	VendorRuleError   = "rule_error"   // 500: a rule set that does not parse now, an engine error, an over-long result
	VendorRefused     = "refused"      // StartCall refused (402, 403, 404, 486) or a Call-ID in use (482)
	VendorUnavailable = "unavailable"  // 503: the node is full or StartCall could not be written
	VendorAuthFailed  = "auth_failed"  // 403: a vendor user name with a wrong password
)

var vendorResults = []string{VendorAccepted, VendorNotAccount, VendorRuleTimeout, VendorRuleError, VendorRefused,
	VendorUnavailable, VendorAuthFailed}

// anonymousCLI is the calling number presented when a vendor's is missing
// or unusable.
const anonymousCLI = "anonymous"

// Replies refusing vendor calls.
var (
	vendorNotFound          = sipmsg.Reply{Code: sip.StatusNotFound, Reason: "Not Found"}
	vendorTranslationFailed = sipmsg.Reply{Code: sip.StatusInternalServerError, Reason: "Translation Failed"}
)

// vendorRoute is what a call from a vendor carries besides its
// destination.
type vendorRoute struct {
	conn   fsm.Connection
	vendor fsm.Vendor
	by     string // authVendorIP or authVendorUser
	dialed string // the called number as the vendor sent it (sanitized)
	cli    string // the calling number after translation (anonymousCLI when none)
}

// vendorDestination translates a vendor INVITE's numbers and finds the
// account called. A refusal is logged, counted and recorded (an xDR
// without charge) before it is returned.
func (b *B2BUA) vendorDestination(p auth.Principal, req *sip.Request) (destination, *sipmsg.Reply) {
	now := b.cfg.Now()
	cn := p.Conn
	raw := req.Recipient.User
	vr := &vendorRoute{conn: *cn, vendor: p.Vendor, by: p.By, dialed: sipmsg.CleanText(raw, billing.MaxNumberLength)}
	log := b.log.With("call_id", req.CallID().Value(), "vendor", p.Vendor.ID, "connection", cn.ID, "by", p.By,
		"dialed", vr.dialed)
	refuse := func(r sipmsg.Reply, result, translated, why string, level slog.Level) (destination, *sipmsg.Reply) {
		log.Log(context.Background(), level, "call from vendor refused", "code", r.Code, "result", result,
			"translated", translated, "reason", why)
		b.m.vendorCall(result)
		b.recordRefusedVendorCall(req, vr, translated, r.Code, why, now, log)
		return destination{}, &r
	}

	from := req.From()
	cliIn := ""
	if from != nil {
		cliIn = from.Address.User
	}
	vr.cli = anonymousCLI
	if usableNumber(cliIn, billing.MaxNumberLength) {
		cli, result, err := b.rules.translate(cn.TranslationCLI, cliIn)
		if err != nil {
			return refuse(vendorTranslationFailed, result, "", "CLI translation failed: "+err.Error(), slog.LevelWarn)
		}
		if usableNumber(cli, 64) {
			vr.cli = cli
		}
	}
	if !usableNumber(raw, billing.MaxNumberLength) {
		return refuse(vendorNotFound, VendorNotAccount, "", "the dialed number is empty, too long or malformed", slog.LevelInfo)
	}
	cld, result, err := b.rules.translate(cn.TranslationCLD, raw)
	if err != nil {
		return refuse(vendorTranslationFailed, result, "", "CLD translation failed: "+err.Error(), slog.LevelWarn)
	}
	if !fsm.ValidID(cld) {
		return refuse(vendorNotFound, VendorNotAccount, sipmsg.CleanText(cld, billing.MaxNumberLength),
			"the translated number is not an account id", slog.LevelInfo)
	}
	acct, ok := b.state.Account(cld)
	if !ok {
		return refuse(vendorNotFound, VendorNotAccount, cld, "the translated number is not an account", slog.LevelInfo)
	}
	return destination{cld: cld, callee: acct, vendor: vr}, nil
}

// usableNumber reports whether s may be translated and sent on: 1 to max
// bytes of letters, digits and + - . _ * ! (what a SIP URI user carries
// unescaped and a number plan uses).
func usableNumber(s string, max int) bool {
	return len(s) <= max && sipmsg.AlnumOr(s, "+-._*!")
}

// translate applies the rule set src to number; on failure it also
// returns the vendor result it counts as.
func (c *rulesCache) translate(src, number string) (string, string, error) {
	rules, err := c.get(src)
	if err != nil {
		return "", VendorRuleError, err
	}
	out, err := rules.Apply(number)
	switch {
	case errors.Is(err, billing.ErrRuleTimeout):
		return "", VendorRuleTimeout, err
	case err != nil:
		return "", VendorRuleError, err
	}
	return out, "", nil
}

// rulesCache keeps parsed rule sets by their text. Parsing is a pure
// function of the text, so connections with the same rules share one
// entry and an edited connection simply uses another; the cache is
// emptied when it reaches maxCachedRuleSets (rule sets change rarely).
// billing.Rules is safe for concurrent use (regexp2 runners are pooled).
type rulesCache struct {
	mu sync.Mutex
	m  map[string]*billing.Rules
}

const maxCachedRuleSets = 1024

func (c *rulesCache) get(src string) (*billing.Rules, error) {
	c.mu.Lock()
	r, ok := c.m[src]
	c.mu.Unlock()
	if ok {
		return r, nil
	}
	r, err := billing.ParseRules(src)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) >= maxCachedRuleSets {
		clear(c.m)
	}
	c.m[src] = r
	c.mu.Unlock()
	return r, nil
}

// recordRefusedVendorCall files the xDR of a refused vendor call: a
// StartCall without charges and its EndCall with the refusal's cause.
// Nothing is recorded when the Call-ID already names a call or an xDR (a
// retransmitted INVITE, or another call's Call-ID: never end that one).
func (b *B2BUA) recordRefusedVendorCall(req *sip.Request, vr *vendorRoute, translated string, code int, why string,
	now time.Time, log *slog.Logger) {
	callID := req.CallID().Value()
	if _, busy := b.state.Call(callID); busy {
		return
	}
	if _, done := b.state.XDRForCall(callID); done {
		return
	}
	cmd := &fsm.StartCall{ID: callID, Direction: fsm.DirFromVendor, CLI: vr.cli, CLD: vr.dialed, CLDTranslated: translated,
		MaxSeconds: b.cfg.Calls.MaxCallSeconds, Now: now.UnixMilli(), Node: b.cfg.NodeID,
		Vendor: vr.vendor.ID, Connection: vr.conn.ID}
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.Calls.ProposeTimeout)
	res, err := b.store.Propose(ctx, b.startCommand(cmd))
	cancel()
	switch {
	case err != nil:
		// It may have been applied all the same: end it (EndCall of an
		// unknown call is a harmless refusal).
		log.Warn("refused vendor call: StartCall of its record not written", "error", err)
	case res.Err != nil:
		log.Debug("refused vendor call not recorded", "error", res.Err)
		return
	case res.Call == nil || res.Call.SetupAt != cmd.Now || res.Call.Node != cmd.Node || len(res.Call.Charges) != 0:
		return // another call's
	}
	text := fmt.Sprintf("%s: %s", statusText(code), why)
	res, err = b.proposeCall("end", &fsm.EndCall{ID: callID, DisconnectAt: now.UnixMilli(), Cause: code,
		CauseText: sipmsg.CleanText(text, 256), DisconnectedBy: BySystem})
	switch {
	case err != nil:
		log.Error("refused vendor call: its EndCall could not be written; the record stays open", "error", err)
	case res.Err != nil:
		log.Debug("refused vendor call: EndCall refused", "error", res.Err)
	}
}

// vendorStartCall is the StartCall of an accepted vendor call: filed
// under the receiving account, which alone is charged (by its incoming
// tariff, for the translated number); the vendor's cost is rated by the
// connection's tariff.
func vendorStartCall(callID string, dest destination, maxSeconds int, now int64, node string) *fsm.StartCall {
	vr := dest.vendor
	return &fsm.StartCall{
		ID: callID, Direction: fsm.DirFromVendor, Account: dest.callee.ID, CLI: vr.cli, CLD: vr.dialed, CLDTranslated: dest.cld,
		Charges:    []fsm.ChargeRequest{{Account: dest.callee.ID, Role: fsm.RoleIncoming, Number: dest.cld}},
		MaxSeconds: maxSeconds, Now: now, Node: node,
		Vendor: vr.vendor.ID, Connection: vr.conn.ID, VendorTariff: vr.conn.Tariff,
	}
}

// vendorRefusal maps a StartCall refusal of a vendor call: its only
// charge (charges[0]) is the called account's, so that account's
// max_calls is 486 Busy Here; the rest as for customers (a vendor tariff
// without a rate for the number, like an incoming tariff without one, is
// 403 Destination Not Allowed).
func vendorRefusal(e *fsm.Error) sipmsg.Reply {
	if e.Code == fsm.CodeTooManyCalls {
		return sipmsg.Reply{Code: sip.StatusBusyHere, Reason: "Busy Here"}
	}
	return refusal(e)
}
