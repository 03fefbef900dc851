package b2bua

import (
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
)

// Adoption: an answered call lives in the fsm with both legs' dialog state
// (AnswerCall), so when the node that ran it stops, whichever node now
// holds its sockets can carry on. A node adopts a call
//
//   - when an in-dialog request (BYE, re-INVITE, ...) matches no dialog of
//     its own but matches an answered call in the fsm, and
//   - when AdoptOrphans finds answered calls of nodes that are gone, to
//     watch their paid time (calltime.go): a call reserved by chunks is
//     extended by its adopter as by its node, and every call is still cut
//     when its money runs out.
//
// The adopted call has no INVITE transaction: it only answers in-dialog
// requests, relays them, extends and cuts the call as its paid time
// says, and ends it with EndCall. Before it runs a call, the adopter
// moves it to itself in the state (AdoptCall, applied only while the call
// is still its old node's): of two nodes adopting one call only the first
// carries it on, and a node that comes back does not take back a call
// adopted meanwhile (it claims its own calls through the log too, so a
// replica that has not caught up yet cannot mislead it).
// A call whose node is still up (Config.NodeAlive) is never adopted.

// errCallElsewhere: the call of an in-dialog request runs on another node
// that is up but could not be reached; the request is answered 503 (the
// phone retries) rather than the call run twice.
var errCallElsewhere = errors.New("the call runs on another node")

// adoptForRequest adopts the call an unknown in-dialog request belongs to.
func (b *B2BUA) adoptForRequest(req *sip.Request) (legRef, error) {
	cid := req.CallID()
	if cid == nil {
		return legRef{}, errNoCall
	}
	fc, ok := b.state.CallForDialog(cid.Value())
	if !ok || fc.ConnectAt == 0 {
		return legRef{}, errNoCall
	}
	if fc.Node != b.cfg.NodeID && b.nodeAlive(fc.Node) && req.Method != sip.BYE {
		// A BYE is taken here all the same: phones do not retry a BYE
		// that got 503, and a call nobody ends runs (and is billed) to
		// its maximum duration. EndCall is idempotent.
		b.log.Warn("an in-dialog request of a call running on another node, which is up but was not reached; answering 503",
			"call_id", fc.ID, "method", req.Method, "node", fc.Node)
		return legRef{}, errCallElsewhere
	}
	_, err := b.adopt(fc, "in-dialog "+string(req.Method))
	// Adopted here, by this request or, concurrently, by AdoptOrphans or
	// another request of the call.
	if ref, ok := b.calls.match(req); ok {
		return ref, nil
	}
	if err == nil {
		return legRef{}, errNoCall
	}
	b.log.Warn("cannot adopt the call of an in-dialog request", "call_id", fc.ID, "method", req.Method, "error", err)
	if errors.Is(err, errNoCall) {
		return legRef{}, errNoCall
	}
	return legRef{}, errCallElsewhere // retryable: 503
}

var errNoCall = errors.New("no such call")

// nodeAlive reports whether another node is up and runs its calls.
func (b *B2BUA) nodeAlive(node string) bool {
	return b.cfg.NodeAlive != nil && b.cfg.NodeAlive(node)
}

// AdoptOrphans adopts the answered calls not running here whose node is
// not up (Config.NodeAlive; or is this node, before a restart) and whose
// caller leg's Call-ID the dispatchers now send to this node (when
// processors are known: dispatch.go), or else whose caller leg's socket
// this node holds. The node calls it when membership changes and
// periodically. It returns how many it adopted.
func (b *B2BUA) AdoptOrphans() int {
	n := 0
	for _, fc := range b.state.Calls() {
		if fc.ConnectAt == 0 || len(fc.Legs) != 2 || fc.Node != b.cfg.NodeID && b.nodeAlive(fc.Node) {
			continue
		}
		if _, known := b.calls.lookup(fc.ID); known {
			continue
		}
		caller := legOf(fc, LegCaller)
		if caller == nil {
			continue
		}
		if mine, known := b.router.Owns(caller.CallID); known {
			if !mine {
				continue // the caller's Call-ID now goes to another node: it adopts
			}
		} else if b.sockets.Named(caller.Ingress) == nil {
			continue // another node holds the caller's socket: it adopts
		}
		if _, err := b.adopt(fc, "node "+fc.Node+" is gone"); err != nil {
			b.log.Warn("cannot adopt an orphaned call", "call_id", fc.ID, "node", fc.Node, "error", err)
			continue
		}
		n++
	}
	return n
}

// ForgetMoved drops the answered calls this node runs that the cluster
// state says are no longer its own: ended by another node (a BYE that
// reached an adopter while this node still ran the call) or moved to one
// (AdoptCall). Their legs heard from the node that carries them on, so
// nothing is sent. The node calls it with AdoptOrphans. It returns how
// many it dropped.
func (b *B2BUA) ForgetMoved() int {
	n := 0
	for _, c := range b.calls.all() {
		fc, ok := b.state.Call(c.id)
		if ok && fc.Node == b.cfg.NodeID {
			continue
		}
		if !c.forget() {
			continue
		}
		n++
		if ok {
			c.log.Info("another node carries the call on now: dropped here", "node", fc.Node)
		} else {
			c.log.Info("the call was ended by another node: dropped here")
		}
	}
	return n
}

