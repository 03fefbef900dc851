// Package fsm is troika's replicated state machine: everything the cluster
// agrees on, changed only by commands from the consensus log.
//
// State holds accounts, tariffs, IP aliases, service policies (redirect
// trust), vendors and their connections, registration bindings, the
// digest-nonce secret, calls in progress with their billing sessions
// (money reserved per charge, the answered dialog's legs, the redirect
// records of RedirectCall) and, for calls reserved a chunk of call time
// at a time, their quotas (ExtendCall: quota.go), finished calls' xDRs (bounded by TrimRecords,
// with the idempotency keys of money transactions such as Topup), and the
// ownership map of the managed addresses (AssignAddresses, with epochs).
// Its methods read it from any goroutine, returning copies.
//
// Every change is a typed command: one type byte and a msgpack body
// (command.go), decoded by a table; a replica stops at an unknown type
// unless it is marked ignorable. State.Apply is deterministic: times, ids and
// secrets travel inside the command, stamped by the proposer, so every
// replica reaches the same state from the same log, and money-moving
// commands are idempotent. Money is int64 micro-units, rated by package
// billing.
//
// A Snapshot streams the whole state as type-tagged records, each kind
// sorted by its key, so one state gives the same bytes; Restore replaces
// the state only once a whole snapshot has been read. Golden files in
// testdata/golden pin the encoding of every command and of each released
// snapshot format.
//
// The package does no I/O beyond the snapshot streams it is handed and
// imports neither the SIP stack nor the consensus library.
package fsm
