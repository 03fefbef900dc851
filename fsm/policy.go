package fsm

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/troika-sip/troika/billing"
)

// ServicePolicy holds per-account service settings; for now, how 3xx
// redirects of incoming calls are followed (seeds/redirect-server-delivery).
type ServicePolicy struct {
	ID       string
	Redirect RedirectPolicy
}

// RedirectPolicy says which 3xx targets are followed and how.
type RedirectPolicy struct {
	TrustedNetworks []string // IPs, CIDRs, domain names
	UntrustedAction string   // billing.NewCallAuthorization or billing.RejectRedirect
	MaxRedirects    int      // hops; 0 means billing.DefaultMaxRedirects
}

// Validate checks a service policy.
func (p *ServicePolicy) Validate() error {
	if !ValidID(p.ID) {
		return fieldErr("id", "must be 1-64 letters, digits, '_', '.', '+' or '-' (got %q)", p.ID)
	}
	if len(p.Redirect.TrustedNetworks) > 256 {
		return fieldErr("redirect.trusted_networks", "at most 256 entries")
	}
	if _, err := billing.ParseTrustedNetworks(p.Redirect.TrustedNetworks); err != nil {
		return fieldErr("redirect.trusted_networks", "%v", err)
	}
	switch p.Redirect.UntrustedAction {
	case billing.NewCallAuthorization, billing.RejectRedirect:
	default:
		return fieldErr("redirect.untrusted_action", "must be %q or %q", billing.NewCallAuthorization, billing.RejectRedirect)
	}
	if p.Redirect.MaxRedirects < 0 || p.Redirect.MaxRedirects > 10 {
		return fieldErr("redirect.max_redirects", "must be 1-10 (0: the default, %d)", billing.DefaultMaxRedirects)
	}
	return nil
}

// Vendor is a carrier that hands calls in (and whose costs are tracked).
type Vendor struct {
	ID          string
	Name        string
	Username    string      // SIP digest user name for calls from the vendor (optional)
	Credentials Credentials // for Username
}

// Validate checks a vendor.
func (v *Vendor) Validate() error {
	switch {
	case !ValidID(v.ID):
		return fieldErr("id", "must be 1-64 letters, digits, '_', '.', '+' or '-' (got %q)", v.ID)
	case len(v.Name) > 128 || !printable(v.Name):
		return fieldErr("name", "at most 128 printable characters")
	case v.Username != "" && !ValidID(v.Username):
		return fieldErr("username", "must be 1-64 letters, digits, '_', '.', '+' or '-'")
	case v.Username != "" && !v.Credentials.Set():
		return fieldErr("password", "is required with a username")
	}
	return nil
}

// ConnectionFromVendorSIP is the one connection kind so far: calls a vendor
// sends in over SIP.
const ConnectionFromVendorSIP = "from_vendor_sip"

// Connection is how a vendor's calls are recognised and treated: by source
// address and/or SIP user name; its translation rules and cost tariff.
type Connection struct {
	ID             string
	Vendor         string
	Kind           string
	RemoteIPs      []string    // addresses or CIDRs the vendor sends from
	Username       string      // digest user name (the vendor's when empty and the vendor has one)
	Credentials    Credentials // for Username
	Tariff         string      // the vendor's cost tariff
	TranslationCLD string      // rules for the called number
	TranslationCLI string      // rules for the calling number
}

// Validate checks a connection on its own (references are checked at
// apply time).
func (c *Connection) Validate() error {
	switch {
	case !ValidID(c.ID):
		return fieldErr("id", "must be 1-64 letters, digits, '_', '.', '+' or '-' (got %q)", c.ID)
	case !ValidID(c.Vendor):
		return fieldErr("vendor", "is required")
	case c.Kind != ConnectionFromVendorSIP:
		return fieldErr("kind", "must be %q", ConnectionFromVendorSIP)
	case c.Username != "" && !ValidID(c.Username):
		return fieldErr("username", "must be 1-64 letters, digits, '_', '.', '+' or '-'")
	case !ValidID(c.Tariff):
		return fieldErr("tariff", "is required (the vendor's cost tariff)")
	case len(c.RemoteIPs) > 64:
		return fieldErr("remote_ips", "at most 64 entries")
	}
	for i, s := range c.RemoteIPs {
		if _, err := parseIPOrPrefix(s); err != nil {
			return fieldErr(fmt.Sprintf("remote_ips[%d]", i), "%q is not an IP address or CIDR", s)
		}
	}
	if _, err := billing.ParseRules(c.TranslationCLD); err != nil {
		return fieldErr("translation.cld", "%v", err)
	}
	if _, err := billing.ParseRules(c.TranslationCLI); err != nil {
		return fieldErr("translation.cli", "%v", err)
	}
	return nil
}

func parseIPOrPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// PutServicePolicy creates or replaces a service policy.
type PutServicePolicy struct{ Policy ServicePolicy }

func (*PutServicePolicy) Type() Type { return TypePutServicePolicy }

func (c *PutServicePolicy) apply(s *State) Result { return put(s.policies, c.Policy.clone()) }

// DeleteServicePolicy removes a policy no account uses.
type DeleteServicePolicy struct{ ID string }

func (*DeleteServicePolicy) Type() Type { return TypeDeleteServicePolicy }

func (c *DeleteServicePolicy) apply(s *State) Result {
	return remove(s.policies, "id", "service policy", c.ID, func() Result {
		if users := s.accountsWhere(func(a *Account) bool { return a.ServicePolicy == c.ID }); len(users) > 0 {
			return refuse(CodeConflict, "id", "service policy %s is used by accounts %v: change them first", c.ID, users)
		}
		return Result{}
	}, nil)
}

// PutVendor creates or replaces a vendor.
type PutVendor struct{ Vendor Vendor }

func (*PutVendor) Type() Type { return TypePutVendor }

func (c *PutVendor) apply(s *State) Result {
	if err := c.Vendor.Credentials.validate("password", false); err != nil {
		return refuseInvalid(err)
	}
	return s.putVendor(c.Vendor)
}

func (s *State) putVendor(vendor Vendor) Result {
	v := vendor.clone()
	if err := v.Validate(); err != nil {
		return refuseInvalid(err)
	}
	if v.Username != "" {
		if other := s.usernameOwner(v.Username); other != "" && other != "vendor "+v.ID {
			return refuse(CodeConflict, "username", "user name %s is already used by %s", v.Username, other)
		}
	}
	if v.Username == "" {
		for _, c := range s.connections {
			if c.Vendor == v.ID && c.Username == "" && len(c.RemoteIPs) == 0 {
				return refuse(CodeInvalid, "username", "connection %s recognises calls by this vendor's user name: it cannot be removed", c.ID)
			}
		}
	}
	s.vendors[v.ID] = &v
	return Result{}
}

// DeleteVendor removes a vendor without connections.
type DeleteVendor struct{ ID string }

func (*DeleteVendor) Type() Type { return TypeDeleteVendor }

func (c *DeleteVendor) apply(s *State) Result {
	return remove(s.vendors, "id", "vendor", c.ID, func() Result {
		var conns []string
		for _, cn := range s.connections {
			if cn.Vendor == c.ID {
				conns = append(conns, cn.ID)
			}
		}
		if len(conns) > 0 {
			sort.Strings(conns)
			return refuse(CodeConflict, "id", "vendor %s has connections %v: delete them first", c.ID, conns)
		}
		return Result{}
	}, nil)
}

// PutConnection creates or replaces a connection.
type PutConnection struct{ Connection Connection }

func (*PutConnection) Type() Type { return TypePutConnection }

func (c *PutConnection) apply(s *State) Result {
	if err := c.Connection.Credentials.validate("password", false); err != nil {
		return refuseInvalid(err)
	}
	return s.putConnection(c.Connection)
}

func (s *State) putConnection(conn Connection) Result {
	cn := conn.clone()
	if err := cn.Validate(); err != nil {
		return refuseInvalid(err)
	}
	v, ok := s.vendors[cn.Vendor]
	if !ok {
		return refuse(CodeInvalid, "vendor", "no vendor %s", cn.Vendor)
	}
	if _, ok := s.tariffs[cn.Tariff]; !ok {
		return refuse(CodeInvalid, "tariff", "no tariff %s", cn.Tariff)
	}
	if len(cn.RemoteIPs) == 0 && cn.Username == "" && v.Username == "" {
		return refuse(CodeInvalid, "remote_ips", "a connection needs remote_ips or a user name (its own or its vendor's) to recognise calls")
	}
	if cn.Username != "" {
		if other := s.usernameOwner(cn.Username); other != "" && other != "connection "+cn.ID && other != "vendor "+cn.Vendor {
			return refuse(CodeConflict, "username", "user name %s is already used by %s", cn.Username, other)
		}
		if !cn.Credentials.Set() {
			return refuse(CodeInvalid, "password", "a connection with its own user name needs its own password")
		}
	}
	s.connections[cn.ID] = &cn
	return Result{}
}