func legOf(fc fsm.Call, role string) *fsm.Leg {
	for i := range fc.Legs {
		if fc.Legs[i].Role == role {
			return &fc.Legs[i]
		}
	}
	return nil
}

// adopt builds a running call from the fsm's record of an answered call,
// files its dialogs and arms its maximum-duration timer.
func (b *B2BUA) adopt(fc fsm.Call, why string) (*call, error) {
	callerLeg, calleeLeg := legOf(fc, LegCaller), legOf(fc, LegCallee)
	if callerLeg == nil || calleeLeg == nil {
		return nil, fmt.Errorf("call %s has no dialog state for both legs", fc.ID)
	}
	caller, err := dialogFromLeg(*callerLeg)
	if err != nil {
		return nil, fmt.Errorf("caller leg: %w", err)
	}
	callee, err := dialogFromLeg(*calleeLeg)
	if err != nil {
		return nil, fmt.Errorf("callee leg: %w", err)
	}
	if !b.acquireCall() {
		return nil, fmt.Errorf("this node is at its max_calls")
	}
	// Through the log, even for this node's own call after a restart: its
	// replica may not have applied yet that another node adopted the call
	// while this one was down.
	if b.cfg.AdoptThroughLog == nil || b.cfg.AdoptThroughLog() {
		res, err := b.proposeCall("adopt", &fsm.AdoptCall{ID: fc.ID, From: fc.Node, To: b.cfg.NodeID})
		switch {
		case err != nil:
			b.releaseCall()
			return nil, fmt.Errorf("moving the call to this node in the cluster state: %w", err)
		case res.Err != nil && res.Err.Code == fsm.CodeNotFound:
			b.releaseCall()
			return nil, fmt.Errorf("%w: %v", errNoCall, res.Err) // it ended meanwhile
		case res.Err != nil:
			b.releaseCall()
			return nil, fmt.Errorf("%w: %v", errCallElsewhere, res.Err)
		}
	}
	c := &call{
		b: b, id: fc.ID, account: fc.Account, cli: fc.CLI, cld: fc.CLD, started: time.Now(),
		log:        b.log.With("call_id", fc.ID, "account", fc.Account, "cld", fc.CLD, "adopted_from", fc.Node),
		caller:     caller,
		maxDur:     fc.MaxDuration,
		setupDone:  make(chan struct{}),
		cancelled:  make(chan struct{}),
		ending:     make(chan struct{}),
		answerDone: make(chan struct{}),
		ackCh:      make(chan *sip.Request, 1),
		acks:       map[ackKey]chan *sip.Request{},
		settled:    true,
		answered:   true,
	}
	close(c.setupDone)
	close(c.answerDone)
	c.winner = &fork{c: c, leg: callee, ackSent: true, cancelCh: make(chan struct{})}
	if !b.calls.add(caller.callID, legRef{c: c, d: caller}) {
		b.releaseCall()
		return nil, fmt.Errorf("call %s is already running here", fc.ID)
	}
	if !b.calls.add(callee.callID, legRef{c: c, d: callee}) {
		b.calls.remove(caller.callID, c)
		b.releaseCall()
		return nil, fmt.Errorf("callee leg %s is already running here", callee.callID)
	}
	connect := time.UnixMilli(fc.ConnectAt)
	c.log.Info("adopted a call from another node", "why", why, "connected", connect.UTC(),
		"paid_until", connect.Add(time.Duration(fc.MaxDuration)*time.Second).UTC())
	b.m.callsAdopted.Inc()
	// It goes on extending the call's reservation, chunk by chunk, and
	// cuts it when the money runs out.
	b.calls.goCall(func() { c.watchPaidTime(connect) })
	return c, nil
}

// adoptedCSeqGap is added to the local CSeq a leg had at the answer: the
// node that ran the call may have sent in-dialog requests since, which
// the fsm does not record, and a CSeq must never go backwards.
const adoptedCSeqGap = 1000

// dialogFromLeg rebuilds a dialog from its fsm record.
func dialogFromLeg(l fsm.Leg) (*dialog, error) {
	local, err := parseNameAddr(l.LocalURI)
	if err != nil {
		return nil, fmt.Errorf("local URI: %w", err)
	}
	remote, err := parseNameAddr(l.RemoteURI)
	if err != nil {
		return nil, fmt.Errorf("remote URI: %w", err)
	}
	var target sip.Uri
	if err := sip.ParseUri(l.RemoteTarget, &target); err != nil {
		return nil, fmt.Errorf("remote target %q: %w", l.RemoteTarget, err)
	}
	return &dialog{
		role: l.Role, sock: l.Ingress, transport: l.Transport, dest: l.Destination, callID: l.CallID,
		localTag: l.LocalTag, local: local, remote: remote,
		remoteTag: l.RemoteTag, target: target, routes: append([]string(nil), l.RouteSet...),
		localCSeq: l.LocalCSeq + adoptedCSeqGap, remoteCSeq: l.RemoteCSeq,
	}, nil
}

func parseNameAddr(s string) (nameAddr, error) {
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		return nameAddr{}, fmt.Errorf("%q: %w", s, err)
	}
	return nameAddr{uri: u}, nil
}
