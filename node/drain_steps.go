package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The waiting steps of a drain (drain.go lists them all): the addresses
// move to other nodes, raft leadership goes to another voter, the calls
// ringing here settle. Each reports its progress and returns an error
// that stops the drain unless it is forced.

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s" }

var errStopping = errors.New("the node is stopping")

func sleepOrDone(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return errStopping
	case <-t.C:
		return nil
	}
}

// drainAddresses waits until the leader has moved mine, the addresses
// this node held when the drain began, to other nodes: this node holds
// none, and each answers SIP from here.
func (n *Node) drainAddresses(ctx context.Context, r *drainRun, mine []string, deadline time.Time) error {
	if n.owner == nil {
		r.say("addresses: none managed here ([vip] not configured): nothing to move")
		return nil
	}
	self := n.cfg.NodeID
	if len(mine) == 0 {
		r.say("addresses: this node holds none")
		return nil
	}
	if _, _, takers := n.inService(); len(takers) == 0 && r.opts.Force {
		r.say("addresses: no other healthy node can take %s; --force: nobody serves them until a node can take them", strings.Join(mine, ", "))
		return nil
	}
	leader, _ := n.cluster.Leader()
	r.say("addresses: %s given up here; waiting for the leader (%s) to move them", strings.Join(mine, ", "), leader)
	start := time.Now()
	limit := earliest(deadline, start.Add(addressWaitMax))
	handover := n.cfg.LeaseTiming().HandoverWait()
	moved := map[string]time.Time{} // ip -> when this node saw it assigned elsewhere
	pending := slices.Clone(mine)
	lastNote := start
	for len(pending) > 0 {
		now := time.Now()
		assigned := map[string]string{}
		for _, a := range n.state.Assignments() {
			assigned[a.IP] = a.Node
		}
		held := n.owner.Held()
		var still []string
		for _, ip := range pending {
			to := assigned[ip]
			if to == "" || to == self || slices.Contains(held, ip) {
				delete(moved, ip)
				still = append(still, ip)
				continue
			}
			if _, ok := moved[ip]; !ok {
				moved[ip] = now
				r.say("addresses: %s assigned to %s (%s)", ip, to, secs(now.Sub(start)))
			}
			since := now.Sub(moved[ip])
			if since < handover {
				still = append(still, ip) // the new holder takes it after its handover wait
				continue
			}
			if port, ok := n.probeAddress(ip); ok {
				r.say("addresses: %s now held by %s (answers SIP at %s, %s)", ip, to, net.JoinHostPort(ip, strconv.Itoa(port)), secs(time.Since(start)))
				continue
			} else if port == 0 || since >= handover+probeGrace {
				why := "no SIP UDP port to probe"
				if port != 0 {
					why = fmt.Sprintf("no answer to SIP OPTIONS at %s from here for %s: a filter?", net.JoinHostPort(ip, strconv.Itoa(port)), secs(since-handover))
				}
				r.say("addresses: %s now held by %s (assigned, past its handover wait of %s; %s; %s)", ip, to, secs(handover), why, secs(time.Since(start)))
				continue
			}
			still = append(still, ip)
		}
		pending = still
		if len(pending) == 0 {
			break
		}
		if time.Now().After(limit) { // not now: the probes above took time
			var desc []string
			for _, ip := range pending {
				desc = append(desc, fmt.Sprintf("%s (assigned to %s)", ip, orNobody(assigned[ip])))
			}
			err := fmt.Errorf("addresses: %s not handed over within %s: is the leader (%s) placing addresses? check `troika cluster status`; "+
				"drain again, or with --force", strings.Join(desc, ", "), secs(now.Sub(start)), leaderOrNone(n))
			if !r.opts.Force {
				return err
			}
			r.say("%v; --force: going on", err)
			return nil
		}
		if now.Sub(lastNote) >= drainNoteEvery {
			r.say("addresses: waiting for %s (%s)", strings.Join(pending, ", "), secs(now.Sub(start)))
			lastNote = now
		}
		if err := sleepOrDone(ctx, drainPoll); err != nil {
			return err
		}
	}
	r.say("addresses: none held here (%d moved in %s)", len(mine), secs(time.Since(start)))
	return nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func orNobody(s string) string {
	if s == "" {
		return "nobody"
	}
	return s
}

func leaderOrNone(n *Node) string {
	if id, _ := n.cluster.Leader(); id != "" {
		return id
	}
	return "none known"
}

// probeAddress sends one SIP OPTIONS to ip's first UDP port and waits
// briefly for any answer: once this node no longer holds ip, an answer
// comes from the node that does. It returns the port probed (0: no UDP
// port) and whether an answer came.
func (n *Node) probeAddress(ip string) (int, bool) {
	if len(n.cfg.SIP.UDPPorts) == 0 {
		return 0, false
	}
	port := n.cfg.SIP.UDPPorts[0]
	target := net.JoinHostPort(ip, strconv.Itoa(port))
	c, err := net.DialTimeout("udp", target, time.Second)
	if err != nil {
		return port, false
	}
	defer c.Close()
	b := make([]byte, 8)
	rand.Read(b)
	id := hex.EncodeToString(b)
	local := c.LocalAddr().String()
	msg := "OPTIONS sip:" + target + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-drain-" + id + ";rport\r\n" +
		"From: <sip:drain-probe@" + local + ">;tag=" + id + "\r\n" +
		"To: <sip:" + target + ">\r\n" +
		"Call-ID: drain-" + id + "@" + n.cfg.NodeID + "\r\n" +
		"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		return port, false
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 4096)
	k, err := c.Read(buf)
	return port, err == nil && strings.HasPrefix(string(buf[:k]), "SIP/2.0 ") && strings.Contains(string(buf[:k]), id)
}

