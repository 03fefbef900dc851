package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
)

// registrationDropCmd is `registration drop ACCOUNT [--contact URI]`.
func registrationDropCmd(api *apiFlags) *cobra.Command {
	var contact string
	cmd := &cobra.Command{
		Use:   "drop ACCOUNT",
		Short: "Remove an account's registrations (all, or the one with --contact); its phone registers again at its next refresh",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := api.client().DropRegistrations(cmd.Context(), args[0], contact)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d registration(s) of %s dropped\n", res.Dropped, args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&contact, "contact", "", "only the binding with this contact URI (as `registration list` shows it)")
	return cmd
}

// callHangupCmd is `call hangup CALL-ID`.
func callHangupCmd(api *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "hangup CALL-ID",
		Short: "End an answered call: BYE to both legs, its xDR filed with cause 200 \"Hung up by the operator\"",
		Long: `End an answered call: both legs get a BYE and the call's xDR is filed with
cause 200 "Hung up by the operator", disconnected by "operator". Send it to the
node that runs the call (the NODE column of ` + "`troika call list`" + `); another node
answers with a conflict naming it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			x, err := api.client().HangupCall(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if x.ID == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "call %s hung up\n", args[0])
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "call %s hung up after %d s, charged %s (xDR %d)\n", args[0], x.Duration, x.Amount, x.ID)
			return nil
		},
	}
}

// authCmd is `auth blocks` and `auth unblock`.
func authCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "What the node's authentication blocks: list, lift (each node keeps its own)"}
	blocks := &cobra.Command{
		Use:   "blocks",
		Short: "List the sources blocked after failed authentications and the user names whose guesses are used up",
		Args:  cobra.NoArgs,
		RunE: reading(api, (*admin.Client).AuthBlocks, func(b admin.AuthBlocks) error {
			return show(api, b, []string{"KIND", "WHO", "UNTIL"}, func(add func(cols ...any)) {
				for _, s := range b.Sources {
					add("source", s.Source, s.Until)
				}
				for _, u := range b.Users {
					add("user", u.User, u.RetryAt)
				}
			})
		}),
	}
	var source, user string
	unblock := &cobra.Command{
		Use:   "unblock (--source IP | --user NAME)",
		Short: "Lift a source's block, or refill a user name's guesses, on the node at --api",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := api.client()
			switch {
			case source != "":
				if err := c.UnblockSource(cmd.Context(), source); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "source %s unblocked\n", source)
			case user != "":
				if err := c.UnthrottleUser(cmd.Context(), user); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user name %s unthrottled\n", user)
			default:
				return usageError{errors.New("auth unblock needs --source IP or --user NAME")}
			}
			return nil
		},
	}
	unblock.Flags().StringVar(&source, "source", "", "source IP address to unblock")
	unblock.Flags().StringVar(&user, "user", "", "user name whose guesses to refill")
	unblock.MarkFlagsMutuallyExclusive("source", "user")
	cmd.AddCommand(blocks, unblock)
	return cmd
}
