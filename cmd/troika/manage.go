package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
)

// show prints v as JSON, or as a table of the given columns.
func show(api *apiFlags, v any, header []string, rows func(add func(cols ...any))) error {
	switch api.output {
	case "json":
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "table":
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, strings.Join(header, "\t"))
		rows(func(cols ...any) {
			s := make([]string, len(cols))
			for i, c := range cols {
				s[i] = fmt.Sprint(c)
			}
			fmt.Fprintln(w, strings.Join(s, "\t"))
		})
		return w.Flush()
	default:
		return fmt.Errorf("--output %q: use table or json", api.output)
	}
}

// accountTable is how accounts print (also after a top-up).
var accountTable = table[admin.Account]{
	header: []string{"ID", "BILLING", "BALANCE", "RESERVED", "CREDIT_LIMIT", "TARIFF_OUT", "TARIFF_IN", "MAX_CALLS", "INCOMING", "FOLLOW_ME", "POLICY", "BLOCKED"},
	row: func(add func(...any), a admin.Account) {
		add(a.ID, a.Billing, a.Balance, a.Reserved, a.CreditLimit, a.TariffOut, a.TariffIn, a.MaxCalls,
			incomingText(a.Incoming), followMeText(a.FollowMe), dash(a.ServicePolicy), a.Blocked)
	},
}

func accountCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "account", Short: "Manage accounts"}
	ac := resourceCmds[admin.Account]{api: api, what: "account", table: accountTable}

	var a admin.Account
	var createDelivery deliveryFlags
	create := &cobra.Command{
		Use: "create", Short: "Create an account", Args: cobra.NoArgs,
		Example: `  troika account create --id 1001 --password s3cret --balance 10.00 --tariff-out demo
  troika account create --id 80032555939 --password s3cret --tariff-in in --service-policy easycall --incoming-static udp:55.55.5.6:5060
  troika account create --id 44123 --password s3cret --follow-me 1002:20 --follow-me sip:desk@pbx.example.com:30`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := createDelivery.incoming(cmd)
			if err != nil {
				return err
			}
			if in != nil {
				a.Incoming = *in
			}
			fm, err := createDelivery.followMeList(cmd)
			if err != nil {
				return err
			}
			if fm != nil {
				a.FollowMe = *fm
			}
			return ac.showing(api.client().CreateAccount(cmd.Context(), a))
		},
	}
	f := create.Flags()
	f.StringVar(&a.ID, "id", "", "account id, also its SIP user name (required)")
	f.StringVar(&a.Password, "password", "", "SIP password (required)")
	f.StringVar(&a.Billing, "billing", "prepaid", "prepaid or postpaid")
	f.StringVar(&a.Balance, "balance", "0", "opening balance, e.g. 10.00")
	f.StringVar(&a.CreditLimit, "credit-limit", "0", "postpaid credit limit")
	f.StringVar(&a.TariffOut, "tariff-out", "", "tariff for outgoing calls")
	f.StringVar(&a.TariffIn, "tariff-in", "", "tariff for incoming calls")
	f.StringVar(&a.ServicePolicy, "service-policy", "", "service policy id (how redirects of its incoming calls are followed)")
	f.IntVar(&a.MaxCalls, "max-calls", 0, "max concurrent calls (0: unlimited)")
	f.IntVar(&a.MaxContacts, "max-contacts", 0, "max registered contacts (0: registrar default)")
	createDelivery.add(create, false)

	var p admin.AccountPatch
	var password, billing, creditLimit, tariffOut, tariffIn, policy string
	var maxCalls, maxContacts int
	var blocked bool
	var updateDelivery deliveryFlags
	update := &cobra.Command{
		Use: "update ID", Short: "Change an account's fields (only the flags given)", Args: cobra.ExactArgs(1),
		Example: `  troika account update 80032555939 --service-policy easycall --incoming-static udp:55.55.5.6:5060
  troika account update 80032555939 --incoming-registered --service-policy ""
  troika account update 44123 --follow-me 1002:20 --follow-me 1003:15
  troika account update 44123 --follow-me ""`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if p.Incoming, err = updateDelivery.incoming(cmd); err != nil {
				return err
			}
			if p.FollowMe, err = updateDelivery.followMeList(cmd); err != nil {
				return err
			}
			fl := cmd.Flags()
			setS := func(name string, dst **string, v *string) {
				if fl.Changed(name) {
					*dst = v
				}
			}
			setS("password", &p.Password, &password)
			setS("billing", &p.Billing, &billing)
			setS("credit-limit", &p.CreditLimit, &creditLimit)
			setS("tariff-out", &p.TariffOut, &tariffOut)
			setS("tariff-in", &p.TariffIn, &tariffIn)
			setS("service-policy", &p.ServicePolicy, &policy)
			if fl.Changed("max-calls") {
				p.MaxCalls = &maxCalls
			}
			if fl.Changed("max-contacts") {
				p.MaxContacts = &maxContacts
			}
			if fl.Changed("blocked") {
				p.Blocked = &blocked
			}
			return ac.showing(api.client().UpdateAccount(cmd.Context(), args[0], p))
		},
	}
	uf := update.Flags()
	uf.StringVar(&password, "password", "", "new SIP password")
	uf.StringVar(&billing, "billing", "", "prepaid or postpaid")
	uf.StringVar(&creditLimit, "credit-limit", "", "postpaid credit limit")
	uf.StringVar(&tariffOut, "tariff-out", "", "tariff for outgoing calls")
	uf.StringVar(&tariffIn, "tariff-in", "", "tariff for incoming calls")
	uf.StringVar(&policy, "service-policy", "", `service policy id ("" removes it)`)
	uf.IntVar(&maxCalls, "max-calls", 0, "max concurrent calls (0: unlimited)")
	uf.IntVar(&maxContacts, "max-contacts", 0, "max registered contacts (0: registrar default)")
	uf.BoolVar(&blocked, "blocked", false, "block (true) or unblock (false) the account")
	updateDelivery.add(update, true)

	cmd.AddCommand(create,
		ac.get("Show an account", (*admin.Client).Account),
		ac.list("List accounts", (*admin.Client).Accounts),
		update,
		ac.delete("ID", "Delete an account and its registrations", (*admin.Client).DeleteAccount),
		importCmd(api), topupCmd(api))
	return cmd
}

