package admin

import (
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
)

// The billing side of the API: top-ups, calls in progress and xDRs
// (docs/API.md).

// TimeLayout is how the API writes instants: RFC 3339, UTC, millisecond
// precision.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Timestamp is an instant as the billing endpoints write it, e.g.
// "2026-11-22T10:00:00.250Z". It reads any RFC 3339 time.
type Timestamp struct{ time.Time }

func stamp(ms int64) Timestamp { return Timestamp{time.UnixMilli(ms).UTC()} }

// optStamp is nil for 0 (e.g. a call not answered): JSON null.
func optStamp(ms int64) *Timestamp {
	if ms == 0 {
		return nil
	}
	t := stamp(ms)
	return &t
}

// String formats t in TimeLayout.
func (t Timestamp) String() string { return t.UTC().Format(TimeLayout) }

// MarshalJSON writes t as a TimeLayout string.
func (t Timestamp) MarshalJSON() ([]byte, error) { return []byte(`"` + t.String() + `"`), nil }

// UnmarshalJSON reads an RFC 3339 string.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	t.Time = v.UTC()
	return nil
}

// Call is a call in progress as GET /v1/calls shows it.
type Call struct {
	ID            string       `json:"id"`
	Direction     string       `json:"direction"`
	Account       string       `json:"account"`
	CLI           string       `json:"cli"`
	CLD           string       `json:"cld"`
	CLDTranslated string       `json:"cld_translated"`
	Parties       []string     `json:"parties"`
	Charges       []CallCharge `json:"charges"`
	MaxDuration   int          `json:"max_duration"` // seconds the call may last
	SetupAt       Timestamp    `json:"setup_at"`
	ConnectAt     *Timestamp   `json:"connect_at"` // null until answered
	Duration      int          `json:"duration"`   // seconds since answer, by the serving node's clock
	Node          string       `json:"node"`
	Legs          []CallLeg    `json:"legs"`
	Vendor        string       `json:"vendor"`
	Connection    string       `json:"connection"`
	Redirects     []Redirect   `json:"redirects"`
	Quota         *CallQuota   `json:"quota"` // null: the call reserved its whole length at setup
}

// CallQuota is how a call reserves its money a chunk of call time at a
// time (billing.reserve_chunk).
type CallQuota struct {
	Chunk      int  `json:"chunk"`      // seconds each reservation pays for
	Extensions int  `json:"extensions"` // chunks reserved after the first
	Final      bool `json:"final"`      // the money paid for no whole chunk more: the call is cut at max_duration
}

// CallCharge is one account's billing session in a call in progress.
type CallCharge struct {
	Account     string `json:"account"`
	Role        string `json:"role"`
	Number      string `json:"number"`
	Tariff      string `json:"tariff"`
	Prefix      string `json:"prefix"`
	PerMinute   string `json:"per_minute"`
	Reserved    string `json:"reserved"`
	MaxDuration int    `json:"max_duration"`
}

// CallLeg is one side of an answered call.
type CallLeg struct {
	Role        string `json:"role"`
	CallID      string `json:"call_id"`
	Ingress     string `json:"ingress"`
	Destination string `json:"destination"`
	Transport   string `json:"transport"`
}

// Redirect is a 3xx target the switch acted on and what it decided.
type Redirect struct {
	Target   string `json:"target"`
	Decision string `json:"decision"`
}

// XDR is the record of a finished call.
type XDR struct {
	ID            uint64     `json:"id"` // increasing: use it as ?after= for incremental export
	CallID        string     `json:"call_id"`
	Account       string     `json:"account"`
	Direction     string     `json:"direction"`
	CLI           string     `json:"cli"`
	CLD           string     `json:"cld"`
	CLDTranslated string     `json:"cld_translated"`
	SetupAt       Timestamp  `json:"setup_at"`
	ConnectAt     *Timestamp `json:"connect_at"` // null: not answered
	DisconnectAt  Timestamp  `json:"disconnect_at"`
	Duration      int        `json:"duration"`
	// ChargedSeconds are those of the primary charge: the first charge of
	// the xDR's own account (0 when it has none).
	ChargedSeconds int         `json:"charged_seconds"`
	Amount         string      `json:"amount"` // all charges together
	Charges        []XDRCharge `json:"charges"`
	Cause          int         `json:"cause"`
	CauseText      string      `json:"cause_text"`
	DisconnectedBy string      `json:"disconnected_by"`
	Vendor         string      `json:"vendor"`
	Connection     string      `json:"connection"`
	VendorCost     string      `json:"vendor_cost"`
	Redirects      []Redirect  `json:"redirects"`
	Node           string      `json:"node"`
}

