package transport

import (
	"context"
	"errors"

	"github.com/emiago/sipgo/sip"
)

// FinalResponse waits for the final response of tx, a non-INVITE client
// transaction, skipping provisional ones. Without one it says why: tx's
// error (a timeout, sip.ErrTransactionTransport, ...) or ctx's.
func FinalResponse(ctx context.Context, tx sip.ClientTransaction) (*sip.Response, error) {
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return nil, err
			}
			return nil, errNoFinalResponse
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

var errNoFinalResponse = errors.New("transaction ended without a final response")
