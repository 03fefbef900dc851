package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/cluster"
	"github.com/troika-sip/troika/fsm"
)

// The raft configuration as operators change it (admin.RaftOperator):
// removing a dead server and adding its replacement (deploy/runbook.md,
// "Replace a dead server"). The checks use this node's gossip view.

var _ admin.RaftOperator = (*Node)(nil)

const (
	// probeTimeout bounds add-voter's check that the new node answers.
	probeTimeout = 3 * time.Second
	// raftChangeTimeout bounds a change of the raft configuration.
	raftChangeTimeout = 30 * time.Second
)

// RaftPeers implements admin.RaftOperator.
func (n *Node) RaftPeers(context.Context) ([]admin.RaftPeer, error) {
	servers, err := n.cluster.Servers()
	if err != nil {
		return nil, err
	}
	members := map[string]cluster.Member{}
	for _, m := range n.gossip.Members() {
		members[m.ID] = m
	}
	out := make([]admin.RaftPeer, 0, len(servers))
	for _, s := range servers {
		p := admin.RaftPeer{ID: s.ID, Addr: s.Addr, Suffrage: strings.ToLower(s.Suffrage), Leader: s.Leader, Gossip: "unknown"}
		if m, ok := members[s.ID]; ok {
			p.Gossip, p.Version = m.Status(), m.Meta.Version
		}
		if s.ID == n.cfg.NodeID {
			p.Gossip, p.Version = cluster.MemberAlive, Version
		}
		out = append(out, p)
	}
	return out, nil
}

// running reports whether gossip says the member runs: alive, or alive
// but suspected.
func running(p admin.RaftPeer) bool {
	return p.Gossip == cluster.MemberAlive || p.Gossip == cluster.MemberSuspect
}

// voterSet is the voters of a configuration and which of them are alive.
type voterSet struct {
	ids   []string
	alive map[string]bool
}

func votersOf(peers []admin.RaftPeer) voterSet {
	v := voterSet{alive: map[string]bool{}}
	for _, p := range peers {
		if p.Suffrage == "voter" {
			v.ids = append(v.ids, p.ID)
			v.alive[p.ID] = running(p)
		}
	}
	return v
}

func (v voterSet) without(id string) voterSet {
	return voterSet{ids: slices.DeleteFunc(slices.Clone(v.ids), func(x string) bool { return x == id }), alive: v.alive}
}

func (v voterSet) with(id string) voterSet {
	if slices.Contains(v.ids, id) {
		return v
	}
	return voterSet{ids: append(slices.Clone(v.ids), id), alive: v.alive}
}

func (v voterSet) quorum() int { return len(v.ids)/2 + 1 }

func (v voterSet) up() []string {
	var out []string
	for _, id := range v.ids {
		if v.alive[id] {
			out = append(out, id)
		}
	}
	return out
}

// describe says who the voters are and how many failures they survive.
func (v voterSet) describe() string {
	q := v.quorum()
	tolerates := len(v.ids) - q
	var survives string
	switch tolerates {
	case 0:
		survives = "so the cluster writes only while all of them are up: it survives no further failure"
	case 1:
		survives = "so the cluster survives 1 failure"
	default:
		survives = fmt.Sprintf("so the cluster survives %d failures", tolerates)
	}
	s := fmt.Sprintf("voters now: %s (%d; a quorum is %d, %s)", strings.Join(v.ids, ", "), len(v.ids), q, survives)
	if len(v.ids)%2 == 0 && len(v.ids) >= 4 {
		s += fmt.Sprintf(". With an even number of voters the cluster survives no more failures than with %d: add another server or remove one", len(v.ids)-1)
	}
	return s
}

// aliveText says which of some voters are alive: "only n1 is alive".
func aliveText(up []string) string {
	switch len(up) {
	case 0:
		return "none is alive"
	case 1:
		return "only " + up[0] + " is alive"
	}
	return "only " + strings.Join(up, ", ") + " are alive"
}

