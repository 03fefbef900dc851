package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
)

func drainCmd(api *apiFlags) *cobra.Command {
	var timeout time.Duration
	var force bool
	cmd := &cobra.Command{
		Use:   "drain",
		Short: "Stop the node at --api in a planned way: hand over its addresses and leadership, then exit",
		Long: `Drain stops the node at --api without dropping service: it says it is
draining in gossip so the leader moves its virtual and alias IPs to other
nodes (and waits until another node answers on each), hands over raft
leadership if it leads, answers new INVITEs 503, waits for its ringing calls
to settle (answered calls stay up: the node now processing the caller's
Call-ID adopts them), then leaves the cluster; its process exits with status 0.

Progress is printed as it happens. --timeout bounds everything up to leaving
(default 2m). The drain is refused when it would stop the service (the
last node able to hold an address, or the cluster's raft quorum), and a
step that fails puts the node back in service; --force drains anyway and
goes on past failed steps. Running drain again while a drain runs follows
it; interrupting drain does not stop the drain on the node.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := admin.DrainRequest{Force: force}
			if timeout != 0 {
				req.Timeout = timeout.String()
			}
			start := time.Now()
			summary, err := api.client().Drain(cmd.Context(), req, func(line string) {
				fmt.Fprintf(os.Stdout, "%6.1fs  %s\n", time.Since(start).Seconds(), line)
			})
			if err != nil {
				var ae *admin.APIError
				var de *admin.DrainError
				switch {
				case errors.As(err, &ae) && ae.Status == 409:
					return fmt.Errorf("drain refused: %s", ae.Msg)
				case errors.As(err, &de):
					return fmt.Errorf("drain stopped: %s", de.Msg)
				}
				return err
			}
			fmt.Fprintf(os.Stdout, "%6.1fs  drained: %s\n", time.Since(start).Seconds(), summary)
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", admin.DefaultDrainTimeout, "bound on moving addresses, handing over leadership and waiting for ringing calls (1s-1h)")
	cmd.Flags().BoolVar(&force, "force", false, "drain even if it stops the service, and go on past failed steps")
	return cmd
}
