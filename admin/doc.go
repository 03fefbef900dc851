// Package admin owns troika's HTTP JSON API, which docs/API.md describes
// endpoint by endpoint: the operator's and the CLI's way to manage
// accounts, tariffs, service policies, vendors and their connections, IP
// aliases and the cluster, to top up balances, to dry-run translation
// rules, to read registrations, calls in progress and xDRs (as JSON, or
// exported as CSV or JSON lines), and to drain a node. Every node serves
// it; writes are proposed to the replicated state through the Backend,
// which forwards them to the leader.
//
// Every request but /healthz and /metrics needs a bearer token; a token's
// scope is read (GETs under /v1/) or admin (everything). The node serves
// the API with HTTPServer's timeouts, over TLS (ServerTLS) when configured.
// The SIP passwords it sets pass a policy (CheckPassword) or are generated
// (GeneratePassword) and shown once.
//
// By file: server.go has the routes, the error format and the accounts'
// own handlers; auth.go the tokens and their scopes; httpserver.go the
// http.Server's timeouts and TLS; password.go the password policy and
// generator; resource.go the list, get, put and delete that every stored
// kind shares; types.go, policy.go, vendors.go and connections.go the
// JSON shapes and their conversion to and from the fsm's; billing.go
// top-ups, calls in progress and xDRs; drain.go the streamed drain.
// client.go (and drain.go's Client.Drain) is the Go client the CLI and
// tests use.
package admin
