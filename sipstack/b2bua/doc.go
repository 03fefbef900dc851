// Package b2bua is troika's back-to-back user agent. Every call is two
// (or, while forking, more) independent dialogs. The caller's INVITE ends
// at the switch, which answers it as a UAS; each callee leg is a new
// INVITE the switch sends as a UAC, with its own Call-ID, tags, Via,
// Contact and CSeq, from the socket the callee registered through (see
// deliveryTargets). Only SDP and a short list of
// sanitized headers cross from one leg to the other (relayedHeaders).
//
// The life of a call, by file:
//
//	HandleInvite    checks, authorization (sipstack/auth: a vendor
//	                connection by source address or vendor digest, else
//	                the account's
//	                digest, 407), destination (a vendor call's numbers
//	                translated: vendor.go), StartCall (reserve); invite.go
//	call.deliver    offers the call in steps (followme.go): the
//	                callee's own targets forked at once, then the targets
//	                of their 3xx one at a time as its service policy allows
//	                (redirect.go), then its follow-me entries; relays
//	                18x; first 2xx wins, the others are CANCELled (or ACKed
//	                and BYEd when their 2xx comes late); Timer C
//	                (RingTimeout, over all steps) and the caller's CANCEL
//	                end it; otherwise the best failure is relayed;
//	                call.go, fork.go
//	call.connect    200 to the caller, ACK to the callee, AnswerCall with
//	                both legs' dialog state, 2xx retransmission until the
//	                caller's ACK; answer.go
//	watchPaidTime   the call's paid time: the next chunk reserved
//	                (ExtendCall) before the current one runs out, the call
//	                cut when its money pays for no more; calltime.go
//	call.hangup     BYE the other leg(s) and EndCall: exactly once per
//	                call, whoever ends it (a BYE from either side, the
//	                timer, a missing ACK)
//
// In-dialog requests are matched by Call-ID and tags (callTable,
// calltable.go): re-INVITE, UPDATE and INFO are relayed to the other leg
// (relay.go), anything unknown gets 481. Billing is all in the fsm:
// StartCall reserves (the whole call, or with Calls.ReserveChunkSeconds
// its first chunk), ExtendCall reserves the next chunk, EndCall debits
// and files the xDR; the B2BUA only measures time, asks for chunks and
// reports how the call ended.
//
// Timestamps written to the fsm, and the paid time, come from
// Config.Now (a test's clock re-arms the timers when it jumps:
// Config.ClockJumps); the other timers use the monotonic clock. Answered
// calls live in the cluster state with both legs' dialog state, so
// another node adopts them when their node stops (adopt.go).
//
// The B2BUA sends from the node's sockets and relays through the
// dispatcher, through the Sockets and Router interfaces it declares; the
// SIP server (sipstack) provides both.
package b2bua