// importCmd bulk-creates accounts from CSV lines id,password[,billing,balance,tariff_out,tariff_in].
func importCmd(api *apiFlags) *cobra.Command {
	var batch int
	cmd := &cobra.Command{
		Use:   "import FILE.csv",
		Short: "Create many accounts from a CSV file (id,password[,billing,balance,tariff_out,tariff_in]; - for stdin)",
		Long: `Create many accounts from CSV lines: id,password[,billing,balance,tariff_out,tariff_in].
Accounts are sent in batches; each batch is created all or none. Re-running an
import after a failure is safe: accounts identical to existing ones are accepted
unchanged. Progress is printed after every batch.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var in io.Reader = os.Stdin
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			r := csv.NewReader(bufio.NewReader(in))
			r.FieldsPerRecord = -1
			r.Comment = '#'
			c := api.client()
			var pending []admin.Account
			done, line := 0, 0
			flush := func() error {
				if len(pending) == 0 {
					return nil
				}
				if err := c.ImportAccounts(cmd.Context(), pending); err != nil {
					var ae *admin.APIError
					if errors.As(err, &ae) && ae.Field != "" {
						return fmt.Errorf("batch ending at line %d: %w (the %d accounts before this batch were created; fix the file and run the import again)", line, err, done)
					}
					return fmt.Errorf("batch ending at line %d: %w (%d accounts created before it; re-running is safe)", line, err, done)
				}
				done += len(pending)
				pending = pending[:0]
				fmt.Fprintf(os.Stderr, "imported %d accounts\n", done)
				return nil
			}
			for {
				rec, err := r.Read()
				if err == io.EOF {
					break
				}
				line++
				if err != nil {
					return fmt.Errorf("line %d: %w", line, err)
				}
				if len(rec) < 2 {
					return fmt.Errorf("line %d: need at least id,password", line)
				}
				a := admin.Account{ID: rec[0], Password: rec[1]}
				for i, dst := range []*string{&a.Billing, &a.Balance, &a.TariffOut, &a.TariffIn} {
					if len(rec) > i+2 {
						*dst = rec[i+2]
					}
				}
				pending = append(pending, a)
				if len(pending) >= batch {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			if err := flush(); err != nil {
				return err
			}
			fmt.Printf("%d accounts imported\n", done)
			return nil
		},
	}
	cmd.Flags().IntVar(&batch, "batch", 2000, "accounts per request (at most 5000)")
	return cmd
}

func tariffCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "tariff", Short: "Manage tariffs"}
	tc := resourceCmds[admin.Tariff]{api: api, what: "tariff", table: table[admin.Tariff]{
		header: []string{"ID", "CURRENCY", "PREFIX", "PER_MINUTE", "CONNECT_FEE", "INTERVALS", "FREE_S"},
		row: func(add func(...any), t admin.Tariff) {
			for _, r := range t.Rates {
				prefix := r.Prefix
				if prefix == "" {
					prefix = "(any)"
				}
				add(t.ID, t.Currency, prefix, r.PerMinute, r.ConnectFee, fmt.Sprintf("%d/%d", r.FirstInterval, r.NextInterval), r.FreeSeconds)
			}
		},
	}}
	var t admin.Tariff
	var rates []string
	var file string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create or replace a tariff",
		Long: `Create or replace a tariff, from --file (JSON as GET /v1/tariffs/{id} shows it)
or from flags: --id demo --currency USD --rate "prefix=44,per_minute=0.02,connect_fee=0.01,first=1,next=1,free=5" (repeatable).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file != "" {
				data, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				if err := json.Unmarshal(data, &t); err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
			}
			for _, spec := range rates {
				r, err := parseRate(spec)
				if err != nil {
					return err
				}
				t.Rates = append(t.Rates, r)
			}
			return tc.showing(api.client().PutTariff(cmd.Context(), t))
		},
	}
	create.Flags().StringVar(&t.ID, "id", "", "tariff id")
	create.Flags().StringVar(&t.Currency, "currency", "USD", "ISO 4217 currency code")
	create.Flags().StringArrayVar(&rates, "rate", nil, `a rate: "prefix=44,per_minute=0.02[,connect_fee=..,first=..,next=..,free=..]"`)
	create.Flags().StringVarP(&file, "file", "f", "", "tariff as a JSON file")
	cmd.AddCommand(create,
		tc.list("List tariffs", (*admin.Client).Tariffs),
		tc.delete("ID", "Delete a tariff no account uses", (*admin.Client).DeleteTariff))
	return cmd
}

