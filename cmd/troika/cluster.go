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

	"github.com/troika-sip/troika/cluster"
	"github.com/troika-sip/troika/node"
)

func clusterCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Cluster operations"}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show members, leader, raft terms and indexes, and who holds each address",
		Long: `Status shows the cluster as the node at --api sees it: every member with
its raft role, gossip state (alive, suspect, dead, left), health, version
and commit, the raft leader, term and indexes, whether the node is ready
(GET /readyz) and for each virtual IP and alias the node it is assigned to.
-o json prints the whole answer of GET /v1/cluster.

It exits with status 5 when, as that node sees it, the cluster has no
quorum: it knows no leader, or fewer than a majority of the voters are
alive in its gossip (the status is printed first). A node that knows no
leader may show stale data: the output says so.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := *api.client()
			c.Stale = nil // the status says STALE itself, and exits 5
			raw, err := c.ClusterStatus(cmd.Context())
			if err != nil {
				return err
			}
			var st node.Status
			if err := json.Unmarshal(raw, &st); err != nil {
				return fmt.Errorf("reading GET /v1/cluster: %w", err)
			}
			switch api.output {
			case "json":
				var out bytes.Buffer
				if err := json.Indent(&out, raw, "", "  "); err != nil {
					return err
				}
				out.WriteByte('\n')
				if _, err := out.WriteTo(os.Stdout); err != nil {
					return err
				}
			case "table":
				if err := printClusterStatus(os.Stdout, st); err != nil {
					return err
				}
			default:
				return usageError{fmt.Errorf("--output %q: use table or json", api.output)}
			}
			return quorumError(raw, st)
		},
	}
	cmd.AddCommand(status)
	return cmd
}

// noQuorumError: the node asked sees no quorum (exit status 5).
type noQuorumError struct{ msg string }

func (e noQuorumError) Error() string { return e.msg }

// quorumError is a noQuorumError when st shows no quorum: no leader known,
// or fewer voters alive than a majority. A node of a build without the
// quorum field is judged by its leader alone.
func quorumError(raw []byte, st node.Status) error {
	var has struct {
		Quorum *node.Quorum `json:"quorum"`
	}
	_ = json.Unmarshal(raw, &has)
	id := st.Cluster.NodeID
	switch q := st.Quorum; {
	case st.Cluster.LeaderID == "":
		return noQuorumError{fmt.Sprintf("no quorum: %s knows no raft leader (%d of %d voters alive in its gossip, %d needed): "+
			"writes fail and what it shows may be stale; start the missing nodes or reconnect them", id, q.Alive, q.Voters, q.Needed)}
	case has.Quorum != nil && !q.OK:
		return noQuorumError{fmt.Sprintf("no quorum: %d of %d voters alive as %s sees them, %d needed: "+
			"the leader %s is about to step down; start the missing nodes or reconnect them", q.Alive, q.Voters, id, q.Needed, q.Leader)}
	}
	return nil
}

// printClusterStatus writes the operator's view of st: this node's raft
// view, readiness and quorum, the members and the addresses.
func printClusterStatus(out io.Writer, st node.Status) error {
	c := st.Cluster
	leader := c.LeaderID
	if leader == "" {
		leader = "none (no quorum: writes get 503 until a majority of the voters is up)"
	}
	commit := ""
	if st.Commit != "" {
		commit = ", commit " + st.Commit
	}
	fmt.Fprintf(out, "node %s (version %s%s): raft %s, term %d, leader %s\n", c.NodeID, st.Version, commit, c.State, c.Term, leader)
	if st.Stale {
		fmt.Fprintf(out, "STALE: %s knows no raft leader: what it shows below may lag the cluster\n", c.NodeID)
	}
	fmt.Fprintf(out, "raft log: last %d, committed %d, applied %d, snapshot %d; last contact with the leader %s\n",
		c.LastLogIndex, c.CommitIndex, c.AppliedIndex, c.LastSnapshotIndex, c.LastContact)
	if q := st.Quorum; q.Voters > 0 {
		ok := "yes"
		if !q.OK {
			ok = "NO"
		}
		fmt.Fprintf(out, "quorum: %s (%d of %d voters alive, %d needed)\n", ok, q.Alive, q.Voters, q.Needed)
	}
	if rd := st.Ready; len(rd.Checks) > 0 {
		if rd.Ready {
			fmt.Fprintf(out, "ready: yes\n")
		} else {
			var failed []string
			for _, ch := range rd.Checks {
				if !ch.OK {
					failed = append(failed, ch.Name+": "+ch.Detail)
				}
			}
			fmt.Fprintf(out, "ready: NO (%s)\n", strings.Join(failed, "; "))
		}
	}
	fmt.Fprintf(out, "state: %s\n", c.FSM.String())
	fmt.Fprintf(out, "SIP sockets here: %s\n\n", dash(strings.Join(st.Sockets, " ")))

	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MEMBER\tRAFT\tGOSSIP\tHEALTH\tVERSION\tCOMMIT\tCALLS\tAPPLIED\tADDRESS")
	seen := map[string]bool{}
	row := func(id, role string, m *cluster.Member, addr string) {
		state, health, version, commit, calls, applied := "unknown", "-", "-", "-", "-", "-"
		if m != nil {
			state, version, commit = m.Status(), dash(m.Meta.Version), dash(m.Meta.Commit)
			calls = fmt.Sprint(m.Meta.Load)
			if m.Meta.AppliedIndex > 0 {
				applied = fmt.Sprint(m.Meta.AppliedIndex)
			}
			// What a member last announced is its health only while it
			// is alive: a dead member's last word was probably "ok".
			if m.State == cluster.MemberAlive {
				health = dash(m.Meta.Health)
			}
		}
		if id == c.NodeID {
			applied = fmt.Sprint(c.AppliedIndex)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, role, state, health, version, commit, calls, applied, addr)
	}
	member := func(id string) *cluster.Member {
		for i := range st.Members {
			if st.Members[i].ID == id {
				return &st.Members[i]
			}
		}
		return nil
	}
	for _, sv := range c.Servers {
		seen[sv.ID] = true
		role := strings.ToLower(sv.Suffrage)
		if sv.Leader {
			role = "leader"
		}
		row(sv.ID, role, member(sv.ID), sv.Addr)
	}
	for i := range st.Members { // in gossip but not in raft
		if m := &st.Members[i]; !seen[m.ID] {
			row(m.ID, "not a raft member", m, m.Addr)
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
	fmt.Fprintln(w, "ADDRESS\tKIND\tASSIGNED TO\tSINCE\tHELD BY\tHERE")
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
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", a.IP, dash(a.Kind), dash(a.Node), since, heldBy(c.NodeID, a.IP, a.HeldByMe, st.Members), here)
	}
	return w.Flush()
}

// heldBy names the nodes that hold ip: this node as it knows itself, the
// others alive in gossip as they last announced ("?" for one whose
// announcement was cut short), "-" for none.
func heldBy(self, ip string, here bool, members []cluster.Member) string {
	var out []string
	if here {
		out = append(out, self)
	}
	for _, m := range members {
		if m.ID == self || m.State != cluster.MemberAlive {
			continue
		}
		switch holds, known := m.Meta.Holds(ip); {
		case holds:
			out = append(out, m.ID)
		case !known:
			out = append(out, m.ID+"?")
		}
	}
	return dash(strings.Join(out, ","))
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
