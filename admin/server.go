package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/troika-sip/troika/fsm"
)

// Backend is what the API needs from the node.
type Backend interface {
	// Propose applies a command to the replicated state.
	Propose(ctx context.Context, cmd fsm.Command) (fsm.Result, error)
	// ClusterStatus describes the cluster for GET /v1/cluster (any JSON value).
	ClusterStatus() any
}

// Config configures the API server.
type Config struct {
	// Token, if set, is a bearer token of scope admin (named "token"):
	// the single token of configurations from before scopes.
	Token string
	// Tokens are the bearer tokens with their scopes. Token and Tokens
	// together must hold at least one token of scope admin.
	Tokens  []Token
	Metrics http.Handler // served on /metrics without a token; nil: 404
	Logger  *slog.Logger
	Now     func() time.Time
	// WriteTimeout bounds how long a write waits for the replicated state.
	WriteTimeout time.Duration
	// Timeouts bound the connections of the server HTTPServer makes.
	Timeouts Timeouts
	// Level, when set, is the node's log level, read and set by
	// /v1/log-level.
	Level *slog.LevelVar
	// Keepalive, if set, tells GET /v1/registrations what the NAT
	// keepalive knows of each binding: one KeepaliveView per binding, in
	// order.
	Keepalive func([]fsm.Binding) []KeepaliveView
}

// KeepaliveView is what a node knows of a binding's NAT keepalive
// (sipstack/keepalive): which node pings it, and, when that is this
// node, whether the phone answers.
type KeepaliveView struct {
	Node      string    // the node that pings it ("" unknown, or keepalive off)
	Known     bool      // this node pings it: Reachable and LastSeen are set
	Reachable bool      // it answers (or registered since it stopped)
	LastSeen  time.Time // its last answer or REGISTER
}

// Server is the admin API's HTTP handler.
type Server struct {
	cfg     Config
	tokens  []tokenEntry
	state   *fsm.State
	backend Backend
	mux     *http.ServeMux
}

const maxBody = 8 << 20

// New returns the API handler.
func New(cfg Config, state *fsm.State, backend Backend) (*Server, error) {
	all := cfg.Tokens
	if cfg.Token != "" {
		all = append([]Token{{Name: LegacyTokenName, Scope: ScopeAdmin, Secret: cfg.Token}}, all...)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("admin: the API token must be at least %d characters", MinTokenLength)
	}
	tokens, err := newTokenSet(all)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	cfg.Timeouts = cfg.Timeouts.withDefaults()
	s := &Server{cfg: cfg, tokens: tokens, state: state, backend: backend, mux: http.NewServeMux()}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	// A GET needs a token of scope read (or admin); any other method
	// changes something (or, for a translation's dry run, runs rules) and
	// needs scope admin.
	v1 := func(pattern string, h handler) {
		method, path, _ := strings.Cut(pattern, " ")
		s.mux.Handle(method+" /v1"+path, s.authed(needs(method), h))
	}
	accounts := resource[Account, fsm.Account]{what: "account", key: "id", all: (*fsm.State).Accounts, one: (*fsm.State).Account,
		view: s.accountView, del: func(id string) fsm.Command { return &fsm.DeleteAccount{ID: id} }, delGuard: accountDeleteGuard}
	accounts.route(s, v1, "/accounts")
	v1("POST /accounts", s.createAccount)
	v1("POST /accounts/import", s.importAccounts)
	v1("PATCH /accounts/{id}", s.updateAccount)
	v1("POST /accounts/{id}/topup", s.topup)
	tariffs.route(s, v1, "/tariffs")
	aliases.route(s, v1, "/aliases")
	servicePolicies.route(s, v1, "/service-policies")
	vendors.route(s, v1, "/vendors")
	connections.route(s, v1, "/connections")
	v1("POST /connections/{id}/translate", s.translate)
	v1("GET /registrations", s.listRegistrations)
	v1("DELETE /registrations/{account}", s.dropRegistrations)
	v1("GET /calls", s.listCalls)
	v1("GET /calls/{id}", s.getCall)
	v1("DELETE /calls/{id}", backendPart(s, noOperator, s.hangupCall))
	v1("GET /auth/blocks", backendPart(s, noOperator, s.authBlocks))
	v1("DELETE /auth/blocks/sources/{ip}", backendPart(s, noOperator, s.unblockSource))
	v1("DELETE /auth/blocks/users/{user}", backendPart(s, noOperator, s.unthrottleUser))
	v1("GET /xdrs", s.listXDRs)
	v1("GET /cluster", s.clusterStatus)
	v1("POST /cluster/drain", backendPart(s, noDrainer, s.drain))
	v1("GET /log-level", s.logLevel)
	v1("PUT /log-level", s.setLogLevel)
	s.snapshotRoutes(v1) // snapshot.go
	s.raftRoutes(v1)     // raft.go
	// Profiles for the engineer on call (heap, goroutines, CPU), behind an
	// admin token. A profile over ?seconds= outlasts the connection's
	// timeouts: lift them.
	for _, name := range []string{"heap", "goroutine", "allocs", "block", "mutex", "threadcreate"} {
		s.mux.Handle("GET /debug/pprof/"+name, s.authedHandler(streamed(pprof.Handler(name))))
	}
	s.mux.Handle("GET /debug/pprof/profile", s.authedHandler(streamed(http.HandlerFunc(pprof.Profile))))
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	v1("GET /status", s.overview)
	s.mux.HandleFunc("GET /{$}", s.statusPage)
	if s.cfg.Metrics != nil {
		s.mux.Handle("GET /metrics", s.cfg.Metrics)
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, Error{Error: fmt.Sprintf("no such endpoint: %s %s (see docs/API.md for the API)", r.Method, r.URL.Path)})
	})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// httpError is an error with the HTTP status it maps to.
