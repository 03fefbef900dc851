package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/billing"
)

// topupCmd is `troika account topup ID AMOUNT`.
func topupCmd(api *apiFlags) *cobra.Command {
	var key, note string
	cmd := &cobra.Command{
		Use:   "topup ID AMOUNT",
		Short: "Add money to an account's balance (a negative AMOUNT takes it back)",
		Long: `Add AMOUNT (a decimal such as 5.00) to an account's balance, as a recorded,
idempotent transaction. A negative amount takes money back: write it after -- and put flags before
that (troika account topup --key K 1001 -- -5.00). A prepaid balance cannot go
below what the account's calls in progress hold.

Every top-up carries an idempotency key: --key, or one this command makes up
and prints. If the command fails without a clear answer (timeout, node or
leader down), run it again with the same --key: a key is applied at most once
per account (within the cluster's [billing] idempotency_window, 7 days by
default). Use your own reference, such as an invoice number, as the key.`,
		Example: `  troika account topup 1001 5.00 --key inv-2026-0042 --note "bank transfer"
  troika account topup --key refund-17 1001 -- -1.50`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, amount := args[0], args[1]
			if _, err := billing.ParseMoney(amount); err != nil {
				return fmt.Errorf("AMOUNT: %w", err)
			}
			if key == "" {
				b := make([]byte, 12)
				rand.Read(b)
				key = "cli-" + hex.EncodeToString(b)
			}
			res, err := api.client().Topup(cmd.Context(), id, admin.TopupRequest{Amount: amount, Key: key, Note: note})
			if err != nil {
				var ae *admin.APIError
				if errors.As(err, &ae) && ae.Status/100 == 4 {
					return err // refused: nothing was applied
				}
				return fmt.Errorf("%w\nthe top-up may or may not have been applied: run the same command with --key %s to finish it safely (a key is applied at most once)", err, key)
			}
			if err := accountTable.show(api, res, res.Account); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "top-up of %s to %s recorded under key %s\n", res.Topup.Amount, res.ID, res.Topup.Key)
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "idempotency key (1-128 visible ASCII characters); default: a new random one, printed")
	cmd.Flags().StringVar(&note, "note", "", "a note recorded with the top-up")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (for a negative amount write: troika account topup [flags] ID -- -5.00)", err)
	})
	return cmd
}

func callCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "call", Short: "Show calls in progress; hang one up"}
	cmd.AddCommand(listByAccount(api, "List calls in progress", "only calls this account takes part in",
		table[admin.Call]{
			header: []string{"ID", "DIRECTION", "ACCOUNT", "CLI", "CLD", "STATE", "DURATION", "MAX", "RESERVED", "NODE"},
			row: func(add func(...any), c admin.Call) {
				state := "setup"
				if c.ConnectAt != nil {
					state = "answered"
				}
				add(c.ID, c.Direction, c.Account, dash(c.CLI), dash(c.CLD), state, seconds(c.Duration), seconds(c.MaxDuration), reservedTotal(c), c.Node)
			},
		}, (*admin.Client).Calls), callHangupCmd(api))
	return cmd
}

// reservedTotal is the money all of a call's charges hold.
func reservedTotal(c admin.Call) string {
	var sum int64
	for _, ch := range c.Charges {
		v, err := billing.ParseMoney(ch.Reserved)
		if err != nil {
			return "?"
		}
		sum += v
	}
	return billing.FormatMoney(sum)
}

func seconds(s int) string { return (time.Duration(s) * time.Second).String() }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// xdrQueryFlags are the filters shared by `xdr list` and `xdr export`.
type xdrQueryFlags struct {
	account, since string
	after          uint64
	limit          int
}

func (f *xdrQueryFlags) add(cmd *cobra.Command, limitHelp string) {
	fl := cmd.Flags()
	fl.StringVar(&f.account, "account", "", "only xDRs filed under or charging this account")
	fl.StringVar(&f.since, "since", "", "only calls that ended at or after this time (RFC 3339, e.g. 2026-01-01T00:00:00Z, or a date)")
	fl.Uint64Var(&f.after, "after", 0, "only xDRs with a higher id (for incremental exports: the last id you have)")
	fl.IntVar(&f.limit, "limit", 0, limitHelp)
}

