// Package auth decides who a SIP request comes from: digest
// authentication (MD5 and SHA-256, qop=auth; RFC 3261 §22, RFC 7616, RFC
// 8760) with stateless nonces any node can verify, vendor connections
// recognised by source address or vendor credentials, and a limit on
// failed authentications per source. The registrar uses it with 401
// (Scheme WWW), the B2BUA with 407 (Proxy).
//
// It reads accounts, vendors and the cluster's nonce secret from the
// replicated state (State) and keeps nothing else but the failure counts.
package auth
