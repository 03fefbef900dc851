package fsm

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Billing modes of an account.
const (
	Prepaid  = "prepaid"
	Postpaid = "postpaid"
)

// Incoming-call delivery modes of an account.
const (
	DeliverRegistered = "registered"
	DeliverStatic     = "static"
)

// Account is a customer line: the SIP identity phones register as, and the
// billing record calls are charged to. Money fields are micro-units.
type Account struct {
	ID          string
	Credentials Credentials // for the digest user name ID
	// DisplayName is what callees see as the caller's name (P-Asserted-
	// Identity and From); the caller's own From never is.
	DisplayName   string
	Billing       string
	Balance       int64
	CreditLimit   int64
	TariffOut     string
	TariffIn      string
	ServicePolicy string
	MaxCalls      int
	Incoming      Incoming
	FollowMe      []FollowMeTarget
	Blocked       bool
	MaxContacts   int // 0: the registrar's configured cap
	CreatedAt     int64
}

// Incoming says where calls to an account are delivered.
type Incoming struct {
	Mode      string // DeliverRegistered (default) or DeliverStatic
	Host      string
	Port      int
	Transport string
}

// FollowMeTarget is one number or URI tried when the account's own phones
// do not take a call.
type FollowMeTarget struct {
	Target   string
	TimeoutS int
}

// AliasPorts lists extra SIP ports an alias address listens on besides the
// main ports of its transport.
type AliasPorts struct {
	UDP []int
	TCP []int
	TLS []int
}

// Alias is an extra IP address the switch serves next to its main virtual
// IP, typically a former provider's SIP server address.
type Alias struct {
	IP    string
	Ports AliasPorts
}

// Tariff prices calls by destination prefix.
type Tariff struct {
	ID       string
	Currency string
	Rates    []Rate
}

// Rate is the price of calls to destinations starting with Prefix.
type Rate struct {
	Prefix        string
	PerMinute     int64 // micro-units per minute
	ConnectFee    int64 // micro-units
	FirstInterval int   // seconds
	NextInterval  int   // seconds
	FreeSeconds   int
}

// Binding is one registered contact of an account (an address-of-record).
type Binding struct {
	AOR       string   // account id
	Contact   string   // Contact URI as the phone sent it
	Source    string   // ip:port the REGISTER came from (received/rport)
	Transport string   // udp, tcp or tls
	Ingress   string   // socket it arrived on, e.g. "udp:127.0.0.2:5070"
	ExpiresAt int64    // unix milliseconds
	CallID    string   // Call-ID of the REGISTER that last refreshed it
	CSeq      uint32   // its CSeq number
	Q         int      // q-value x1000 (q=0.5 is 500); -1 when absent
	Instance  string   // +sip.instance, RFC 5626
	RegID     int      // reg-id, RFC 5626
	UserAgent string   // User-Agent header
	Path      []string // Path headers, RFC 3327
	UpdatedAt int64    // unix milliseconds
}

// Expires returns the seconds left before b expires at unix ms now, never
// negative.
func (b *Binding) Expires(now int64) int {
	left := (b.ExpiresAt - now + 999) / 1000
	if left < 0 {
		return 0
	}
	return int(left)
}

// key identifies a binding inside its AOR: the instance (and reg-id) when
// the phone sent one (RFC 5626), otherwise the contact URI.
func (b *Binding) key() string {
	if b.Instance != "" {
		return "i:" + b.Instance + ";" + strconv.Itoa(b.RegID)
	}
	return "c:" + b.Contact
}

// FieldError reports an invalid field of an entity or a command.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

var hostnamePattern = regexp.MustCompile(`^(?i)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validHost reports whether h is an IP address or a DNS host name.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return len(h) <= 253 && hostnamePattern.MatchString(h)
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}$`)

