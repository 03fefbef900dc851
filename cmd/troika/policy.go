package main

import (
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
	pc := resourceCmds[admin.ServicePolicy]{api: api, what: "service policy", table: table[admin.ServicePolicy]{
		header: []string{"ID", "TRUSTED_NETWORKS", "UNTRUSTED_ACTION", "MAX_REDIRECTS"},
		row: func(add func(...any), p admin.ServicePolicy) {
			add(p.ID, dash(strings.Join(p.Redirect.TrustedNetworks, ",")), p.Redirect.UntrustedAction, p.Redirect.MaxRedirects)
		},
	}}

	var p admin.ServicePolicy
	create := pc.put(&cobra.Command{
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
	}, &p, (*admin.Client).PutServicePolicy)
	f := create.Flags()
	f.StringVar(&p.ID, "id", "", "policy id (required)")
	f.StringSliceVar(&p.Redirect.TrustedNetworks, "trusted", nil, "a trusted redirect target: IP address, CIDR or domain name (repeatable, or comma-separated)")
	f.StringVar(&p.Redirect.UntrustedAction, "untrusted-action", "", "for other targets: new_call_authorization or reject (required)")
	f.IntVar(&p.Redirect.MaxRedirects, "max-redirects", 0, "most redirects followed per call, 1-10 (0: the default, 3)")

	cmd.AddCommand(create,
		pc.get("Show a service policy", (*admin.Client).ServicePolicy),
		pc.list("List service policies", (*admin.Client).ServicePolicies),
		pc.delete("ID", "Delete a service policy no account uses", (*admin.Client).DeleteServicePolicy))
	return cmd
}
