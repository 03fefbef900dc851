package admin

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/troika-sip/troika/billing"
)

// accountDeleteGuard refuses to delete an account that holds money,
// registered phones or calls in progress unless ?force=true: deleting it
// would lose the money or cut the phones off without a word. What it held
// is logged with the deletion.
func accountDeleteGuard(s *Server, id string, r *http.Request) ([]any, error) {
	a, ok := s.state.Account(id)
	if !ok {
		return nil, notFound("account", id)
	}
	bindings := len(s.state.Bindings(id, s.cfg.Now().UnixMilli()))
	calls := 0
	for _, c := range s.state.Calls() {
		for _, p := range c.Parties {
			if p == id {
				calls++
				break
			}
		}
	}
	var held []string
	if a.Balance != 0 {
		held = append(held, "a balance of "+billing.FormatMoney(a.Balance))
	}
	if bindings > 0 {
		held = append(held, fmt.Sprintf("%d registered contact(s)", bindings))
	}
	if calls > 0 {
		held = append(held, fmt.Sprintf("%d call(s) in progress", calls))
	}
	if len(held) > 0 && r.URL.Query().Get("force") != "true" {
		return nil, &httpError{status: http.StatusConflict, body: Error{Error: fmt.Sprintf(
			"account %s holds %s: settle or move it first, or delete with ?force=true (troika account delete --force), which loses it",
			id, strings.Join(held, ", "))}}
	}
	return []any{"account", id, "balance", billing.FormatMoney(a.Balance), "bindings", bindings, "calls", calls,
		"forced", len(held) > 0}, nil
}