type httpError struct {
	status int
	body   Error
}

func (e *httpError) Error() string { return e.body.Error }

func badRequest(field, format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, body: Error{Field: field, Error: fieldMsg(field, fmt.Sprintf(format, args...))}}
}

func fieldMsg(field, msg string) string {
	if field == "" {
		return msg
	}
	return field + ": " + msg
}

// authedHandler guards a plain handler with an admin token.
func (s *Server) authedHandler(h http.Handler) http.Handler {
	return s.authed(ScopeAdmin, func(w http.ResponseWriter, r *http.Request) error {
		h.ServeHTTP(w, r)
		return nil
	})
}

// authed guards h with a bearer token of scope need (auth.go) and maps
// the error h returns to its answer.
func (s *Server) authed(need Scope, h handler) http.Handler { return s.authedLimit(need, maxBody, h) }

// authedLimit is authed for a request body of up to limit bytes.
func (s *Server) authedLimit(need Scope, limit int64, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, ok := s.checkToken(w, r, need)
		if !ok {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		if r.Method != http.MethodGet {
			rec := &statusRecorder{ResponseWriter: w}
			defer func() { s.audit(r, rec.status) }()
			w = rec
		}
		s.markStale(w, r)
		err := h(w, r)
		if err == nil {
			return
		}
		var he *httpError
		if !errors.As(err, &he) {
			s.cfg.Logger.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "token", TokenName(r.Context()), "error", err)
			he = &httpError{status: http.StatusServiceUnavailable, body: Error{Error: err.Error()}}
		}
		writeJSON(w, he.status, he.body)
	})
}

