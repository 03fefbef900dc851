package main

import (
	"errors"
	"strings"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
)

// connectionCmd is `troika connection`: how a vendor's calls are
// recognised, translated and costed, and a dry run of the translation.
func connectionCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "connection", Aliases: []string{"conn"}, Short: "Manage vendor connections (calls from a vendor via SIP)"}
	cc := resourceCmds[admin.Connection]{api: api, what: "connection", table: table[admin.Connection]{
		header: []string{"ID", "VENDOR", "KIND", "REMOTE_IPS", "USERNAME", "TARIFF", "CLD_RULES", "CLI_RULES"},
		row: func(add func(...any), c admin.Connection) {
			add(c.ID, c.Vendor, c.Kind, dash(strings.Join(c.RemoteIPs, ",")), dash(c.Username), c.Tariff,
				dash(c.Translation.CLD), dash(c.Translation.CLI))
		},
	}}

	var c admin.Connection
	create := cc.put(&cobra.Command{
		Use:   "create",
		Short: "Create or replace a vendor connection",
		Long: `Create or replace a connection of a vendor: calls from --remote-ip (addresses
or CIDRs) or authenticated as --username (the vendor's user name when not
given) are the vendor's. Their called (--cld-rules) and calling (--cli-rules)
numbers are translated by Perl-style rules, s/pattern/replacement/flags
chained with ';' (lookahead, backreferences, $1 allowed); the translated
called number must be an account of the switch. The vendor's cost is rated by
--tariff. Check rules with troika connection translate before traffic.`,
		Example: `  troika connection create --id carrier1-sip --vendor carrier1 --remote-ip 1.2.3.4 --remote-ip 10.0.0.0/8 \
      --tariff carrier1-cost --cld-rules 's/^00/+/; s/^\+44/44/'`,
		Args: cobra.NoArgs,
	}, &c, (*admin.Client).PutConnection)
	f := create.Flags()
	f.StringVar(&c.ID, "id", "", "connection id (required)")
	f.StringVar(&c.Vendor, "vendor", "", "vendor id (required)")
	f.StringVar(&c.Kind, "kind", "from_vendor_sip", "connection kind")
	f.StringSliceVar(&c.RemoteIPs, "remote-ip", nil, "an address or CIDR the vendor sends from (repeatable, or comma-separated)")
	f.StringVar(&c.Username, "username", "", "SIP digest user name of this connection (default: the vendor's)")
	f.StringVar(&c.Tariff, "tariff", "", "the vendor's cost tariff (required)")
	f.StringVar(&c.Translation.CLD, "cld-rules", "", `called-number rules, e.g. 's/^00/+/; s/^\+44/44/'`)
	f.StringVar(&c.Translation.CLI, "cli-rules", "", "calling-number rules")

	cmd.AddCommand(create,
		cc.get("Show a vendor connection", (*admin.Client).Connection),
		cc.list("List vendor connections", (*admin.Client).Connections),
		cc.delete("ID", "Delete a vendor connection", (*admin.Client).DeleteConnection),
		translateCmd(api))
	return cmd
}

// translateCmd is `troika connection translate ID --cld N [--cli N]`.
func translateCmd(api *apiFlags) *cobra.Command {
	var in admin.TranslateRequest
	cmd := &cobra.Command{
		Use:   "translate ID",
		Short: "Show what a connection's rules make of numbers (a dry run: nothing changes)",
		Long: `Run a connection's translation rules on a called (--cld) and/or calling
(--cli) number as the switch would on a call from the vendor, and say which
account the translated called number reaches (none: such a call is refused
with 404). A rule that fails on the input, e.g. by running out of time, is
reported by its text.`,
		Example: `  troika connection translate carrier1-sip --cld 0044123`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if in.CLD == "" && in.CLI == "" {
				return errors.New("give --cld, --cli or both")
			}
			out, err := api.client().Translate(cmd.Context(), args[0], in)
			if err != nil {
				return err
			}
			return show(api, out, []string{"NUMBER", "SENT", "TRANSLATED", "ACCOUNT"}, func(add func(...any)) {
				if in.CLD != "" {
					acct := "none: the call would be refused (404)"
					if out.CLDAccount != nil {
						acct = *out.CLDAccount
					}
					add("cld", in.CLD, dash(out.CLD), acct)
				}
				if in.CLI != "" {
					add("cli", in.CLI, dash(out.CLI), "")
				}
			})
		},
	}
	cmd.Flags().StringVar(&in.CLD, "cld", "", "called number as the vendor sends it")
	cmd.Flags().StringVar(&in.CLI, "cli", "", "calling number as the vendor sends it")
	return cmd
}