// DeleteConnection removes a connection.
type DeleteConnection struct{ ID string }

func (*DeleteConnection) Type() Type { return TypeDeleteConnection }

func (c *DeleteConnection) apply(s *State) Result {
	return remove(s.connections, "id", "connection", c.ID, nil, nil)
}

// usernameOwner names what already uses a SIP user name: an account, a
// vendor or a connection ("" if nothing). User names must be unique across
// them, or the same credentials would mean two things.
func (s *State) usernameOwner(name string) string {
	if _, ok := s.accounts[name]; ok {
		return "account " + name
	}
	for _, v := range s.vendors {
		if v.Username == name {
			return "vendor " + v.ID
		}
	}
	for _, c := range s.connections {
		if c.Username == name {
			return "connection " + c.ID
		}
	}
	return ""
}

func (s *State) accountsWhere(pred func(*Account) bool) []string {
	var ids []string
	for _, a := range s.accounts {
		if pred(a) {
			ids = append(ids, a.ID)
		}
	}
	sort.Strings(ids)
	if len(ids) > 5 {
		ids = append(ids[:5], "...")
	}
	return ids
}

func (p *ServicePolicy) clone() ServicePolicy {
	c := *p
	c.Redirect.TrustedNetworks = slices.Clone(p.Redirect.TrustedNetworks)
	return c
}

func (c *Connection) clone() Connection {
	cp := *c
	cp.RemoteIPs = slices.Clone(c.RemoteIPs)
	cp.Credentials = c.Credentials.clone()
	return cp
}

func (v *Vendor) clone() Vendor {
	cp := *v
	cp.Credentials = v.Credentials.clone()
	return cp
}

func (p *ServicePolicy) id() string { return p.ID }
func (v *Vendor) id() string        { return v.ID }
func (c *Connection) id() string    { return c.ID }

// ServicePolicy returns a copy of a service policy.
func (s *State) ServicePolicy(id string) (ServicePolicy, bool) {
	return copyOf(s, &s.policies, id, (*ServicePolicy).clone)
}

// ServicePolicies returns copies of all service policies ordered by id.
func (s *State) ServicePolicies() []ServicePolicy {
	return sortedCopies(s, &s.policies, (*ServicePolicy).clone)
}

// Vendor returns a copy of a vendor.
func (s *State) Vendor(id string) (Vendor, bool) { return copyOf(s, &s.vendors, id, (*Vendor).clone) }

// Vendors returns copies of all vendors ordered by id.
func (s *State) Vendors() []Vendor { return sortedCopies(s, &s.vendors, (*Vendor).clone) }

// Connection returns a copy of a connection.
func (s *State) Connection(id string) (Connection, bool) {
	return copyOf(s, &s.connections, id, (*Connection).clone)
}

// Connections returns copies of all connections ordered by id.
func (s *State) Connections() []Connection {
	return sortedCopies(s, &s.connections, (*Connection).clone)
}

// ConnectionForSource returns the vendor connection whose remote_ips hold
// ip: the one with the most specific prefix (ties: the lowest id).
func (s *State) ConnectionForSource(ip netip.Addr) (Connection, bool) {
	ip = ip.Unmap()
	s.mu.RLock()
	defer s.mu.RUnlock()
	var best *Connection
	bestBits := -1
	for _, c := range s.connections {
		for _, r := range c.RemoteIPs {
			p, err := parseIPOrPrefix(r)
			if err != nil || !p.Contains(ip) {
				continue
			}
			if p.Bits() > bestBits || p.Bits() == bestBits && c.ID < best.ID {
				best, bestBits = c, p.Bits()
			}
		}
	}
	if best == nil {
		return Connection{}, false
	}
	return best.clone(), true
}

// ConnectionForUser returns the vendor connection that digest user name
// identifies (its own user name, or its vendor's) and the vendor.
func (s *State) ConnectionForUser(user string) (Connection, Vendor, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := make([]string, 0, len(s.connections))
	for id := range s.connections {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		c := s.connections[id]
		v := s.vendors[c.Vendor]
		if v == nil {
			continue
		}
		if c.Username == user || c.Username == "" && v.Username == user {
			return c.clone(), v.clone(), true
		}
	}
	return Connection{}, Vendor{}, false
}
