package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
)

// policyCmd is `troika policy`: service policies (how 3xx redirects of an
// account's incoming calls are followed).
func policyCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use: "policy", Aliases: []string{"service-policy"},
		Short: "Manage service policies (which redirect targets incoming calls follow)",
	}
	header := []string{"ID", "TRUSTED_NETWORKS", "UNTRUSTED_ACTION", "MAX_REDIRECTS"}
	rows := func(ps []admin.ServicePolicy) func(add func(...any)) {
		return func(add func(...any)) {
			for _, p := range ps {
				trusted := strings.Join(p.Redirect.TrustedNetworks, ",")
				add(p.ID, dash(trusted), p.Redirect.UntrustedAction, p.Redirect.MaxRedirects)
			}
		}
	}

	var p admin.ServicePolicy
	create := &cobra.Command{
		Use:   "create",
		Short: "Create or replace a service policy",
		Long: `Create or replace a service policy. When an account's static contact (a
redirect server) answers an incoming call with a 3xx, a target inside
--trusted (IP addresses, CIDRs, domain names) is called directly as the same
incoming call; any other target is either authorized and charged as a new
outgoing call of the account (--untrusted-action new_call_authorization) or
not followed (reject). Assign the policy with
troika account update ID --service-policy POLICY.`,
		Example: `  troika policy create --id easycall --trusted 193.148.210.22 --trusted 195.111.134.55 --untrusted-action reject
  troika policy create --id office --trusted 10.0.0.0/8,pbx.example.com --untrusted-action new_call_authorization --max-redirects 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := api.client().PutServicePolicy(cmd.Context(), p)
			if err != nil {
				return err
			}
			return show(api, out, header, rows([]admin.ServicePolicy{out}))
		},
	}
	f := create.Flags()
	f.StringVar(&p.ID, "id", "", "policy id (required)")
	f.StringSliceVar(&p.Redirect.TrustedNetworks, "trusted", nil, "a trusted redirect target: IP address, CIDR or domain name (repeatable, or comma-separated)")
	f.StringVar(&p.Redirect.UntrustedAction, "untrusted-action", "", "for other targets: new_call_authorization or reject (required)")
	f.IntVar(&p.Redirect.MaxRedirects, "max-redirects", 0, "most redirects followed per call, 1-10 (0: the default, 3)")

	get := &cobra.Command{
		Use: "get ID", Short: "Show a service policy", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := api.client().ServicePolicy(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return show(api, out, header, rows([]admin.ServicePolicy{out}))
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List service policies", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := api.client().ServicePolicies(cmd.Context())
			if err != nil {
				return err
			}
			return show(api, out, header, rows(out))
		},
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete a service policy no account uses", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := api.client().DeleteServicePolicy(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Printf("service policy %s deleted\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, get, list, del)
	return cmd
}