// audit logs a request that may change something (any method but GET):
// who (the token's name), what (method and path; never the body, which
// may hold a password) and how it ended (the status). Money handlers log
// the balance before and after on their own line.
func (s *Server) audit(r *http.Request, status int) {
	if status == 0 {
		status = http.StatusOK
	}
	s.cfg.Logger.Info("audit: admin API write", "token", TokenName(r.Context()), "method", r.Method, "path", r.URL.Path,
		"query", r.URL.RawQuery, "status", status, "remote", r.RemoteAddr)
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushing a
// drain's progress, lifting deadlines).
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decode reads a strict JSON body into v: unknown fields, wrong types,
// trailing data and oversized bodies are 400s naming what is wrong.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.More() {
			return badRequest("", "unexpected data after the JSON object")
		}
		if _, err := dec.Token(); err != io.EOF {
			return badRequest("", "unexpected data after the JSON object")
		}
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &typeErr):
		return badRequest(typeErr.Field, "must be a JSON %s, not %s", typeErr.Type.Kind(), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return badRequest("", "malformed JSON at byte %d: %v", syntaxErr.Offset, err)
	case errors.As(err, &tooBig):
		return &httpError{status: http.StatusRequestEntityTooLarge, body: Error{Error: fmt.Sprintf("body over %d bytes", tooBig.Limit)}}
	case errors.Is(err, io.EOF):
		return badRequest("", "a JSON body is required")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequest(field, "unknown field")
	default:
		return badRequest("", "malformed JSON: %v", err)
	}
}

// invalid maps a validation error to a 400 naming the field (an
// *httpError keeps its own status).
func invalid(err error) error {
	var fe *fsm.FieldError
	var he *httpError
	if errors.As(err, &he) {
		return he
	}
	if errors.As(err, &fe) {
		return badRequest(fe.Field, "%s", fe.Msg)
	}
	return badRequest("", "%v", err)
}

// propose applies cmd and maps a refusal to its HTTP status.
func (s *Server) propose(r *http.Request, cmd fsm.Command) (fsm.Result, error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	res, err := s.backend.Propose(ctx, cmd)
	if err != nil {
		return res, &httpError{status: http.StatusServiceUnavailable, body: Error{Error: "the change was not confirmed by the cluster: " + err.Error() + ". Check `troika cluster status`; it is safe to retry."}}
	}
	if e := res.Err; e != nil {
		status := map[fsm.ErrCode]int{
			fsm.CodeInvalid: http.StatusBadRequest, fsm.CodeNotFound: http.StatusNotFound,
			fsm.CodeExists: http.StatusConflict, fsm.CodeConflict: http.StatusConflict,
			fsm.CodeInsufficientFunds: http.StatusConflict,
		}[e.Code]
		if status == 0 {
			status = http.StatusUnprocessableEntity
		}
		return res, &httpError{status: status, body: Error{Field: e.Field, Error: fieldMsg(e.Field, e.Msg)}}
	}
	return res, nil
}

// backendPart is the handler of an endpoint that needs a part of the
// Backend that not every backend has (a P: Operator, RaftOperator,
// Snapshots, Drainer): h serves the request with the backend as a P, and
// a backend that is not one answers 501 with missing.
func backendPart[P any](s *Server, missing string, h func(http.ResponseWriter, *http.Request, P) error) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		part, ok := s.backend.(P)
		if !ok {
			return &httpError{status: http.StatusNotImplemented, body: Error{Error: missing}}
		}
		return h(w, r, part)
	}
}

func notFound(what, id string) error {
	return &httpError{status: http.StatusNotFound, body: Error{Error: fmt.Sprintf("no %s %s", what, id)}}
}

func (s *Server) now() int64 { return s.cfg.Now().UnixMilli() }

// accountView is an account as the API shows it, with the money its calls
// in progress hold.
func (s *Server) accountView(a fsm.Account) Account {
	return accountFromFSM(a, s.state.Reserved(a.ID))
}

// createAccount creates an account with a password that passes the
// policy, or a generated one that the answer holds (the only answer that
// ever shows a password).
func (s *Server) createAccount(w http.ResponseWriter, r *http.Request) error {
	var in Account
	if err := decode(r, &in); err != nil {
		return err
	}
	gen, err := generated(&in.Password, in.GeneratePassword, in.ID)
	if err != nil {
		return invalid(err)
	}
	a, err := in.toFSM()
	if err == nil {
		err = CheckPassword(in.Password, a.ID)
	}
	if err != nil {
		return invalid(err)
	}
	return s.proposeAccount(w, r, &fsm.CreateAccount{Account: a, Now: s.now()}, http.StatusCreated, gen)
}

