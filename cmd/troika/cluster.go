package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/node"
)

func clusterCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Cluster operations"}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show members, leader, raft terms and indexes, and who holds each address",
		Long: `Status shows the cluster as the node at --api sees it: every member with
its gossip state, version and health, the raft leader, term and indexes,
and for each virtual IP and alias the node it is assigned to. -o json
prints the whole answer of GET /v1/cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := api.client().ClusterStatus(cmd.Context())
			if err != nil {
				return err
			}
			switch api.output {
			case "json":
				var out bytes.Buffer
				if err := json.Indent(&out, raw, "", "  "); err != nil {
					return err
				}
				out.WriteByte('\n')
				_, err := out.WriteTo(os.Stdout)
				return err
			case "table":
				var st node.Status
				if err := json.Unmarshal(raw, &st); err != nil {
					return fmt.Errorf("reading GET /v1/cluster: %w", err)
				}
				return printClusterStatus(os.Stdout, st)
			default:
				return fmt.Errorf("--output %q: use table or json", api.output)
			}
		},
	}
	cmd.AddCommand(status)
	return cmd
}

// printClusterStatus writes the operator's view of st: this node's raft
// view, the members and the addresses.
func printClusterStatus(out io.Writer, st node.Status) error {
	c := st.Cluster
	leader := c.LeaderID
	if leader == "" {
		leader = "none (no quorum: writes get 503 until a majority of the voters is up)"
	}
	fmt.Fprintf(out, "node %s (version %s): raft %s, term %d, leader %s\n", c.NodeID, st.Version, c.State, c.Term, leader)
	fmt.Fprintf(out, "raft log: last %d, committed %d, applied %d, snapshot %d; last contact with the leader %s\n",
		c.LastLogIndex, c.CommitIndex, c.AppliedIndex, c.LastSnapshotIndex, c.LastContact)
	fmt.Fprintf(out, "state: %s\n", c.FSM.String())
	fmt.Fprintf(out, "SIP sockets here: %s\n\n", dash(strings.Join(st.Sockets, " ")))

	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MEMBER\tRAFT\tGOSSIP\tHEALTH\tVERSION\tCALLS\tADDRESS")
	seen := map[string]bool{}
	for _, sv := range c.Servers {
		seen[sv.ID] = true
		role := strings.ToLower(sv.Suffrage)
		if sv.Leader {
			role = "leader"
		}
		state, health, version, calls := "-", "-", "-", "-"
		for _, m := range st.Members {
			if m.ID == sv.ID {
				state, health, version, calls = m.State, m.Meta.Health, m.Meta.Version, fmt.Sprint(m.Meta.Load)
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sv.ID, role, state, dash(health), dash(version), calls, sv.Addr)
	}
	for _, m := range st.Members { // in gossip but not in raft
		if !seen[m.ID] {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.ID, "not a raft member", m.State, dash(m.Meta.Health), dash(m.Meta.Version), m.Meta.Load, m.Addr)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(st.Addresses) == 0 {
		return nil
	}
	fmt.Fprintln(out)
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ADDRESS\tKIND\tASSIGNED TO\tSINCE\tHERE")
	for _, a := range st.Addresses {
		since := "-"
		if a.AssignedAt != nil {
			since = a.AssignedAt.UTC().Format(time.DateTime)
		}
		here := "not held"
		switch {
		case a.HeldByMe:
			here = "held"
		case a.Node == "" && a.State == "" && socketsOn(st.Sockets, a.IP):
			here = "served (no [vip] section: the address is configured on the host, not moved)"
		}
		if a.State != "" {
			here += ": " + a.State
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", a.IP, dash(a.Kind), dash(a.Node), since, here)
	}
	return w.Flush()
}

// socketsOn reports whether one of the socket names ("udp:10.0.0.1:5060")
// is on ip.
func socketsOn(sockets []string, ip string) bool {
	for _, name := range sockets {
		_, hostport, _ := strings.Cut(name, ":")
		if host, _, err := net.SplitHostPort(hostport); err == nil && host == ip {
			return true
		}
	}
	return false
}
