// Package registrar answers REGISTERs (RFC 3261 §10.3, with Path, RFC
// 3327, and +sip.instance/reg-id, RFC 5626): it authenticates the phone
// (sipstack/auth), turns its Contacts into an fsm.Register stamped with
// the socket it came in on, and answers 200 only once the bindings are
// committed by the cluster. A retransmitted REGISTER whose 200 was lost is
// recognised and answered again without a second write.
//
// Response codes:
//   - 401 with one WWW-Authenticate challenge per configured algorithm
//     (default SHA-256, then MD5) when there are no credentials for the
//     realm, the nonce is not ours, or the algorithm is not offered; with
//     stale=true when the credentials are right but the nonce expired.
//   - 403 Forbidden for a wrong password, an unknown account, a blocked
//     account, an Authorization username other than the To user, and any
//     source over the failed-authentication limit. Unknown accounts are
//     challenged and refused exactly like wrong passwords (same code,
//     reason and headers, and the same hashing work), so accounts cannot
//     be enumerated.
//   - 400 naming the problem for malformed requests; 420 for an
//     unsupported Require; 423 with Min-Expires.
//   - 403 Too Many Contacts past the AOR's cap: a policy refusal that
//     retrying cannot fix. 503 would make RFC 3263 clients fail over to the
//     next server and retry, getting the same answer from every node.
//   - 500 Stale CSeq when the fsm refuses a CSeq not above the binding's
//     (RFC 3261 §10.3 step 7: "the update MUST be aborted and the request
//     fails"; §12.2.2 answers out-of-order CSeqs with 500). No Retry-After:
//     repeating that request cannot succeed, the phone's next REGISTER
//     carries a higher CSeq.
//   - 503 with Retry-After when the cluster has no nonce secret yet, the
//     replicated write fails or times out, or too many REGISTERs are in
//     flight. A REGISTER is answered 200 only once its bindings are
//     committed.
package registrar