func (s *Server) importAccounts(w http.ResponseWriter, r *http.Request) error {
	var in AccountImport
	if err := decode(r, &in); err != nil {
		return err
	}
	if len(in.Accounts) == 0 || len(in.Accounts) > 5000 {
		return badRequest("accounts", "send 1 to 5000 accounts per request (got %d)", len(in.Accounts))
	}
	cmd := &fsm.CreateAccounts{Now: s.now()}
	for i := range in.Accounts {
		if in.Accounts[i].GeneratePassword {
			return badRequest(fmt.Sprintf("accounts[%d].generate_password", i),
				"not in an import (the answer holds no passwords, and a re-run must send the same ones): give each account its password, or create it with POST /v1/accounts")
		}
		a, err := in.Accounts[i].toFSM()
		if err == nil {
			err = CheckPassword(in.Accounts[i].Password, a.ID)
		}
		if err != nil {
			var fe *fsm.FieldError
			if errors.As(err, &fe) {
				return badRequest(fmt.Sprintf("accounts[%d].%s", i, fe.Field), "%s", fe.Msg)
			}
			return badRequest(fmt.Sprintf("accounts[%d]", i), "%v", err)
		}
		cmd.Accounts = append(cmd.Accounts, a)
	}
	if _, err := s.propose(r, cmd); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]int{"imported": len(cmd.Accounts)})
	return nil
}

// updateAccount changes the fields the body has. A new password passes
// the policy, or is generated and shown in the answer.
func (s *Server) updateAccount(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var in AccountPatch
	if err := decode(r, &in); err != nil {
		return err
	}
	var pw, gen string
	if in.Password != nil {
		pw = *in.Password
	}
	gen, err := generated(&pw, in.GeneratePassword, id)
	if err != nil {
		return invalid(err)
	}
	if in.Password != nil || gen != "" {
		in.Password = &pw
	}
	p, err := in.toFSM()
	if err == nil && in.Password != nil {
		err = CheckPassword(pw, id)
	}
	if err != nil {
		return invalid(err)
	}
	return s.proposeAccount(w, r, &fsm.UpdateAccount{ID: id, Patch: p}, http.StatusOK, gen)
}

// proposeAccount proposes cmd, which writes one account, and answers
// with status and the account as written, holding password (one the API
// generated; "": none).
func (s *Server) proposeAccount(w http.ResponseWriter, r *http.Request, cmd fsm.Command, status int, password string) error {
	res, err := s.propose(r, cmd)
	if err != nil {
		return err
	}
	out := s.accountView(*res.Account)
	out.Password = password
	writeJSON(w, status, out)
	return nil
}

var tariffs = resource[Tariff, fsm.Tariff]{what: "tariff", key: "id", all: (*fsm.State).Tariffs, one: (*fsm.State).Tariff,
	view: tariffFromFSM, in: (*Tariff).toFSM, put: func(t fsm.Tariff) fsm.Command { return &fsm.PutTariff{Tariff: t} },
	del: func(id string) fsm.Command { return &fsm.DeleteTariff{ID: id} }}

var aliases = resource[Alias, fsm.Alias]{what: "alias", key: "ip", all: (*fsm.State).Aliases, one: (*fsm.State).Alias,
	view: aliasFromFSM, in: (*Alias).toFSM, put: func(a fsm.Alias) fsm.Command { return &fsm.PutAlias{Alias: a} },
	del: func(ip string) fsm.Command { return &fsm.DeleteAlias{IP: ip} }}

func (s *Server) listRegistrations(w http.ResponseWriter, r *http.Request) error {
	now := s.now()
	var bs []fsm.Binding
	if acct := r.URL.Query().Get("account"); acct != "" {
		bs = s.state.Bindings(acct, now)
	} else {
		bs = s.state.AllBindings(now)
	}
	out := make([]Registration, 0, len(bs))
	for _, b := range bs {
		out = append(out, registrationFromFSM(b, now))
	}
	if s.cfg.Keepalive != nil {
		for i, k := range s.cfg.Keepalive(bs) {
			if i < len(out) {
				out[i].withKeepalive(k)
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, s.backend.ClusterStatus())
	return nil
}
