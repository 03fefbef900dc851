// Package fsm owns troika's replicated state: accounts, tariffs, IP aliases,
// registration bindings and the cluster's digest-nonce secret.
//
// Every change is a typed, versioned command (one type byte followed by a
// msgpack body, see command.go) applied by Machine.Apply. Apply is
// deterministic: times and random values travel inside the command, stamped
// by the proposer, so every replica reaches the same state from the same log.
// The package does no I/O beyond the snapshot streams it is handed and
// imports neither the SIP stack nor the consensus library.
package fsm
