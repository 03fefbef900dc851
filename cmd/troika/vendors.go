package main

import (
	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
)

// vendorCmd is `troika vendor`: carriers that send calls in.
func vendorCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "vendor", Short: "Manage vendors (carriers that send calls in; see also `troika connection`)"}
	vc := resourceCmds[admin.Vendor]{api: api, what: "vendor", table: table[admin.Vendor]{
		header: []string{"ID", "NAME", "USERNAME", "PASSWORD"},
		row: func(add func(...any), v admin.Vendor) {
			pw := "-"
			if v.HasPassword {
				pw = "set"
			}
			add(v.ID, dash(v.Name), dash(v.Username), pw)
		},
	}}

	var v admin.Vendor
	create := vc.put(&cobra.Command{
		Use:   "create",
		Short: "Create or replace a vendor",
		Long: `Create or replace a vendor. --username and --password are the SIP digest
credentials its calls may authenticate with (optional when its connections
recognise it by address). Replacing a vendor replaces every field: give the
password again. The password is never shown back.`,
		Example: `  troika vendor create --id carrier1 --name "Carrier One" --username carrier1 --password s3cret`,
		Args:    cobra.NoArgs,
	}, &v, (*admin.Client).PutVendor)
	f := create.Flags()
	f.StringVar(&v.ID, "id", "", "vendor id (required)")
	f.StringVar(&v.Name, "name", "", "display name")
	f.StringVar(&v.Username, "username", "", "SIP digest user name for its calls")
	f.StringVar(&v.Password, "password", "", "SIP digest password (required with --username)")

	cmd.AddCommand(create,
		vc.get("Show a vendor", (*admin.Client).Vendor),
		vc.list("List vendors", (*admin.Client).Vendors),
		vc.delete("ID", "Delete a vendor without connections", (*admin.Client).DeleteVendor))
	return cmd
}
