// Package billing holds troika's pure money and rating rules, shared by
// fsm (which authorizes, reserves and debits inside Apply) and by the SIP
// stack and admin API:
//
//   - money: decimal strings to and from int64 micro-units (ParseMoney,
//     FormatMoney), never floats;
//   - rating: a tariff's rate by longest prefix (Lookup), the charged
//     seconds and price of a call by its intervals, free seconds and
//     connect fee, and the longest call a budget pays for (MaxDuration);
//   - translation rules: PortaBilling-style `s/pattern/replacement/`
//     chains that rewrite called and calling numbers, each match under a
//     timeout;
//   - redirect trust: trusted networks (addresses, CIDRs, domain names),
//     the decisions recorded for 3xx targets, and the hop limit.
//
// It does no I/O and keeps no state.
package billing
