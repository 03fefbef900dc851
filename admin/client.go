package admin

import (
	"bytes"
	"context"
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
	BaseURL string // e.g. http://127.0.0.1:8080
	Token   string
	HTTP    *http.Client
}

// NewClient returns a client for the node at base (a URL, or host:port).
func NewClient(base, token string) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{BaseURL: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
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
		return fmt.Errorf("%s %s: %w (is the node running and is --api right?)", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &APIError{Status: resp.StatusCode, Field: e.Field, Msg: e.Error}
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

// CreateAccount creates an account.
func (c *Client) CreateAccount(ctx context.Context, a Account) (Account, error) {
	var out Account
	return out, c.Do(ctx, http.MethodPost, "/v1/accounts", a, &out)
}

// ImportAccounts creates up to 5000 accounts, all or none.
func (c *Client) ImportAccounts(ctx context.Context, as []Account) error {
	return c.Do(ctx, http.MethodPost, "/v1/accounts/import", AccountImport{Accounts: as}, nil)
}

// Account reads one account.
func (c *Client) Account(ctx context.Context, id string) (Account, error) {
	var out Account
	return out, c.Do(ctx, http.MethodGet, "/v1/accounts/"+url.PathEscape(id), nil, &out)
}

// Accounts lists accounts.
func (c *Client) Accounts(ctx context.Context) ([]Account, error) {
	var out []Account
	return out, c.Do(ctx, http.MethodGet, "/v1/accounts", nil, &out)
}

// UpdateAccount changes the fields set in p.
func (c *Client) UpdateAccount(ctx context.Context, id string, p AccountPatch) (Account, error) {
	var out Account
	return out, c.Do(ctx, http.MethodPatch, "/v1/accounts/"+url.PathEscape(id), p, &out)
}

// DeleteAccount removes an account and its registrations.
func (c *Client) DeleteAccount(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/accounts/"+url.PathEscape(id), nil, nil)
}

// PutTariff creates or replaces a tariff.
func (c *Client) PutTariff(ctx context.Context, t Tariff) (Tariff, error) {
	var out Tariff
	return out, c.Do(ctx, http.MethodPost, "/v1/tariffs", t, &out)
}

// Tariffs lists tariffs.
func (c *Client) Tariffs(ctx context.Context) ([]Tariff, error) {
	var out []Tariff
	return out, c.Do(ctx, http.MethodGet, "/v1/tariffs", nil, &out)
}

// DeleteTariff removes a tariff no account uses.
func (c *Client) DeleteTariff(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/tariffs/"+url.PathEscape(id), nil, nil)
}

// PutAlias creates or replaces an IP alias.
func (c *Client) PutAlias(ctx context.Context, a Alias) (Alias, error) {
	var out Alias
	return out, c.Do(ctx, http.MethodPost, "/v1/aliases", a, &out)
}

// Aliases lists IP aliases.
func (c *Client) Aliases(ctx context.Context) ([]Alias, error) {
	var out []Alias
	return out, c.Do(ctx, http.MethodGet, "/v1/aliases", nil, &out)
}

// DeleteAlias removes an IP alias.
func (c *Client) DeleteAlias(ctx context.Context, ip string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/aliases/"+url.PathEscape(ip), nil, nil)
}

// PutServicePolicy creates or replaces a service policy.
func (c *Client) PutServicePolicy(ctx context.Context, p ServicePolicy) (ServicePolicy, error) {
	var out ServicePolicy
	return out, c.Do(ctx, http.MethodPost, "/v1/service-policies", p, &out)
}

// ServicePolicy reads one service policy.
func (c *Client) ServicePolicy(ctx context.Context, id string) (ServicePolicy, error) {
	var out ServicePolicy
	return out, c.Do(ctx, http.MethodGet, "/v1/service-policies/"+url.PathEscape(id), nil, &out)
}

// ServicePolicies lists service policies.
func (c *Client) ServicePolicies(ctx context.Context) ([]ServicePolicy, error) {
	var out []ServicePolicy
	return out, c.Do(ctx, http.MethodGet, "/v1/service-policies", nil, &out)
}

// DeleteServicePolicy removes a service policy no account uses.
func (c *Client) DeleteServicePolicy(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/service-policies/"+url.PathEscape(id), nil, nil)
}

// PutVendor creates or replaces a vendor (send its password again).
func (c *Client) PutVendor(ctx context.Context, v Vendor) (Vendor, error) {
	var out Vendor
	return out, c.Do(ctx, http.MethodPost, "/v1/vendors", v, &out)
}

// Vendor reads one vendor (without its password).
func (c *Client) Vendor(ctx context.Context, id string) (Vendor, error) {
	var out Vendor
	return out, c.Do(ctx, http.MethodGet, "/v1/vendors/"+url.PathEscape(id), nil, &out)
}

// Vendors lists vendors.
func (c *Client) Vendors(ctx context.Context) ([]Vendor, error) {
	var out []Vendor
	return out, c.Do(ctx, http.MethodGet, "/v1/vendors", nil, &out)
}

// DeleteVendor removes a vendor without connections.
func (c *Client) DeleteVendor(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/vendors/"+url.PathEscape(id), nil, nil)
}

// PutConnection creates or replaces a vendor connection.
func (c *Client) PutConnection(ctx context.Context, cn Connection) (Connection, error) {
	var out Connection
	return out, c.Do(ctx, http.MethodPost, "/v1/connections", cn, &out)
}

// Connection reads one vendor connection.
func (c *Client) Connection(ctx context.Context, id string) (Connection, error) {
	var out Connection
	return out, c.Do(ctx, http.MethodGet, "/v1/connections/"+url.PathEscape(id), nil, &out)
}

// Connections lists vendor connections.
func (c *Client) Connections(ctx context.Context) ([]Connection, error) {
	var out []Connection
	return out, c.Do(ctx, http.MethodGet, "/v1/connections", nil, &out)
}

// DeleteConnection removes a vendor connection.
func (c *Client) DeleteConnection(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/connections/"+url.PathEscape(id), nil, nil)
}

// Translate runs a connection's translation rules on numbers, changing
// nothing.
func (c *Client) Translate(ctx context.Context, id string, in TranslateRequest) (TranslateResult, error) {
	var out TranslateResult
	return out, c.Do(ctx, http.MethodPost, "/v1/connections/"+url.PathEscape(id)+"/translate", in, &out)
}

// Registrations lists current bindings, of one account if account != "".
func (c *Client) Registrations(ctx context.Context, account string) ([]Registration, error) {
	path := "/v1/registrations"
	if account != "" {
		path += "?account=" + url.QueryEscape(account)
	}
	var out []Registration
	return out, c.Do(ctx, http.MethodGet, path, nil, &out)
}

// ClusterStatus returns GET /v1/cluster as raw JSON.
func (c *Client) ClusterStatus(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.Do(ctx, http.MethodGet, "/v1/cluster", nil, &out)
}

// Topup adds in.Amount to (negative: takes it from) an account's balance.
// Set in.Key and reuse it when retrying after an error: a top-up is
// applied at most once per key and account.
func (c *Client) Topup(ctx context.Context, id string, in TopupRequest) (TopupResult, error) {
	var out TopupResult
	return out, c.Do(ctx, http.MethodPost, "/v1/accounts/"+url.PathEscape(id)+"/topup", in, &out)
}

// Calls lists the calls in progress, of one account if account != "".
func (c *Client) Calls(ctx context.Context, account string) ([]Call, error) {
	path := "/v1/calls"
	if account != "" {
		path += "?account=" + url.QueryEscape(account)
	}
	var out []Call
	return out, c.Do(ctx, http.MethodGet, path, nil, &out)
}

// Call reads one call in progress by its (caller leg's) Call-ID.
func (c *Client) Call(ctx context.Context, id string) (Call, error) {
	var out Call
	return out, c.Do(ctx, http.MethodGet, "/v1/calls/"+url.PathEscape(id), nil, &out)
}

// XDRs reads one page of xDRs, oldest first: at most q.Limit (default
// 1000, at most 100000). For the next page set q.After to the last id.
func (c *Client) XDRs(ctx context.Context, q XDRQuery) ([]XDR, error) {
	path := "/v1/xdrs"
	if v := q.values(); len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out []XDR
	return out, c.Do(ctx, http.MethodGet, path, nil, &out)
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
	path := "/v1/xdrs?" + v.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := http.Client{}
	if c.HTTP != nil {
		hc = *c.HTTP
	}
	hc.Timeout = 0 // an export of millions of xDRs takes a while; ctx bounds it
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w (is the node running and is --api right?)", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return 0, &APIError{Status: resp.StatusCode, Field: e.Field, Msg: e.Error}
	}
	cnt := &recordCounter{w: w, csv: format == FormatCSV, progress: progress}
	if _, err := io.Copy(cnt, resp.Body); err != nil {
		return cnt.xdrs(), fmt.Errorf("export cut after %d xDRs: %w", cnt.xdrs(), err)
	}
	return cnt.xdrs(), nil
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
