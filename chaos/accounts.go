//go:build linux

package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/internal/sipptest"
)

// The experiment's accounts. Money is in micro-units, as everywhere.
const (
	tariffOut = "chaos-out" // callers pay 0.60 a minute, by the second: 0.01 a second
	tariffIn  = "chaos-in"  // callees pay 0.06 a minute, by the second

	perSecondOut = 10_000 // 0.01
)

// moneyAccount is an account of the call workload.
type moneyAccount struct {
	ID        string
	Balance   int64
	TariffOut string
	TariffIn  string
	Role      string // for the report
}

// moneyAccounts: callers with several calls at once on one balance each,
// and the callees that answer them (also charged, by the incoming tariff).
// The poor callers' 0.60 buys 60 s of calls: three calls at once, a chunk
// (10 s) at a time, all cut when it runs out.
var moneyAccounts = []moneyAccount{
	{ID: "caller-long", Balance: 20_000_000, TariffOut: tariffOut, Role: "long calls, 22 s each: two extensions"},
	{ID: "caller-short", Balance: 20_000_000, TariffOut: tariffOut, Role: "short calls, 3 s each"},
	{ID: "caller-poor1", Balance: 60 * perSecondOut, TariffOut: tariffOut, Role: "3 calls at once on 0.60, and debits of 0.05: cut at zero balance"},
	{ID: "caller-poor2", Balance: 60 * perSecondOut, TariffOut: tariffOut, Role: "3 calls at once on 0.60 from mid-run: cut at zero balance"},
	{ID: "callee1", Balance: 10_000_000, TariffIn: tariffIn, Role: "answers caller-long and caller-poor1"},
	{ID: "callee2", Balance: 10_000_000, TariffIn: tariffIn, Role: "answers caller-short and caller-poor2"},
}

// phoneIDs are the phones' accounts: ph0000, ph0001...
func phoneIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("ph%04d", i)
	}
	return ids
}

// createAccounts creates the tariffs, the call workload's accounts (their
// balances are the bank checker's starting point) and the phones'
// (balance 0), retrying through another node: a create retried after a
// lost answer finds the account there, so a 409 is success then.
func (x *Experiment) createAccounts(ctx context.Context) error {
	for _, tr := range []admin.Tariff{
		{ID: tariffOut, Currency: "USD", Rates: []admin.Rate{{Prefix: "", PerMinute: billing.FormatMoney(60 * perSecondOut), FirstInterval: 1, NextInterval: 1}}},
		{ID: tariffIn, Currency: "USD", Rates: []admin.Rate{{Prefix: "", PerMinute: "0.06", FirstInterval: 1, NextInterval: 1}}},
	} {
		err := x.onAnyNode(ctx, func(ctx context.Context, n *Node) error {
			_, err := n.Admin().PutTariff(ctx, tr)
			return permanentAPIError(err)
		})
		if err != nil {
			return fmt.Errorf("tariff %s: %w", tr.ID, err)
		}
	}
	for _, a := range moneyAccounts {
		acct := admin.Account{ID: a.ID, Password: sipptest.APIPassword(a.ID), Billing: "prepaid", Balance: billing.FormatMoney(a.Balance),
			TariffOut: a.TariffOut, TariffIn: a.TariffIn}
		err := x.onAnyNode(ctx, func(ctx context.Context, n *Node) error {
			_, err := n.Admin().CreateAccount(ctx, acct)
			return permanentAPIError(existsIsDone(err))
		})
		if err != nil {
			return fmt.Errorf("account %s: %w", a.ID, err)
		}
	}
	phones := phoneIDs(x.cfg.Phones)
	accounts := make([]admin.Account, len(phones))
	for i, id := range phones {
		accounts[i] = admin.Account{ID: id, Password: sipptest.APIPassword(id)}
	}
	err := x.onAnyNode(ctx, func(ctx context.Context, n *Node) error {
		return permanentAPIError(existsIsDone(n.Admin().ImportAccounts(ctx, accounts)))
	})
	if err != nil {
		return fmt.Errorf("importing %d phone accounts: %w", len(phones), err)
	}
	x.Logf("created the tariffs, %d call accounts and %d phone accounts", len(moneyAccounts), len(phones))
	return nil
}

// existsIsDone turns a 409 (the account exists: an earlier attempt whose
// answer was lost created it) into success.
func existsIsDone(err error) error {
	var ae *admin.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return nil
	}
	return err
}

// accountsOn reads every account from node n.
func accountsOn(ctx context.Context, n *Node) (map[string]admin.Account, error) {
	as, err := n.Admin().Accounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: GET /v1/accounts: %w", n.Name, err)
	}
	out := make(map[string]admin.Account, len(as))
	for _, a := range as {
		out[a.ID] = a
	}
	return out, nil
}

// xdrsOn reads every xDR from node n, page by page.
func xdrsOn(ctx context.Context, n *Node) ([]admin.XDR, error) {
	var out []admin.XDR
	var after uint64
	for {
		page, err := n.Admin().XDRs(ctx, admin.XDRQuery{After: after, Limit: 10000})
		if err != nil {
			return nil, fmt.Errorf("%s: GET /v1/xdrs: %w", n.Name, err)
		}
		out = append(out, page...)
		if len(page) < 10000 {
			return out, nil
		}
		after = page[len(page)-1].ID
	}
}
