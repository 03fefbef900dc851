package billing

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Actions for a redirect target outside the trusted networks.
const (
	NewCallAuthorization = "new_call_authorization"
	RejectRedirect       = "reject"
)

// Redirect decisions, as logs, metrics and xDRs name them.
const (
	DecisionTrusted      = "trusted"                // followed with no new authorization
	DecisionNewAuth      = "new_call_authorization" // followed as a new outgoing call of the account
	DecisionRejected     = "rejected"               // untrusted and the policy says reject
	DecisionOwnAddress   = "own_address"            // points at the switch itself
	DecisionLoop         = "loop"                   // already tried in this call
	DecisionPrivate      = "private_untrusted"      // private or loopback and not explicitly trusted
	DecisionLimit        = "max_redirects"          // over the hop limit
	DecisionUnresolvable = "unresolvable"           // a name that does not resolve
	// DecisionNewAuthRefused: new_call_authorization was due, but the
	// account may not call the target or cannot pay for it.
	DecisionNewAuthRefused = "new_call_authorization_refused"
	DecisionFollowMe       = "follow_me" // a follow-me entry of the called account was tried
)

// DefaultMaxRedirects is the hop limit when a policy sets none.
const DefaultMaxRedirects = 3

var hostnameRE = regexp.MustCompile(`^(?i)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?$`)

// TrustedNetworks is a parsed redirect.trusted_networks list.
type TrustedNetworks struct {
	Prefixes []netip.Prefix // addresses become /32 or /128
	Domains  []string       // lower case, no trailing dot
}

// ParseTrustedNetworks reads IPv4/IPv6 addresses, CIDRs and domain names.
// The error names the bad entry.
func ParseTrustedNetworks(entries []string) (TrustedNetworks, error) {
	var t TrustedNetworks
	for i, e := range entries {
		e = strings.TrimSpace(e)
		switch {
		case e == "":
			return TrustedNetworks{}, fmt.Errorf("entry %d is empty", i)
		case strings.Contains(e, "/"):
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return TrustedNetworks{}, fmt.Errorf("entry %d %q is not a CIDR such as 193.148.210.0/24", i, e)
			}
			t.Prefixes = append(t.Prefixes, p.Masked())
		default:
			if a, err := netip.ParseAddr(e); err == nil {
				t.Prefixes = append(t.Prefixes, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
				continue
			}
			if len(e) > 253 || !hostnameRE.MatchString(e) {
				return TrustedNetworks{}, fmt.Errorf("entry %d %q is not an IP address, CIDR or domain name", i, e)
			}
			t.Domains = append(t.Domains, strings.TrimSuffix(strings.ToLower(e), "."))
		}
	}
	return t, nil
}

// ContainsAddr reports whether ip is inside a trusted prefix.
func (t TrustedNetworks) ContainsAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range t.Prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ContainsName reports whether host is one of the trusted domain names.
func (t TrustedNetworks) ContainsName(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, d := range t.Domains {
		if d == host {
			return true
		}
	}
	return false
}

// Trusted decides whether a redirect target is trusted. host is the
// target's host (an IP or a name); addrs are the addresses it resolves to
// (for an IP, itself); domainAddrs are the resolved addresses of the
// trusted domain names. A target is trusted when its name is listed, or
// when one of its addresses is inside a trusted prefix or is an address of
// a trusted domain.
func (t TrustedNetworks) Trusted(host string, addrs []netip.Addr, domainAddrs []netip.Addr) bool {
	if t.ContainsName(host) {
		return true
	}
	for _, a := range addrs {
		if t.ContainsAddr(a) {
			return true
		}
		for _, d := range domainAddrs {
			if a.Unmap() == d.Unmap() {
				return true
			}
		}
	}
	return false
}

// Internal reports whether ip is private, loopback, link-local or
// unspecified: a redirect there is followed only when explicitly trusted.
func Internal(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() ||
		ip.IsMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsLinkLocalMulticast()
}
