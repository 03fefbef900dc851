package admin

import (
	"fmt"
	"strconv"
	"time"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
)

// The JSON shapes of the admin API (docs/API.md). Money travels as decimal
// strings, never as JSON numbers.

// Account is an account as the API shows and accepts it. Password is
// write-only: answers leave it out, but for the one answer to a create
// with GeneratePassword, which holds the password generated.
type Account struct {
	ID       string `json:"id"`
	Password string `json:"password,omitempty"`
	// GeneratePassword asks the API to generate the password (Password
	// empty) and return it, once, in its answer.
	GeneratePassword bool             `json:"generate_password,omitempty"`
	Billing          string           `json:"billing"`
	Balance          string           `json:"balance"`
	Reserved         string           `json:"reserved"` // read-only: held by calls in progress; prepaid can spend balance - reserved
	CreditLimit      string           `json:"credit_limit"`
	TariffOut        string           `json:"tariff_out"`
	TariffIn         string           `json:"tariff_in"`
	ServicePolicy    string           `json:"service_policy"`
	MaxCalls         int              `json:"max_calls"`
	Incoming         Incoming         `json:"incoming"`
	FollowMe         []FollowMeTarget `json:"follow_me"`
	Blocked          bool             `json:"blocked"`
	MaxContacts      int              `json:"max_contacts"`
	CreatedAt        *time.Time       `json:"created_at,omitempty"` // read-only
}

// Incoming is an account's incoming-call delivery.
type Incoming struct {
	Mode      string `json:"mode"`
	Host      string `json:"host,omitempty"`
	Port      int    `json:"port,omitempty"`
	Transport string `json:"transport,omitempty"`
}

// FollowMeTarget is one follow-me step.
type FollowMeTarget struct {
	Target   string `json:"target"`
	TimeoutS int    `json:"timeout_s"`
}

// AccountPatch is the body of PATCH /v1/accounts/{id}: absent fields stay.
type AccountPatch struct {
	Password *string `json:"password"`
	// GeneratePassword sets a new generated password, returned once in
	// the answer.
	GeneratePassword bool              `json:"generate_password,omitempty"`
	Billing          *string           `json:"billing"`
	Balance          *string           `json:"balance"` // refused: see patchToFSM
	CreditLimit      *string           `json:"credit_limit"`
	TariffOut        *string           `json:"tariff_out"`
	TariffIn         *string           `json:"tariff_in"`
	ServicePolicy    *string           `json:"service_policy"`
	MaxCalls         *int              `json:"max_calls"`
	Incoming         *Incoming         `json:"incoming"`  // replaces the whole delivery
	FollowMe         *[]FollowMeTarget `json:"follow_me"` // replaces the list; [] clears it (null leaves it)
	Blocked          *bool             `json:"blocked"`
	MaxContacts      *int              `json:"max_contacts"`
}

// AccountImport is the body of POST /v1/accounts/import: created all or
// none.
type AccountImport struct {
	Accounts []Account `json:"accounts"`
}

// Tariff is a price list.
type Tariff struct {
	ID       string `json:"id"`
	Currency string `json:"currency"`
	Rates    []Rate `json:"rates"`
}

// Rate prices one destination prefix.
type Rate struct {
	Prefix        string `json:"prefix"`
	PerMinute     string `json:"per_minute"`
	ConnectFee    string `json:"connect_fee"`
	FirstInterval int    `json:"first_interval"`
	NextInterval  int    `json:"next_interval"`
	FreeSeconds   int    `json:"free_seconds"`
}

// Alias is an IP alias and its extra ports.
type Alias struct {
	IP    string     `json:"ip"`
	Ports AliasPorts `json:"ports"`
}

// AliasPorts are an alias's extra ports per transport.
type AliasPorts struct {
	UDP []int `json:"udp"`
	TCP []int `json:"tcp"`
	TLS []int `json:"tls"`
}

// Registration is one binding as GET /v1/registrations shows it.
type Registration struct {
	Account   string    `json:"account"`
	Contact   string    `json:"contact"`
	Source    string    `json:"source"`
	Transport string    `json:"transport"`
	Ingress   string    `json:"ingress"`
	Expires   int       `json:"expires"`
	ExpiresAt time.Time `json:"expires_at"`
	CallID    string    `json:"call_id"`
	CSeq      uint32    `json:"cseq"`
	Q         string    `json:"q,omitempty"`
	Instance  string    `json:"instance,omitempty"`
	RegID     int       `json:"reg_id,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	Path      []string  `json:"path,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	// KeepaliveNode is the node that pings the binding (the one holding
	// its ingress socket). Reachable and LastSeen are that node's view:
	// set only in its own answer, since nothing is replicated per ping.
	KeepaliveNode string     `json:"keepalive_node,omitempty"`
	Reachable     *bool      `json:"reachable,omitempty"`
	LastSeen      *time.Time `json:"last_seen,omitempty"`
}

