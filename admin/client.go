package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls the admin API of one node.
type Client struct {
	BaseURL string // e.g. https://198.51.100.11:8443, or http://127.0.0.1:8080
	Token   string
	HTTP    *http.Client
	// Stale, when set, is called for an answer that carries StaleHeader:
	// the node knew no raft leader, so what it read may lag the cluster.
	Stale func(method, path string)
}

// checkStale calls c.Stale when resp is marked stale.
func (c *Client) checkStale(method, path string, resp *http.Response) {
	if c.Stale != nil && resp.Header.Get(StaleHeader) == "true" {
		c.Stale(method, path)
	}
}

// clientTimeout bounds a request that is not streamed.
const clientTimeout = 30 * time.Second

// NewClient returns a client for the node at base (a URL, or host:port
// for http). An https URL is checked against the system's CAs; use
// NewClientTLS for a node whose certificate another CA signed.
func NewClient(base, token string) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{BaseURL: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Timeout: clientTimeout}}
}

// ClientTLS is how a Client checks a node's certificate, and the
// certificate it shows when the node asks for one.
type ClientTLS struct {
	// CAFile holds the CA certificates (PEM) that signed the nodes'
	// certificates; "": the system's.
	CAFile string
	// CertFile and KeyFile are the client's certificate and key (PEM),
	// for a node that asks for one (admin.tls_client_ca_file).
	CertFile, KeyFile string
}

