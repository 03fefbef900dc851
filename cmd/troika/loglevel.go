package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func logLevelCmd(api *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "log-level [debug|info|warn|error]",
		Short: "Show or set the log level of the node at --api, while it runs",
		Long: `With no argument, print the log level of the node at --api. With one, set
it (a token of scope admin) until the node restarts, or until a SIGHUP makes
it read log_level from its configuration file again. The change is logged
at WARN by the node, with the token's name.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := api.client()
			if len(args) == 0 {
				l, err := c.LogLevel(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), l.Level)
				return nil
			}
			l, err := c.SetLogLevel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "log level now %s\n", l.Level)
			return nil
		},
	}
}
