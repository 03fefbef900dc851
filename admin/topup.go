// Top-ups: POST /v1/accounts/{id}/topup, money added to or taken from an
// account, idempotent by key, audited.

package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
)

// TopupRequest is the body of POST /v1/accounts/{id}/topup.
//
// Send a Key: a top-up whose answer was lost (timeout, 503, leader change)
// can then be sent again with the same key and is applied at most once.
// Without one the server makes one up, which protects nothing if the
// answer never arrives. Keys are scoped to the account and remembered for
// the cluster's [billing] idempotency_window (7 days by default).
type TopupRequest struct {
	Amount string `json:"amount"`        // decimal, e.g. "5.00"; negative takes money back
	Key    string `json:"key,omitempty"` // idempotency key: 1-128 visible ASCII characters
	Note   string `json:"note,omitempty"`
}

// TopupResult is the answer to a top-up: the account as it now stands,
// and the top-up as it was recorded.
type TopupResult struct {
	Account
	Topup TopupReceipt `json:"topup"`
}

// TopupReceipt says what was applied and under which idempotency key.
type TopupReceipt struct {
	Amount string `json:"amount"`
	Key    string `json:"key"`
	// KeyGenerated is true when the request had no key and the server
	// chose this one: send it with a retry of the same top-up.
	KeyGenerated bool   `json:"key_generated"`
	Note         string `json:"note,omitempty"`
}

func (s *Server) topup(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var in TopupRequest
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.Amount == "" {
		return badRequest("amount", `is required: a decimal such as "5.00" (negative to take money back)`)
	}
	amount, err := money("amount", in.Amount, 0)
	if err != nil {
		return invalid(err)
	}
	if amount == 0 {
		return badRequest("amount", "must not be zero")
	}
	if in.Key != "" && (len(in.Key) > maxTopupKey || !visibleASCII(in.Key)) {
		return badRequest("key", "must be 1-%d visible ASCII characters (no spaces or control characters)", maxTopupKey)
	}
	if len(in.Note) > maxTopupNote || !printableText(in.Note) {
		return badRequest("note", "must be at most %d bytes of printable text", maxTopupNote)
	}
	if !fsm.ValidID(id) {
		return notFound("account", id)
	}
	generated := false
	if in.Key == "" {
		in.Key, generated = "auto-"+randomHex(16), true
	}
	before, _ := s.state.Account(id)
	res, err := s.propose(r, &fsm.Topup{Account: id, Amount: amount, Key: topupKey(id, in.Key), Now: s.now(), Note: in.Note})
	if res.Err != nil && res.Err.Code == fsm.CodeInsufficientFunds {
		a, _ := s.state.Account(id)
		held := s.state.Reserved(id)
		if a.Billing == fsm.Postpaid {
			msg := fmt.Sprintf("taking %s from postpaid account %s (balance %s, credit limit %s, held by calls %s) would take it past its credit limit: "+
				"take at most %s, or raise credit_limit first", billing.FormatMoney(-amount), id, billing.FormatMoney(a.Balance),
				billing.FormatMoney(a.CreditLimit), billing.FormatMoney(held), billing.FormatMoney(max(a.Balance+a.CreditLimit-held, 0)))
			return &httpError{status: http.StatusConflict, body: Error{Field: "amount", Error: "amount: " + msg}}
		}
		msg := fmt.Sprintf("taking %s from prepaid account %s (balance %s) would leave %s", billing.FormatMoney(-amount), id,
			billing.FormatMoney(a.Balance), billing.FormatMoney(a.Balance+amount))
		if held > 0 {
			msg += fmt.Sprintf(", less than the %s its calls in progress hold: take at most %s, or wait for the calls to end",
				billing.FormatMoney(held), billing.FormatMoney(max(a.Balance-held, 0)))
		} else {
			msg += fmt.Sprintf(": a prepaid balance cannot go negative (take at most %s)", billing.FormatMoney(max(a.Balance, 0)))
		}
		return &httpError{status: http.StatusConflict, body: Error{Field: "amount", Error: "amount: " + msg}}
	}
	if err != nil {
		return err
	}
	if res.Account == nil { // the key was used before and the account is gone since
		return notFound("account", id)
	}
	s.cfg.Logger.Info("audit: balance adjusted", "account", id, "amount", billing.FormatMoney(amount), "key", in.Key,
		"note", in.Note, "balance_before", billing.FormatMoney(before.Balance), "balance_after", billing.FormatMoney(res.Account.Balance),
		"token", TokenName(r.Context()), "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, TopupResult{
		Account: s.accountView(*res.Account),
		Topup:   TopupReceipt{Amount: billing.FormatMoney(amount), Key: in.Key, KeyGenerated: generated, Note: in.Note},
	})
	return nil
}

// topupKey is the idempotency key the state records for a top-up: the
// client's key scoped to the account, so two accounts' top-ups that happen
// to share a key (an invoice number, say) are both applied, and hashed to a
// fixed length.
func topupKey(account, key string) string {
	sum := sha256.Sum256([]byte(account + "\x00" + key))
	return "topup:" + hex.EncodeToString(sum[:])
}