// NewClientTLS returns a client for the node at base over https (a URL,
// or host:port). The errors name the file that is wrong.
func NewClientTLS(base, token string, t ClientTLS) (*Client, error) {
	if !strings.Contains(base, "://") {
		base = "https://" + base
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("%s is not an https URL, and a CA file or client certificate is only for https: write https://%s", base, u.Host)
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		if conf.RootCAs, err = loadCAs(t.CAFile); err != nil {
			return nil, err
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s and key %s: %w", t.CertFile, t.KeyFile, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	case t.CertFile != "" || t.KeyFile != "":
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = conf
	tr.ForceAttemptHTTP2 = false
	return &Client{BaseURL: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Timeout: clientTimeout, Transport: tr}}, nil
}

// connError is a request that got no answer, with what to check.
func connError(method, path string, err error) error {
	var unknownCA x509.UnknownAuthorityError
	var wrongHost x509.HostnameError
	var alert tls.AlertError
	var hint string
	switch {
	case errors.As(err, &unknownCA):
		hint = "the node's certificate is not signed by a CA this client trusts: pass the CA's certificate with --ca-file (TROIKA_CA_FILE)"
	case errors.As(err, &wrongHost):
		hint = "the node's certificate is not for the address in --api: use a name or address the certificate lists"
	case errors.As(err, &alert) && (alert == 116 || alert == 42), // certificate_required, bad_certificate
		strings.Contains(err.Error(), "tls: certificate required"), strings.Contains(err.Error(), "tls: bad certificate"):
		hint = "the node wants a client certificate signed by its admin.tls_client_ca_file: pass --client-cert and --client-key"
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		hint = "the node serves plain http there: use http:// in --api, or turn TLS on (admin.tls_cert_file)"
	default:
		hint = "is the node running and is --api right?"
	}
	return fmt.Errorf("%s %s: %w (%s)", method, path, err, hint)
}

// APIError is a non-2xx answer.
type APIError struct {
	Status int
	Field  string
	Msg    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Msg)
}

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// Do sends one request; in (if not nil) is sent as JSON and a 2xx body is
// decoded into out (if not nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return connError(method, path, err)
	}
	defer resp.Body.Close()
	c.checkStale(method, path, resp)
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return apiError(resp.StatusCode, data)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if w, ok := out.(io.Writer); ok {
		_, err := w.Write(data)
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// The resource methods below are one line each over these: a GET that
// decodes T, a POST that sends a body and decodes T, and a DELETE.

func get[T any](ctx context.Context, c *Client, path string) (T, error) {
	var out T
	return out, c.Do(ctx, http.MethodGet, path, nil, &out)
}

func send[T any](ctx context.Context, c *Client, method, path string, in any) (T, error) {
	var out T
	return out, c.Do(ctx, method, path, in, &out)
}

func post[T any](ctx context.Context, c *Client, path string, in any) (T, error) {
	return send[T](ctx, c, http.MethodPost, path, in)
}

func del(ctx context.Context, c *Client, path string) error {
	return c.Do(ctx, http.MethodDelete, path, nil, nil)
}

// item is the path of one member of a collection: /v1/accounts/ID.
func item(collection, id string) string { return collection + "/" + url.PathEscape(id) }

// withAccount adds "?account=..." to path when account is set.
func withAccount(path, account string) string {
	if account != "" {
		path += "?account=" + url.QueryEscape(account)
	}
	return path
}

const (
	accountsPath    = "/v1/accounts"
	tariffsPath     = "/v1/tariffs"
	aliasesPath     = "/v1/aliases"
	policiesPath    = "/v1/service-policies"
	vendorsPath     = "/v1/vendors"
	connectionsPath = "/v1/connections"
	callsPath       = "/v1/calls"
)

// CreateAccount creates an account.
func (c *Client) CreateAccount(ctx context.Context, a Account) (Account, error) {
	return post[Account](ctx, c, accountsPath, a)
}

// ImportAccounts creates up to 5000 accounts, all or none.
func (c *Client) ImportAccounts(ctx context.Context, as []Account) error {
	return c.Do(ctx, http.MethodPost, accountsPath+"/import", AccountImport{Accounts: as}, nil)
}

// Account reads one account.
func (c *Client) Account(ctx context.Context, id string) (Account, error) {
	return get[Account](ctx, c, item(accountsPath, id))
}

// Accounts lists accounts.
func (c *Client) Accounts(ctx context.Context) ([]Account, error) {
	return get[[]Account](ctx, c, accountsPath)
}

// UpdateAccount changes the fields set in p.
func (c *Client) UpdateAccount(ctx context.Context, id string, p AccountPatch) (Account, error) {
	return send[Account](ctx, c, http.MethodPatch, item(accountsPath, id), p)
}

// DeleteAccount removes an account and its registrations.
func (c *Client) DeleteAccount(ctx context.Context, id string) error {
	return del(ctx, c, item(accountsPath, id))
}

// ForceDeleteAccount deletes an account even when it holds a balance,
// registered contacts or calls in progress (DeleteAccount refuses those
// with 409): its money is lost; the node logs what it held.
func (c *Client) ForceDeleteAccount(ctx context.Context, id string) error {
	return del(ctx, c, item(accountsPath, id)+"?force=true")
}

// PutTariff creates or replaces a tariff.
func (c *Client) PutTariff(ctx context.Context, t Tariff) (Tariff, error) {
	return post[Tariff](ctx, c, tariffsPath, t)
}

// Tariffs lists tariffs.
func (c *Client) Tariffs(ctx context.Context) ([]Tariff, error) {
	return get[[]Tariff](ctx, c, tariffsPath)
}

// DeleteTariff removes a tariff no account uses.
func (c *Client) DeleteTariff(ctx context.Context, id string) error {
	return del(ctx, c, item(tariffsPath, id))
}

// PutAlias creates or replaces an IP alias.
func (c *Client) PutAlias(ctx context.Context, a Alias) (Alias, error) {
	return post[Alias](ctx, c, aliasesPath, a)
}

// Aliases lists IP aliases.
func (c *Client) Aliases(ctx context.Context) ([]Alias, error) {
	return get[[]Alias](ctx, c, aliasesPath)
}

// DeleteAlias removes an IP alias.
func (c *Client) DeleteAlias(ctx context.Context, ip string) error {
	return del(ctx, c, item(aliasesPath, ip))
}

// PutServicePolicy creates or replaces a service policy.
func (c *Client) PutServicePolicy(ctx context.Context, p ServicePolicy) (ServicePolicy, error) {
	return post[ServicePolicy](ctx, c, policiesPath, p)
}

// ServicePolicy reads one service policy.
func (c *Client) ServicePolicy(ctx context.Context, id string) (ServicePolicy, error) {
	return get[ServicePolicy](ctx, c, item(policiesPath, id))
}

// ServicePolicies lists service policies.
func (c *Client) ServicePolicies(ctx context.Context) ([]ServicePolicy, error) {
	return get[[]ServicePolicy](ctx, c, policiesPath)
}

// DeleteServicePolicy removes a service policy no account uses.
func (c *Client) DeleteServicePolicy(ctx context.Context, id string) error {
	return del(ctx, c, item(policiesPath, id))
}

// PutVendor creates or replaces a vendor (send its password again).
func (c *Client) PutVendor(ctx context.Context, v Vendor) (Vendor, error) {
	return post[Vendor](ctx, c, vendorsPath, v)
}

// Vendor reads one vendor (without its password).
func (c *Client) Vendor(ctx context.Context, id string) (Vendor, error) {
	return get[Vendor](ctx, c, item(vendorsPath, id))
}

// Vendors lists vendors.
func (c *Client) Vendors(ctx context.Context) ([]Vendor, error) {
	return get[[]Vendor](ctx, c, vendorsPath)
}

// DeleteVendor removes a vendor without connections.
func (c *Client) DeleteVendor(ctx context.Context, id string) error {
	return del(ctx, c, item(vendorsPath, id))
}

// PutConnection creates or replaces a vendor connection.
func (c *Client) PutConnection(ctx context.Context, cn Connection) (Connection, error) {
	return post[Connection](ctx, c, connectionsPath, cn)
}

// Connection reads one vendor connection.
func (c *Client) Connection(ctx context.Context, id string) (Connection, error) {
	return get[Connection](ctx, c, item(connectionsPath, id))
}

// Connections lists vendor connections.
func (c *Client) Connections(ctx context.Context) ([]Connection, error) {
	return get[[]Connection](ctx, c, connectionsPath)
}

// DeleteConnection removes a vendor connection.
func (c *Client) DeleteConnection(ctx context.Context, id string) error {
	return del(ctx, c, item(connectionsPath, id))
}

// Translate runs a connection's translation rules on numbers, changing
// nothing.
func (c *Client) Translate(ctx context.Context, id string, in TranslateRequest) (TranslateResult, error) {
	return post[TranslateResult](ctx, c, item(connectionsPath, id)+"/translate", in)
}

// Registrations lists current bindings, of one account if account != "".
func (c *Client) Registrations(ctx context.Context, account string) ([]Registration, error) {
	return get[[]Registration](ctx, c, withAccount("/v1/registrations", account))
}

// Status reads GET /v1/status, the status page's overview.
func (c *Client) Status(ctx context.Context) (Overview, error) {
	return get[Overview](ctx, c, "/v1/status")
}

// ClusterStatus returns GET /v1/cluster as raw JSON.
func (c *Client) ClusterStatus(ctx context.Context) (json.RawMessage, error) {
	return get[json.RawMessage](ctx, c, "/v1/cluster")
}

// LogLevel reads the node's log level.
func (c *Client) LogLevel(ctx context.Context) (LogLevel, error) {
	return get[LogLevel](ctx, c, "/v1/log-level")
}

// SetLogLevel sets the node's log level (debug, info, warn, error) until
// it restarts.
func (c *Client) SetLogLevel(ctx context.Context, level string) (LogLevel, error) {
	return send[LogLevel](ctx, c, http.MethodPut, "/v1/log-level", LogLevel{Level: level})
}

// Topup adds in.Amount to (negative: takes it from) an account's balance.
// Set in.Key and reuse it when retrying after an error: a top-up is
// applied at most once per key and account.
func (c *Client) Topup(ctx context.Context, id string, in TopupRequest) (TopupResult, error) {
	return post[TopupResult](ctx, c, item(accountsPath, id)+"/topup", in)
}

// Calls lists the calls in progress, of one account if account != "".
func (c *Client) Calls(ctx context.Context, account string) ([]Call, error) {
	return get[[]Call](ctx, c, withAccount(callsPath, account))
}

// Call reads one call in progress by its (caller leg's) Call-ID.
func (c *Client) Call(ctx context.Context, id string) (Call, error) {
	return get[Call](ctx, c, item(callsPath, id))
}

// XDRs reads one page of xDRs, oldest first: at most q.Limit (default
// 1000, at most 100000). For the next page set q.After to the last id.
func (c *Client) XDRs(ctx context.Context, q XDRQuery) ([]XDR, error) {
	path := "/v1/xdrs"
	if v := q.values(); len(v) > 0 {
		path += "?" + v.Encode()
	}
	return get[[]XDR](ctx, c, path)
}

// ExportXDRs streams the xDRs matching q (all of them unless q.Limit is
// set) to w as FormatCSV (with a header row) or FormatJSONL. It returns
// how many xDRs were written; progress, if not nil, is called with the
// running count as data arrives. It has no overall timeout beyond ctx.
func (c *Client) ExportXDRs(ctx context.Context, w io.Writer, q XDRQuery, format string, progress func(exported int)) (int, error) {
	if format != FormatCSV && format != FormatJSONL {
		return 0, fmt.Errorf("export format %q: use csv or jsonl", format)
	}
	v := q.values()
	v.Set("format", format)
	// An export of millions of xDRs takes a while; ctx bounds it.
	resp, err := c.stream(ctx, http.MethodGet, "/v1/xdrs?"+v.Encode(), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	cnt := &recordCounter{w: w, csv: format == FormatCSV, progress: progress}
	if _, err := io.Copy(cnt, resp.Body); err != nil {
		return cnt.xdrs(), fmt.Errorf("export cut after %d xDRs: %w", cnt.xdrs(), err)
	}
	return cnt.xdrs(), nil
}

// stream sends a request whose answer is long in coming or long (a drain,
// an export) without the client's overall timeout: only ctx bounds it. It
// returns a 2xx response, whose body the caller closes, or the API's
// error.
func (c *Client) stream(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.streamRequest(req, path)
}

// streamRequest sends req without the client's timeout (its context
// bounds it) and returns the answer when it is a 2xx, whose body the
// caller closes, or the API's error. path names the request in errors.
func (c *Client) streamRequest(req *http.Request, path string) (*http.Response, error) {
	hc := http.Client{}
	if c.HTTP != nil {
		hc = *c.HTTP
	}
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return nil, connError(req.Method, path, err)
	}
	c.checkStale(req.Method, path, resp)
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, apiError(resp.StatusCode, data)
	}
	return resp, nil
}