func (f *xdrQueryFlags) query() (admin.XDRQuery, error) {
	q := admin.XDRQuery{Account: f.account, After: f.after, Limit: f.limit}
	if f.limit < 0 {
		return q, errors.New("--limit: must be positive")
	}
	if f.since != "" {
		t, err := time.Parse(time.RFC3339Nano, f.since)
		if err != nil {
			if t, err = time.Parse(time.DateOnly, f.since); err != nil {
				return q, fmt.Errorf("--since %q: use an RFC 3339 time such as 2026-01-01T00:00:00Z, or a date such as 2026-01-01", f.since)
			}
		}
		q.Since = t
	}
	return q, nil
}

func xdrCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "xdr", Short: "Read and export xDRs (call detail records)"}

	var lf xdrQueryFlags
	list := &cobra.Command{
		Use: "list", Short: "List xDRs, oldest first (one page: see --after and --limit)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := lf.query()
			if err != nil {
				return err
			}
			out, err := api.client().XDRs(cmd.Context(), q)
			if err != nil {
				return err
			}
			err = show(api, out, []string{"ID", "DISCONNECT_AT", "ACCOUNT", "DIRECTION", "CLI", "CLD", "DURATION", "CHARGED_S", "AMOUNT", "CAUSE", "BY", "CALL_ID"}, func(add func(...any)) {
				for _, x := range out {
					add(x.ID, x.DisconnectAt, x.Account, x.Direction, dash(x.CLI), dash(x.CLD), x.Duration, x.ChargedSeconds, x.Amount,
						fmt.Sprintf("%d %s", x.Cause, x.CauseText), dash(x.DisconnectedBy), x.CallID)
				}
			})
			page := q.Limit
			if page == 0 {
				page = 1000 // the server's default
			}
			if err == nil && len(out) == page {
				fmt.Fprintf(os.Stderr, "there may be more: add --after %d\n", out[len(out)-1].ID)
			}
			return err
		},
	}
	lf.add(list, "at most this many (default 1000, at most 100000)")

	var ef xdrQueryFlags
	var format, outPath string
	export := &cobra.Command{
		Use:   "export",
		Short: "Export xDRs as CSV or JSON lines, to stdout or a file",
		Long: `Export every xDR matching the filters (all retained ones by default) as CSV
(a header row, then one row per xDR) or JSON lines (one xDR per line), streamed
to stdout or to --out FILE. The file appears only when the export is complete.
Progress goes to stderr. For incremental exports keep the last id and pass it
as --after next time. xDRs beyond the cluster's [billing] xdr_retention_count
are dropped, oldest first: export before that.`,
		Example: `  troika xdr export --since 2026-01-01T00:00:00Z --format csv --out january.csv
  troika xdr export --account 1001 --after 41234 --format jsonl | gzip > 1001.jsonl.gz`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := ef.query()
			if err != nil {
				return err
			}
			if format != admin.FormatCSV && format != admin.FormatJSONL {
				return fmt.Errorf("--format %q: use csv or jsonl", format)
			}
			var w io.Writer = os.Stdout
			var tmp *os.File
			if outPath != "" {
				tmp, err = os.CreateTemp(filepath.Dir(outPath), "."+filepath.Base(outPath)+".part-*")
				if err != nil {
					return fmt.Errorf("--out: %w", err)
				}
				defer os.Remove(tmp.Name()) // a no-op after the rename
				defer tmp.Close()
				w = tmp
			}
			start, last := time.Now(), time.Now()
			progress := func(n int) {
				if time.Since(last) >= time.Second {
					last = time.Now()
					fmt.Fprintf(os.Stderr, "exported %d xDRs...\n", n)
				}
			}
			n, err := api.client().ExportXDRs(cmd.Context(), w, q, format, progress)
			if err != nil {
				if outPath != "" {
					return fmt.Errorf("%w (nothing written to %s)", err, outPath)
				}
				return err
			}
			dest := "stdout"
			if tmp != nil {
				if err := tmp.Sync(); err != nil {
					return fmt.Errorf("--out: %w", err)
				}
				if err := tmp.Close(); err != nil {
					return fmt.Errorf("--out: %w", err)
				}
				if err := os.Rename(tmp.Name(), outPath); err != nil {
					return fmt.Errorf("--out: %w", err)
				}
				dest = outPath
			}
			fmt.Fprintf(os.Stderr, "exported %d xDRs to %s in %s\n", n, dest, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	ef.add(export, "at most this many (default: all)")
	export.Flags().StringVar(&format, "format", admin.FormatCSV, "csv or jsonl")
	export.Flags().StringVar(&outPath, "out", "", "write to this file (default: stdout)")

	cmd.AddCommand(list, export)
	return cmd
}
