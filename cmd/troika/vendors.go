package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
)

// vendorCmd is `troika vendor`: carriers that send calls in.
func vendorCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "vendor", Short: "Manage vendors (carriers that send calls in; see also `troika connection`)"}
	header := []string{"ID", "NAME", "USERNAME", "PASSWORD"}
	rows := func(vs []admin.Vendor) func(add func(...any)) {
		return func(add func(...any)) {
			for _, v := range vs {
				pw := "-"
				if v.HasPassword {
					pw = "set"
				}
				add(v.ID, dash(v.Name), dash(v.Username), pw)
			}
		}
	}

	var v admin.Vendor
	create := &cobra.Command{
		Use:   "create",
		Short: "Create or replace a vendor",
		Long: `Create or replace a vendor. --username and --password are the SIP digest
credentials its calls may authenticate with (optional when its connections
recognise it by address). Replacing a vendor replaces every field: give the
password again. The password is never shown back.`,
		Example: `  troika vendor create --id carrier1 --name "Carrier One" --username carrier1 --password s3cret`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := api.client().PutVendor(cmd.Context(), v)
			if err != nil {
				return err
			}
			return show(api, out, header, rows([]admin.Vendor{out}))
		},
	}
	f := create.Flags()
	f.StringVar(&v.ID, "id", "", "vendor id (required)")
	f.StringVar(&v.Name, "name", "", "display name")
	f.StringVar(&v.Username, "username", "", "SIP digest user name for its calls")
	f.StringVar(&v.Password, "password", "", "SIP digest password (required with --username)")

	get := &cobra.Command{
		Use: "get ID", Short: "Show a vendor", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := api.client().Vendor(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return show(api, out, header, rows([]admin.Vendor{out}))
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List vendors", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := api.client().Vendors(cmd.Context())
			if err != nil {
				return err
			}
			return show(api, out, header, rows(out))
		},
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete a vendor without connections", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := api.client().DeleteVendor(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Printf("vendor %s deleted\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, get, list, del)
	return cmd
}