// withKeepalive adds what the NAT keepalive knows of the binding.
func (r *Registration) withKeepalive(k KeepaliveView) {
	r.KeepaliveNode = k.Node
	if k.Known {
		reachable, seen := k.Reachable, k.LastSeen.UTC()
		r.Reachable, r.LastSeen = &reachable, &seen
	}
}

// Error is the body of every 4xx/5xx answer.
type Error struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func money(field, s string, dflt int64) (int64, error) {
	if s == "" {
		return dflt, nil
	}
	v, err := billing.ParseMoney(s)
	if err != nil {
		return 0, &fsm.FieldError{Field: field, Msg: err.Error()}
	}
	return v, nil
}

func (a *Account) toFSM() (fsm.Account, error) {
	bal, err := money("balance", a.Balance, 0)
	if err != nil {
		return fsm.Account{}, err
	}
	limit, err := money("credit_limit", a.CreditLimit, 0)
	if err != nil {
		return fsm.Account{}, err
	}
	in, err := a.Incoming.toFSM()
	if err != nil {
		return fsm.Account{}, err
	}
	out := fsm.Account{
		ID: a.ID, Credentials: fsm.Credentials{Legacy: a.Password}, Billing: a.Billing, Balance: bal, CreditLimit: limit,
		TariffOut: a.TariffOut, TariffIn: a.TariffIn, ServicePolicy: a.ServicePolicy, MaxCalls: a.MaxCalls,
		Incoming: in, FollowMe: followMeToFSM(a.FollowMe), Blocked: a.Blocked, MaxContacts: a.MaxContacts,
	}
	if out.Billing == "" {
		out.Billing = fsm.Prepaid
	}
	if err := out.Validate(); err != nil {
		return fsm.Account{}, err
	}
	return out, nil
}

// toFSM converts an incoming delivery. A host, port or transport without
// mode "static" is refused rather than ignored: it is almost always a
// forgotten mode, and the calls would silently go to the phones instead.
func (in Incoming) toFSM() (fsm.Incoming, error) {
	if in.Mode != fsm.DeliverStatic && (in.Host != "" || in.Port != 0 || in.Transport != "") {
		return fsm.Incoming{}, &fsm.FieldError{Field: "incoming.mode", Msg: fmt.Sprintf("must be %q when a host, port or transport is given", fsm.DeliverStatic)}
	}
	return fsm.Incoming{Mode: in.Mode, Host: in.Host, Port: in.Port, Transport: in.Transport}, nil
}

// followMeToFSM keeps an empty list empty rather than nil: a PATCH's
// "follow_me": [] must still clear the list after the command is encoded
// for the cluster, which turns a pointer to a nil slice into "no change".
func followMeToFSM(fm []FollowMeTarget) []fsm.FollowMeTarget {
	if fm == nil {
		return nil
	}
	out := make([]fsm.FollowMeTarget, 0, len(fm))
	for _, f := range fm {
		out = append(out, fsm.FollowMeTarget{Target: f.Target, TimeoutS: f.TimeoutS})
	}
	return out
}

// accountFromFSM converts a stored account; reserved is what its calls in
// progress hold (fsm.State.Reserved).
func accountFromFSM(a fsm.Account, reserved int64) Account {
	mode := a.Incoming.Mode
	if mode == "" {
		mode = fsm.DeliverRegistered
	}
	out := Account{
		ID: a.ID, Billing: a.Billing, Balance: billing.FormatMoney(a.Balance), Reserved: billing.FormatMoney(reserved), CreditLimit: billing.FormatMoney(a.CreditLimit),
		TariffOut: a.TariffOut, TariffIn: a.TariffIn, ServicePolicy: a.ServicePolicy, MaxCalls: a.MaxCalls,
		Incoming: Incoming{Mode: mode, Host: a.Incoming.Host, Port: a.Incoming.Port, Transport: a.Incoming.Transport},
		FollowMe: []FollowMeTarget{}, Blocked: a.Blocked, MaxContacts: a.MaxContacts,
	}
	for _, f := range a.FollowMe {
		out.FollowMe = append(out.FollowMe, FollowMeTarget{Target: f.Target, TimeoutS: f.TimeoutS})
	}
	if a.CreatedAt != 0 {
		t := time.UnixMilli(a.CreatedAt).UTC()
		out.CreatedAt = &t
	}
	return out
}