// drainLeadership hands raft leadership to another voter if this node
// leads.
func (n *Node) drainLeadership(ctx context.Context, r *drainRun, deadline time.Time) error {
	if !n.cluster.IsLeader() {
		r.say("leadership: %s leads; nothing to hand over", leaderOrNone(n))
		return nil
	}
	if !n.otherVoters() {
		r.say("leadership: this node is the only voter: nothing to hand over; the cluster has no leader once it is gone")
		return nil
	}
	r.say("leadership: this node leads; handing it over")
	start := time.Now()
	lctx, cancel := context.WithDeadline(ctx, earliest(deadline, start.Add(leadershipWaitMax)))
	err := n.cluster.TransferLeadership(lctx)
	cancel()
	if ctx.Err() != nil {
		return errStopping
	}
	if err != nil {
		err = fmt.Errorf("leadership: handing it over failed after %s (%v): drain again, or with --force "+
			"(the others then elect a leader once this node is gone: about a second without writes)", secs(time.Since(start)), err)
		if !r.opts.Force {
			return err
		}
		r.say("%v; --force: going on", err)
		return nil
	}
	r.say("leadership: %s leads now (%.2f s)", leaderOrNone(n), time.Since(start).Seconds())
	return nil
}

// otherVoters reports whether the raft configuration has voters besides
// this node.
func (n *Node) otherVoters() bool {
	return slices.ContainsFunc(n.cluster.Voters(), func(v string) bool { return v != n.cfg.NodeID })
}

// callsHere counts this node's calls in the replicated state: ringing
// (not answered yet; running here, or set up since this process started:
// a record a previous process left is the leader's to reap) and answered.
func (n *Node) callsHere() (ringing, answered int) {
	for _, c := range n.state.Calls() {
		if c.Node != n.cfg.NodeID {
			continue
		}
		if c.ConnectAt == 0 {
			if n.sip.Runs(c.ID) || c.SetupAt >= n.startedAt.UnixMilli() {
				ringing++
			}
		} else {
			answered++
		}
	}
	return ringing, answered
}

// drainCalls waits until no call is ringing on this node.
func (n *Node) drainCalls(ctx context.Context, r *drainRun, deadline time.Time) error {
	start := time.Now()
	var lastNote time.Time
	for {
		ringing, answered := n.callsHere()
		now := time.Now()
		if ringing == 0 {
			r.say("calls: none ringing here (%s); %d answered call(s) of this node stay in the cluster state: "+
				"the nodes now processing their callers' Call-IDs adopt them once this node has left", secs(now.Sub(start)), answered)
			return nil
		}
		// Said before the deadline is checked: when the steps before took
		// the whole timeout, the operator still learns what was ringing.
		if lastNote.IsZero() || now.Sub(lastNote) >= callsNoteEvery {
			if now.Before(deadline) {
				r.say("calls: %d ringing, %d answered here; waiting up to %s for the ringing ones to be answered or to fail",
					ringing, answered, secs(deadline.Sub(now)))
			} else {
				r.say("calls: %d ringing, %d answered here", ringing, answered)
			}
			lastNote = now
		}
		if now.After(deadline) {
			err := fmt.Errorf("calls: %d still ringing here after the %s timeout: drain again with a longer --timeout, "+
				"or with --force to cut them", ringing, r.opts.Timeout)
			if !r.opts.Force {
				return err
			}
			r.say("%v; --force: going on", err)
			return nil
		}
		if err := sleepOrDone(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}