func list(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// RemovePeer implements admin.RaftOperator. It refuses, unless force, to
// remove a member that is alive (stop it first) or one whose removal
// leaves fewer live voters than a quorum; it always refuses to remove the
// last voter, and to change the members of a cluster without a quorum
// (raft cannot commit it).
func (n *Node) RemovePeer(ctx context.Context, id string, force bool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, raftChangeTimeout)
	defer cancel()
	peers, err := n.RaftPeers(ctx)
	if err != nil {
		return "", err
	}
	i := slices.IndexFunc(peers, func(p admin.RaftPeer) bool { return p.ID == id })
	if i < 0 {
		ids := []string{}
		for _, p := range peers {
			ids = append(ids, p.ID)
		}
		return "", &admin.Refused{Status: http.StatusNotFound, Msg: fmt.Sprintf("%q is not a member of the raft configuration (members: %s): "+
			"`troika operator raft list-peers` lists them", id, list(ids))}
	}
	target := peers[i]
	voters := votersOf(peers)
	after := voters.without(id)
	switch {
	case target.Suffrage == "voter" && len(after.ids) == 0:
		return "", &admin.Refused{Status: http.StatusConflict, Msg: fmt.Sprintf("%s is the cluster's only voter: removing it would leave no cluster", id)}
	case !force && len(voters.up()) < voters.quorum():
		return "", &admin.Refused{Status: http.StatusConflict, Msg: fmt.Sprintf("the cluster has no quorum: of the voters %s, %s, "+
			"and raft needs %d of them to change its members. Bring a server back first (a node that lost its data dir rejoins "+
			"under a new node_id: see \"Replace a dead server\" in deploy/runbook.md)", list(voters.ids), aliveText(voters.up()), voters.quorum())}
	case !force && target.Suffrage == "voter" && len(after.up()) < after.quorum():
		return "", &admin.Refused{Status: http.StatusConflict, Msg: fmt.Sprintf("removing %s leaves the voters %s, of which %s: "+
			"fewer than the %d a quorum needs, so the cluster would stop writing (REGISTERs and new calls get 503) until another is back. "+
			"Bring a server back or add its replacement first (add-voter); --force removes it anyway", id, list(after.ids), aliveText(after.up()), after.quorum())}
	case !force && running(target):
		return "", &admin.Refused{Status: http.StatusConflict, Msg: fmt.Sprintf("%s is %s (gossip): it is running. Stop it first with "+
			"`troika drain --api <its admin API>` (a drained node leaves the cluster by itself), or, when it is dead and gossip has not "+
			"noticed yet, wait a few seconds (`troika operator raft list-peers` shows it dead). --force removes it anyway: it stops "+
			"taking part in raft and keeps running outside the cluster, with no address and no writes", id, target.Gossip)}
	}
	if err := n.cluster.RemoveServer(ctx, id); err != nil {
		return "", fmt.Errorf("remove %s: %w. Check `troika operator raft list-peers`: it is safe to retry", id, err)
	}
	msg := fmt.Sprintf("removed %s (%s) from the raft configuration; %s", id, target.Addr, after.describe())
	if target.Leader {
		msg += fmt.Sprintf(". %s led the cluster: it stepped down and the others elect a leader", id)
	}
	if running(target) {
		msg += fmt.Sprintf(". %s still runs outside the cluster: stop it, and empty its data_dir before it ever joins again", id)
	}
	if target.Suffrage == "voter" {
		msg += ". To replace it: start the new server with a new node_id, an empty data_dir and cluster.await_add = true, then " +
			"`troika operator raft add-voter NODE_ID HOST:PORT` (deploy/runbook.md, \"Replace a dead server\")"
	}
	n.log.Warn("raft: member removed by an operator", "id", id, "addr", target.Addr, "force", force)
	return msg, nil
}

// AddVoter implements admin.RaftOperator. Unless force, the new node must
// answer on its cluster port (the cluster key, and TLS as this node dials
// it): a voter that is down counts against the quorum from the start.
// An address another member has is refused: remove that member first.
func (n *Node) AddVoter(ctx context.Context, id, addr string, force bool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, raftChangeTimeout)
	defer cancel()
	if !fsm.ValidID(id) || strings.Contains(id, "+") {
		return "", &admin.Refused{Status: http.StatusBadRequest, Msg: fmt.Sprintf("id %q: a node_id is 1-64 letters, digits, '_', '.' or '-'", id)}
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || host == "" {
		return "", &admin.Refused{Status: http.StatusBadRequest, Msg: fmt.Sprintf("addr %q: the new node's cluster address is HOST:PORT "+
			"(its cluster.advertise, or cluster.bind)", addr)}
	}
	peers, err := n.RaftPeers(ctx)
	if err != nil {
		return "", err
	}
	var moved string
	for _, p := range peers {
		switch {
		case p.ID == id && p.Addr == addr && p.Suffrage == "voter":
			return fmt.Sprintf("%s is already a voter at %s: nothing changed; %s", id, addr, votersOf(peers).describe()), nil
		case p.ID != id && p.Addr == addr:
			return "", &admin.Refused{Status: http.StatusConflict, Msg: fmt.Sprintf("%s is %s's address in the raft configuration: "+
				"remove %s first (`troika operator raft remove-peer %s`), then add %s", addr, p.ID, p.ID, p.ID, id)}
		case p.ID == id && p.Addr != addr:
			moved = p.Addr
		}
	}
	if !force {
		if err := n.cluster.Probe(addr, probeTimeout); err != nil {
			return "", &admin.Refused{Status: http.StatusConflict, Msg: fmt.Sprintf("no troika node of this cluster answers at %s (%v): "+
				"start the new node first (a new node_id, an empty data_dir, the cluster key, cluster.await_add = true), check that "+
				"this node reaches it, then add it. --force adds it anyway: it then counts against the quorum while it is down", addr, err)}
		}
	}
	if err := n.cluster.AddVoter(ctx, id, addr); err != nil {
		return "", fmt.Errorf("add %s: %w. Check `troika operator raft list-peers`: it is safe to retry", id, err)
	}
	after := votersOf(peers).with(id)
	var msg string
	if moved != "" {
		msg = fmt.Sprintf("moved voter %s from %s to %s; %s", id, moved, addr, after.describe())
	} else {
		msg = fmt.Sprintf("added %s at %s as a voter; %s. It catches up from the leader (a snapshot, then the log): "+
			"`troika cluster status --api <its admin API>` shows its applied_index reach the leader's", id, addr, after.describe())
	}
	n.log.Warn("raft: voter added by an operator", "id", id, "addr", addr, "force", force)
	return msg, nil
}

// validateAwaitAdd checks cluster.await_add: a node an operator adds has
// no other way in, and finds the others' gossip by gossip_join.
func (c *Config) validateAwaitAdd() error {
	cc := c.Cluster
	switch {
	case !cc.AwaitAdd:
		return nil
	case len(cc.Peers) > 0 || len(cc.Join) > 0 || cc.Bootstrap:
		return errors.New("cluster.await_add: a node added by an operator has no peers, join or bootstrap: remove them " +
			"(peers would bootstrap a second cluster)")
	case len(cc.GossipJoin) == 0:
		return errors.New("cluster.await_add: set cluster.gossip_join to the other members' gossip addresses " +
			"(their cluster port + 1 by default), so that this node hears of them")
	}
	return nil
}