func (p *AccountPatch) toFSM() (fsm.AccountPatch, error) {
	if p.Balance != nil {
		return fsm.AccountPatch{}, &fsm.FieldError{Field: "balance", Msg: "cannot be set by an update: money moves only through recorded transactions (top-up)"}
	}
	out := fsm.AccountPatch{
		Billing: p.Billing, TariffOut: p.TariffOut, TariffIn: p.TariffIn,
		ServicePolicy: p.ServicePolicy, MaxCalls: p.MaxCalls, Blocked: p.Blocked, MaxContacts: p.MaxContacts,
	}
	if p.Password != nil {
		// Hashed by the node before it is proposed (fsm.SecureCommand).
		out.Credentials = &fsm.Credentials{Legacy: *p.Password}
	}
	if p.CreditLimit != nil {
		v, err := money("credit_limit", *p.CreditLimit, 0)
		if err != nil {
			return fsm.AccountPatch{}, err
		}
		out.CreditLimit = &v
	}
	if p.Incoming != nil {
		in, err := p.Incoming.toFSM()
		if err != nil {
			return fsm.AccountPatch{}, err
		}
		out.Incoming = &in
	}
	if p.FollowMe != nil {
		fm := followMeToFSM(*p.FollowMe)
		out.FollowMe = &fm
	}
	return out, nil
}

func (t *Tariff) toFSM() (fsm.Tariff, error) {
	out := fsm.Tariff{ID: t.ID, Currency: t.Currency}
	for i, r := range t.Rates {
		f := func(name string) string { return fmt.Sprintf("rates[%d].%s", i, name) }
		pm, err := money(f("per_minute"), r.PerMinute, -1)
		if err != nil {
			return fsm.Tariff{}, err
		}
		if pm < 0 {
			return fsm.Tariff{}, &fsm.FieldError{Field: f("per_minute"), Msg: "is required and cannot be negative"}
		}
		cf, err := money(f("connect_fee"), r.ConnectFee, 0)
		if err != nil {
			return fsm.Tariff{}, err
		}
		out.Rates = append(out.Rates, fsm.Rate{
			Prefix: r.Prefix, PerMinute: pm, ConnectFee: cf,
			FirstInterval: orDefault(r.FirstInterval, 60), NextInterval: orDefault(r.NextInterval, 60), FreeSeconds: r.FreeSeconds,
		})
	}
	if err := out.Validate(); err != nil {
		return fsm.Tariff{}, err
	}
	return out, nil
}

func orDefault(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

func tariffFromFSM(t fsm.Tariff) Tariff {
	out := Tariff{ID: t.ID, Currency: t.Currency, Rates: []Rate{}}
	for _, r := range t.Rates {
		out.Rates = append(out.Rates, Rate{
			Prefix: r.Prefix, PerMinute: billing.FormatMoney(r.PerMinute), ConnectFee: billing.FormatMoney(r.ConnectFee),
			FirstInterval: r.FirstInterval, NextInterval: r.NextInterval, FreeSeconds: r.FreeSeconds,
		})
	}
	return out
}

func (a *Alias) toFSM() (fsm.Alias, error) {
	out := fsm.Alias{IP: a.IP, Ports: fsm.AliasPorts{UDP: a.Ports.UDP, TCP: a.Ports.TCP, TLS: a.Ports.TLS}}
	return out, out.Validate()
}

func aliasFromFSM(a fsm.Alias) Alias {
	nz := func(p []int) []int {
		if p == nil {
			return []int{}
		}
		return p
	}
	return Alias{IP: a.IP, Ports: AliasPorts{UDP: nz(a.Ports.UDP), TCP: nz(a.Ports.TCP), TLS: nz(a.Ports.TLS)}}
}

func registrationFromFSM(b fsm.Binding, now int64) Registration {
	r := Registration{
		Account: b.AOR, Contact: b.Contact, Source: b.Source, Transport: b.Transport, Ingress: b.Ingress,
		Expires: b.Expires(now), ExpiresAt: time.UnixMilli(b.ExpiresAt).UTC(), CallID: b.CallID, CSeq: b.CSeq,
		Instance: b.Instance, RegID: b.RegID, UserAgent: b.UserAgent, Path: b.Path, UpdatedAt: time.UnixMilli(b.UpdatedAt).UTC(),
	}
	if b.Q >= 0 {
		r.Q = strconv.FormatFloat(float64(b.Q)/1000, 'f', -1, 64)
	}
	return r
}