func parseRate(spec string) (admin.Rate, error) {
	var r admin.Rate
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return r, fmt.Errorf("--rate %q: %q is not key=value", spec, kv)
		}
		num := func(dst *int) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("--rate %q: %s must be a whole number of seconds", spec, k)
			}
			*dst = n
			return nil
		}
		var err error
		switch k {
		case "prefix":
			r.Prefix = v
		case "per_minute":
			r.PerMinute = v
		case "connect_fee":
			r.ConnectFee = v
		case "first":
			err = num(&r.FirstInterval)
		case "next":
			err = num(&r.NextInterval)
		case "free":
			err = num(&r.FreeSeconds)
		default:
			err = fmt.Errorf("--rate %q: unknown key %q (prefix, per_minute, connect_fee, first, next, free)", spec, k)
		}
		if err != nil {
			return r, err
		}
	}
	return r, nil
}

func aliasCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "alias", Short: "Manage IP aliases (extra addresses the switch answers on)"}
	lc := resourceCmds[admin.Alias]{api: api, what: "alias", table: table[admin.Alias]{
		header: []string{"IP", "EXTRA_UDP", "EXTRA_TCP", "EXTRA_TLS"},
		row: func(add func(...any), a admin.Alias) {
			add(a.IP, ints(a.Ports.UDP), ints(a.Ports.TCP), ints(a.Ports.TLS))
		},
	}}
	var a admin.Alias
	add := &cobra.Command{
		Use: "add IP", Short: "Add or replace an IP alias", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.IP = args[0]
			return lc.showing(api.client().PutAlias(cmd.Context(), a))
		},
	}
	add.Flags().IntSliceVar(&a.Ports.UDP, "udp", nil, "extra UDP ports, e.g. --udp 5070,5080")
	add.Flags().IntSliceVar(&a.Ports.TCP, "tcp", nil, "extra TCP ports")
	add.Flags().IntSliceVar(&a.Ports.TLS, "tls", nil, "extra TLS ports")
	cmd.AddCommand(add,
		lc.list("List IP aliases", (*admin.Client).Aliases),
		lc.delete("IP", "Remove an IP alias", (*admin.Client).DeleteAlias))
	return cmd
}

func ints(v []int) string {
	if len(v) == 0 {
		return "-"
	}
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func registrationCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "registration", Aliases: []string{"reg"}, Short: "Show registrations"}
	cmd.AddCommand(listByAccount(api, "List current registrations (bindings) with their ingress socket", "only this account's bindings",
		table[admin.Registration]{
			header: []string{"ACCOUNT", "CONTACT", "SOURCE", "INGRESS", "EXPIRES", "USER_AGENT"},
			row: func(add func(...any), r admin.Registration) {
				add(r.Account, r.Contact, r.Source, r.Ingress, r.Expires, r.UserAgent)
			},
		}, (*admin.Client).Registrations))
	return cmd
}