// apiError reads a non-2xx answer: the API's JSON error, or (from
// something in between, such as a proxy) the body as text.
func apiError(status int, body []byte) *APIError {
	var e Error
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(body))
	}
	return &APIError{Status: status, Field: e.Field, Msg: e.Error}
}

// recordCounter passes an export through and counts its records: lines of
// JSON lines; for CSV, line ends outside quoted fields (a field may hold a
// line break), less the header row.
type recordCounter struct {
	w        io.Writer
	csv      bool
	inQuote  bool
	records  int
	progress func(int)
}

func (r *recordCounter) Write(p []byte) (int, error) {
	n, err := r.w.Write(p)
	before := r.records
	for _, b := range p[:n] {
		switch {
		case b == '"' && r.csv:
			r.inQuote = !r.inQuote
		case b == '\n' && !r.inQuote:
			r.records++
		}
	}
	if r.progress != nil && r.records != before {
		r.progress(r.xdrs())
	}
	return n, err
}

func (r *recordCounter) xdrs() int {
	if r.csv && r.records > 0 {
		return r.records - 1
	}
	return r.records
}

// DropRegistrations removes an account's bindings (with contact != "",
// the one with that contact URI).
func (c *Client) DropRegistrations(ctx context.Context, account, contact string) (DropResult, error) {
	path := "/v1/registrations/" + url.PathEscape(account)
	if contact != "" {
		path += "?contact=" + url.QueryEscape(contact)
	}
	return send[DropResult](ctx, c, http.MethodDelete, path, nil)
}

// HangupCall ends an answered call run by the node c talks to, and
// returns its xDR (zero when the node has not applied the end yet).
func (c *Client) HangupCall(ctx context.Context, id string) (XDR, error) {
	return send[XDR](ctx, c, http.MethodDelete, item(callsPath, id), nil)
}

// AuthBlocks lists what the node's authentication blocks.
func (c *Client) AuthBlocks(ctx context.Context) (AuthBlocks, error) {
	return get[AuthBlocks](ctx, c, "/v1/auth/blocks")
}

// UnblockSource lifts the node's block of a source address.
func (c *Client) UnblockSource(ctx context.Context, ip string) error {
	return del(ctx, c, "/v1/auth/blocks/sources/"+url.PathEscape(ip))
}

// UnthrottleUser refills a user name's guesses on the node.
func (c *Client) UnthrottleUser(ctx context.Context, user string) error {
	return del(ctx, c, "/v1/auth/blocks/users/"+url.PathEscape(user))
}
