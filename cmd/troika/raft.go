package main

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
)

func operatorCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "operator", Short: "Operator tools: the raft configuration"}
	r := &cobra.Command{
		Use:   "raft",
		Short: "List and change the raft members (replace a dead server)",
		Long: `The raft configuration is the list of servers that vote on every change of
the replicated state: a quorum (a majority of the voters) must be up for
the cluster to write. troika never removes a voter by itself. To replace a
dead server: remove-peer it, start the new server (a new node_id, an empty
data_dir, cluster.await_add = true) and add-voter it; deploy/runbook.md,
"Replace a dead server", has every step.`,
	}
	r.AddCommand(listPeersCmd(api), removePeerCmd(api), addVoterCmd(api))
	cmd.AddCommand(r)
	return cmd
}

func peersTable(api *apiFlags, peers []admin.RaftPeer) error {
	return show(api, peers, []string{"NODE", "ADDRESS", "SUFFRAGE", "ROLE", "GOSSIP", "VERSION"}, func(add func(...any)) {
		for _, p := range peers {
			role := "follower"
			if p.Leader {
				role = "leader"
			}
			add(p.ID, p.Addr, p.Suffrage, role, p.Gossip, dash(p.Version))
		}
	})
}

func listPeersCmd(api *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list-peers",
		Short: "List the raft members with their gossip state (alive, suspect, dead, left, unknown)",
		Args:  cobra.NoArgs,
		RunE:  reading(api, (*admin.Client).RaftPeers, func(peers []admin.RaftPeer) error { return peersTable(api, peers) }),
	}
}

// raftRefused says a refused change of the members as what to do.
func raftRefused(what string, err error) error {
	var ae *admin.APIError
	if errors.As(err, &ae) && (ae.Status == http.StatusConflict || ae.Status == http.StatusNotFound || ae.Status == http.StatusBadRequest) {
		return answerError{fmt.Sprintf("%s refused, nothing changed: %s", what, ae.Msg), err}
	}
	return err
}

func printChange(cmd *cobra.Command, api *apiFlags, ch admin.RaftChange) error {
	if api.output == "json" {
		return show(api, ch, nil, nil)
	}
	fmt.Fprintln(cmd.OutOrStdout(), ch.Message)
	fmt.Fprintln(cmd.OutOrStdout())
	return peersTable(api, ch.Peers)
}

func removePeerCmd(api *apiFlags) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "remove-peer NODE_ID",
		Short: "Remove a (dead) server from the raft configuration",
		Long: `Remove-peer removes a member from the raft configuration, as for a server
that is dead for good. It is refused, and nothing changes, when the member
is alive (stop it first: troika drain), when the voters left would lack a
quorum of live ones (the cluster would stop writing), or when the cluster
has no quorum now; --force removes it anyway. The last voter is never
removed. The answer says what the cluster now survives.`,
		Example: `  troika operator raft remove-peer sip3`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ch, err := api.client().RemovePeer(cmd.Context(), admin.RemovePeerRequest{ID: args[0], Force: force})
			if err != nil {
				return raftRefused("remove-peer "+args[0], err)
			}
			return printChange(cmd, api, ch)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove it even if it is alive or the voters left would lack a quorum")
	return cmd
}

func addVoterCmd(api *apiFlags) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "add-voter NODE_ID HOST:PORT",
		Short: "Add a server (started with cluster.await_add = true) as a voter",
		Long: `Add-voter adds the server NODE_ID, whose cluster port is HOST:PORT (its
cluster.advertise, or cluster.bind), to the raft configuration as a voter.
It then catches up from the leader. The node at --api first checks that a
node of this cluster answers there (the cluster key, TLS); --force skips
the check. An address another member has is refused: remove that member
first.`,
		Example: `  troika operator raft add-voter sip4 192.0.2.4:7000`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ch, err := api.client().AddVoter(cmd.Context(), admin.AddVoterRequest{ID: args[0], Addr: args[1], Force: force})
			if err != nil {
				return raftRefused("add-voter "+args[0], err)
			}
			return printChange(cmd, api, ch)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "add it even if nothing answers at HOST:PORT")
	return cmd
}