// ValidID reports whether s may be used as an account, tariff or other id:
// 1 to 64 letters, digits, '_', '.', '+' or '-', not starting with
// punctuation. Ids appear in SIP URIs, so nothing that needs escaping.
func ValidID(s string) bool { return idPattern.MatchString(s) }

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// Validate checks an account on its own (references to tariffs and
// policies are checked against the state at apply time).
func (a *Account) Validate() error {
	switch {
	case !ValidID(a.ID):
		return fieldErr("id", "must be 1-64 letters, digits, '_', '.', '+' or '-' (got %q)", a.ID)
	case !a.Credentials.Set():
		return fieldErr("password", "is required")
	case len(a.DisplayName) > 64 || !printable(a.DisplayName) || strings.ContainsAny(a.DisplayName, "\"\\"):
		return fieldErr("display_name", "at most 64 printable characters, no quotes or backslashes")
	case a.Billing != Prepaid && a.Billing != Postpaid:
		return fieldErr("billing", "must be %q or %q", Prepaid, Postpaid)
	case a.Balance < 0 && a.Billing == Prepaid:
		return fieldErr("balance", "a prepaid balance cannot be negative")
	case a.CreditLimit < 0:
		return fieldErr("credit_limit", "cannot be negative")
	case a.TariffOut != "" && !ValidID(a.TariffOut):
		return fieldErr("tariff_out", "is not a valid id")
	case a.TariffIn != "" && !ValidID(a.TariffIn):
		return fieldErr("tariff_in", "is not a valid id")
	case a.ServicePolicy != "" && !ValidID(a.ServicePolicy):
		return fieldErr("service_policy", "is not a valid id")
	case a.MaxCalls < 0:
		return fieldErr("max_calls", "cannot be negative")
	case a.MaxContacts < 0 || a.MaxContacts > 100:
		return fieldErr("max_contacts", "must be between 0 (registrar default) and 100")
	}
	if err := a.Incoming.validate(); err != nil {
		return err
	}
	if len(a.FollowMe) > 10 {
		return fieldErr("follow_me", "at most 10 targets")
	}
	for i, f := range a.FollowMe {
		if f.Target == "" || len(f.Target) > 256 || !printable(f.Target) {
			return fieldErr(fmt.Sprintf("follow_me[%d].target", i), "must be a number or SIP URI of at most 256 printable characters")
		}
		if f.TimeoutS < 1 || f.TimeoutS > 600 {
			return fieldErr(fmt.Sprintf("follow_me[%d].timeout_s", i), "must be 1-600 seconds")
		}
	}
	return nil
}

func (in *Incoming) validate() error {
	switch in.Mode {
	case "", DeliverRegistered:
		return nil
	case DeliverStatic:
	default:
		return fieldErr("incoming.mode", "must be %q or %q", DeliverRegistered, DeliverStatic)
	}
	if !validHost(in.Host) {
		return fieldErr("incoming.host", "must be an IP address or host name (got %q)", in.Host)
	}
	if in.Port < 1 || in.Port > 65535 {
		return fieldErr("incoming.port", "must be 1-65535")
	}
	switch in.Transport {
	case "udp", "tcp", "tls":
	default:
		return fieldErr("incoming.transport", "must be udp, tcp or tls")
	}
	return nil
}

// Validate checks an alias: a unicast IP address and port lists.
func (a *Alias) Validate() error {
	ip, err := netip.ParseAddr(a.IP)
	if err != nil || ip.Zone() != "" || ip.IsUnspecified() || ip.IsMulticast() {
		return fieldErr("ip", "must be a unicast IPv4 or IPv6 address (got %q)", a.IP)
	}
	if ip.String() != a.IP {
		return fieldErr("ip", "write it in canonical form %q", ip.String())
	}
	for name, ports := range map[string][]int{"udp": a.Ports.UDP, "tcp": a.Ports.TCP, "tls": a.Ports.TLS} {
		if len(ports) > 16 {
			return fieldErr("ports."+name, "at most 16 extra ports")
		}
		seen := map[int]bool{}
		for _, p := range ports {
			if p < 1 || p > 65535 {
				return fieldErr("ports."+name, "port %d is not 1-65535", p)
			}
			if seen[p] {
				return fieldErr("ports."+name, "port %d is listed twice", p)
			}
			seen[p] = true
		}
	}
	return nil
}

// Validate checks a tariff: id, currency and well-formed, distinct rates.
func (t *Tariff) Validate() error {
	if !ValidID(t.ID) {
		return fieldErr("id", "must be 1-64 letters, digits, '_', '.', '+' or '-' (got %q)", t.ID)
	}
	if len(t.Currency) != 3 || strings.ToUpper(t.Currency) != t.Currency {
		return fieldErr("currency", "must be a 3-letter ISO 4217 code such as USD")
	}
	if len(t.Rates) == 0 {
		return fieldErr("rates", "at least one rate is required (prefix \"\" matches every number)")
	}
	seen := map[string]bool{}
	for i, r := range t.Rates {
		f := func(name string) string { return fmt.Sprintf("rates[%d].%s", i, name) }
		if len(r.Prefix) > 32 || strings.Trim(r.Prefix, "+0123456789") != "" {
			return fieldErr(f("prefix"), "must be digits (optionally a leading +), at most 32")
		}
		if seen[r.Prefix] {
			return fieldErr(f("prefix"), "prefix %q is listed twice", r.Prefix)
		}
		seen[r.Prefix] = true
		switch {
		case r.PerMinute < 0:
			return fieldErr(f("per_minute"), "cannot be negative")
		case r.ConnectFee < 0:
			return fieldErr(f("connect_fee"), "cannot be negative")
		case r.FirstInterval < 1 || r.FirstInterval > 3600:
			return fieldErr(f("first_interval"), "must be 1-3600 seconds")
		case r.NextInterval < 1 || r.NextInterval > 3600:
			return fieldErr(f("next_interval"), "must be 1-3600 seconds")
		case r.FreeSeconds < 0 || r.FreeSeconds > 86400:
			return fieldErr(f("free_seconds"), "must be 0-86400")
		}
	}
	return nil
}
