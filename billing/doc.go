// Package billing holds troika's pure money and rating logic: decimal money
// in integer micro-units, and (as it grows) tariffs, call authorization
// rules, translation rules and redirect trust. It does no I/O and keeps no
// state, so fsm and sipstack can both use it.
package billing