// XDRCharge is what one account paid for a call.
type XDRCharge struct {
	Account string `json:"account"`
	Role    string `json:"role"`
	Number  string `json:"number"`
	Tariff  string `json:"tariff"`
	Prefix  string `json:"prefix"`
	Seconds int    `json:"seconds"`
	Amount  string `json:"amount"`
}

// XDRQuery selects xDRs: GET /v1/xdrs?account=&since=&after=&limit=.
type XDRQuery struct {
	Account string    // only xDRs filed under or charging this account
	Since   time.Time // only calls disconnected at or after it (zero: no bound)
	After   uint64    // only xDRs with a higher id (incremental export)
	Limit   int       // at most this many; 0: 1000 for JSON, everything for exports
}

func (q XDRQuery) values() url.Values {
	v := url.Values{}
	if q.Account != "" {
		v.Set("account", q.Account)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if q.After != 0 {
		v.Set("after", strconv.FormatUint(q.After, 10))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Export formats of GET /v1/xdrs.
const (
	FormatJSON  = "json"  // one JSON array, paged by limit (default 1000, max 100000)
	FormatCSV   = "csv"   // a header row, then one row per xDR, streamed
	FormatJSONL = "jsonl" // one JSON object per line, streamed
)

const (
	defaultXDRLimit = 1000
	maxXDRLimit     = 100_000
	exportPage      = 2000 // xDRs copied from the state per read lock while streaming
)

// XDRCSVHeader is the header row of the CSV export.
var XDRCSVHeader = []string{
	"id", "call_id", "account", "direction", "cli", "cld", "cld_translated",
	"setup_at", "connect_at", "disconnect_at", "duration", "charged_seconds", "amount", "charges",
	"cause", "cause_text", "disconnected_by", "vendor", "connection", "vendor_cost", "redirects", "node",
}

// csvRow flattens an xDR for the CSV export. charges holds
// "account:role:amount" per charge, joined by ';'; redirects holds
// "decision=target" per hop, joined by ' ' (URIs contain ';' but no
// spaces); connect_at is empty for an unanswered call.
func (x *XDR) csvRow() []string {
	charges := make([]string, len(x.Charges))
	for i, c := range x.Charges {
		charges[i] = c.Account + ":" + c.Role + ":" + c.Amount
	}
	redirects := make([]string, len(x.Redirects))
	for i, r := range x.Redirects {
		redirects[i] = r.Decision + "=" + r.Target
	}
	connect := ""
	if x.ConnectAt != nil {
		connect = x.ConnectAt.String()
	}
	return []string{
		strconv.FormatUint(x.ID, 10), x.CallID, x.Account, x.Direction, x.CLI, x.CLD, x.CLDTranslated,
		x.SetupAt.String(), connect, x.DisconnectAt.String(), strconv.Itoa(x.Duration), strconv.Itoa(x.ChargedSeconds),
		x.Amount, strings.Join(charges, ";"),
		strconv.Itoa(x.Cause), x.CauseText, x.DisconnectedBy, x.Vendor, x.Connection, x.VendorCost,
		strings.Join(redirects, " "), x.Node,
	}
}

func redirectsFromFSM(rs []fsm.Redirect) []Redirect {
	out := make([]Redirect, len(rs))
	for i, r := range rs {
		out[i] = Redirect{Target: r.Target, Decision: r.Decision}
	}
	return out
}

func callFromFSM(c fsm.Call, q *fsm.CallQuota, now int64) Call {
	out := Call{
		ID: c.ID, Direction: c.Direction, Account: c.Account, CLI: c.CLI, CLD: c.CLD, CLDTranslated: c.CLDTranslated,
		Parties: slices.Clone(c.Parties), Charges: make([]CallCharge, len(c.Charges)), MaxDuration: c.MaxDuration,
		SetupAt: stamp(c.SetupAt), ConnectAt: optStamp(c.ConnectAt), Node: c.Node, Legs: make([]CallLeg, len(c.Legs)),
		Vendor: c.Vendor, Connection: c.Connection, Redirects: redirectsFromFSM(c.Redirects),
	}
	if out.Parties == nil {
		out.Parties = []string{}
	}
	if q != nil {
		out.Quota = &CallQuota{Chunk: q.Chunk, Extensions: q.Extensions, Final: q.Final}
	}
	if c.ConnectAt != 0 && now > c.ConnectAt {
		out.Duration = int((now - c.ConnectAt) / 1000)
	}
	for i, ch := range c.Charges {
		out.Charges[i] = CallCharge{
			Account: ch.Account, Role: ch.Role, Number: ch.Number, Tariff: ch.Tariff, Prefix: ch.Rate.Prefix,
			PerMinute: billing.FormatMoney(ch.Rate.PerMinute), Reserved: billing.FormatMoney(ch.Reserved), MaxDuration: ch.MaxDuration,
		}
	}
	for i, l := range c.Legs {
		out.Legs[i] = CallLeg{Role: l.Role, CallID: l.CallID, Ingress: l.Ingress, Destination: l.Destination, Transport: l.Transport}
	}
	return out
}

func xdrFromFSM(x fsm.XDR) XDR {
	out := XDR{
		ID: x.Seq, CallID: x.CallID, Account: x.Account, Direction: x.Direction, CLI: x.CLI, CLD: x.CLD, CLDTranslated: x.CLDTranslated,
		SetupAt: stamp(x.SetupAt), ConnectAt: optStamp(x.ConnectAt), DisconnectAt: stamp(x.DisconnectAt), Duration: x.Duration,
		Amount: billing.FormatMoney(x.Amount), Charges: make([]XDRCharge, len(x.Charges)),
		Cause: x.Cause, CauseText: x.CauseText, DisconnectedBy: x.DisconnectedBy, Vendor: x.Vendor, Connection: x.Connection,
		VendorCost: billing.FormatMoney(x.VendorCost), Redirects: redirectsFromFSM(x.Redirects), Node: x.Node,
	}
	primary := false
	for i, c := range x.Charges {
		out.Charges[i] = XDRCharge{Account: c.Account, Role: c.Role, Number: c.Number, Tariff: c.Tariff, Prefix: c.Prefix,
			Seconds: c.Seconds, Amount: billing.FormatMoney(c.Amount)}
		if !primary && c.Account == x.Account {
			out.ChargedSeconds, primary = c.Seconds, true
		}
	}
	return out
}

// --- handlers ---

// maxTopupKey bounds idempotency keys; maxTopupNote bounds notes.
const (
	maxTopupKey  = 128
	maxTopupNote = 256
)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // crypto/rand never returns an error on supported platforms
	return hex.EncodeToString(b)
}

func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func printableText(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}

// query checks a request's query string: only the allowed parameters, each
// at most once. It returns the values by name.
func query(r *http.Request, allowed ...string) (map[string]string, error) {
	out := map[string]string{}
	for name, vs := range r.URL.Query() {
		if !slices.Contains(allowed, name) {
			return nil, badRequest(name, "unknown query parameter (known: %s)", strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return nil, badRequest(name, "given more than once")
		}
		out[name] = vs[0]
	}
	return out, nil
}

func (s *Server) listCalls(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "account")
	if err != nil {
		return err
	}
	now := s.now()
	out := []Call{}
	for _, c := range s.state.Calls() {
		if q["account"] == "" || c.Account == q["account"] || slices.Contains(c.Parties, q["account"]) {
			out = append(out, callFromFSM(c, s.callQuota(c.ID), now))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getCall(w http.ResponseWriter, r *http.Request) error {
	c, ok := s.state.Call(r.PathValue("id"))
	if !ok {
		return notFound("call in progress", r.PathValue("id"))
	}
	writeJSON(w, http.StatusOK, callFromFSM(c, s.callQuota(c.ID), s.now()))
	return nil
}

// callQuota is the quota of a call reserved by chunks, nil for another.
func (s *Server) callQuota(id string) *fsm.CallQuota {
	if q, ok := s.state.CallQuota(id); ok {
		return &q
	}
	return nil
}

// parseSince reads an RFC 3339 time, or a date (midnight UTC).
func parseSince(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	hint := ""
	if strings.Contains(v, " ") {
		hint = " (a '+' in a URL query reads as a space: write it %2B, or use Z)"
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time such as 2026-01-01T00:00:00Z%s", v, hint)
}

func (s *Server) listXDRs(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "account", "since", "after", "limit", "format")
	if err != nil {
		return err
	}
	var f fsm.XDRFilter
	if v, ok := q["account"]; ok {
		if !fsm.ValidID(v) {
			return badRequest("account", "%q is not an account id", v)
		}
		f.Account = v
	}
	if v, ok := q["since"]; ok {
		t, err := parseSince(v)
		if err != nil {
			return badRequest("since", "%v", err)
		}
		f.Since = t.UnixMilli()
	}
	if v, ok := q["after"]; ok {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return badRequest("after", "%q is not an xDR id (a whole number)", v)
		}
		f.AfterSeq = n
	}
	format := FormatJSON
	if v, ok := q["format"]; ok {
		if v != FormatJSON && v != FormatCSV && v != FormatJSONL {
			return badRequest("format", "%q: use json, csv or jsonl", v)
		}
		format = v
	}
	limit := 0
	if v, ok := q["limit"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return badRequest("limit", "%q is not a positive whole number", v)
		}
		if format == FormatJSON && n > maxXDRLimit {
			return badRequest("limit", "at most %d per request with format=json: page with after=, or export with format=csv or jsonl", maxXDRLimit)
		}
		limit = n
	}
	if format == FormatJSON {
		f.Limit = defaultXDRLimit
		if limit > 0 {
			f.Limit = limit
		}
		out := []XDR{}
		for _, x := range s.state.XDRs(f) {
			out = append(out, xdrFromFSM(x))
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	s.streamXDRs(w, r, f, limit, format)
	return nil
}

// streamXDRs writes every xDR matching f (at most limit, 0: no limit) as
// CSV or JSON lines. It copies them out of the state a page at a time, so
// the state's lock is never held long and memory stays bounded, and
// flushes after each page. xDRs filed while it runs are included.
//
// An export lasts as long as its data takes to cross: the connection's
// read and write timeouts do not apply to it.
func (s *Server) streamXDRs(w http.ResponseWriter, r *http.Request, f fsm.XDRFilter, limit int, format string) {
	liftDeadlines(w)
	if format == FormatCSV {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/jsonl; charset=utf-8")
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	cw := csv.NewWriter(w)
	enc := json.NewEncoder(w)
	write := func(x *XDR) error {
		if format == FormatCSV {
			return cw.Write(x.csvRow())
		}
		return enc.Encode(x)
	}
	fail := func(err error) {
		// The status is sent; all that is left is to stop. The client sees
		// a cut stream (an error, as chunked encoding has no final chunk).
		s.cfg.Logger.Info("xDR export stopped", "remote", r.RemoteAddr, "error", err)
		panic(http.ErrAbortHandler)
	}
	if format == FormatCSV {
		if err := cw.Write(XDRCSVHeader); err != nil {
			fail(err)
		}
	}
	n := 0
	for {
		page := exportPage
		if limit > 0 {
			page = min(page, limit-n)
		}
		f.Limit = page
		xs := s.state.XDRs(f)
		for _, fx := range xs {
			x := xdrFromFSM(fx)
			if err := write(&x); err != nil {
				fail(err)
			}
		}
		n += len(xs)
		if format == FormatCSV {
			cw.Flush()
			if err := cw.Error(); err != nil {
				fail(err)
			}
		}
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			fail(err)
		}
		if len(xs) < page || limit > 0 && n >= limit {
			return
		}
		if err := r.Context().Err(); err != nil {
			fail(err)
		}
		f.AfterSeq = xs[len(xs)-1].Seq
	}
}
