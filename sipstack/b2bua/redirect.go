package b2bua

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// Redirects: a callee leg that answers 300, 301 or 302 (typically a
// customer's redirect server reached through the account's static
// delivery) is not a failure to relay: its Contacts are the call's next
// targets.
//
// Every Contact of the 3xx is read (at most maxRedirectContacts, in
// message order, duplicates dropped), then ordered by q (highest first,
// no q counting as 1.0, ties keeping message order). The contacts of a
// 3xx go before any contact still queued from an earlier one. They are
// decided one at a time, when their turn comes, by the service policy of
// the account whose delivery produced the 3xx (none: untrusted, reject):
//
//	unresolvable       its host name does not resolve (in ResolveTimeout)
//	own_address        it, or any address its name resolves to, is one of
//	                   the switch's sockets (IP:port of an open socket, or a
//	                   configured main or alias address with one of its ports)
//	loop               already called in this call (transport, address and
//	                   user), or at the address of a leg that answered 3xx
//	                   in this call (the redirect server itself)
//	max_redirects      the call has already followed the policy's
//	                   max_redirects targets (default 3): the limit counts
//	                   every 3xx target followed in the call, not a depth
//	trusted            its address is in a trusted network (address or
//	                   CIDR), its host is a trusted domain name, or its
//	                   address is one a trusted domain name resolves to:
//	                   called directly, no new authorization; the call stays
//	                   the account's incoming call
//	private_untrusted  not trusted and private, loopback, link-local, ...
//	                   (DeliveryConfig.Internal): never followed
//	new_call_authorization
//	                   not trusted, policy says so: the leg is authorized
//	                   and rated as a new outgoing call of the account to
//	                   the target's user part (fsm.RedirectCall); refused
//	                   (new_call_authorization_refused) when it may not
//	                   call that number or cannot pay
//	rejected           not trusted, policy says reject (or no policy)
//
// Each decision is logged (account, call_id, target, decision) and
// counted (troika_redirect_decisions_total); followed targets and the
// first maxDroppedRecords others are recorded in the call (and its xDR)
// with fsm.RedirectCall; a write that fails ends the call (503), as it
// could be neither billed nor recorded. A followed target rings alone,
// within the time left to its delivery step (b2bua_followme.go) and
// Timer C, and, while other contacts wait, is given up (408) when it
// sends nothing at all for DeliveryConfig.RedirectSilence; when it fails
// the next contact is decided. A 3xx target may answer 3xx in turn: its contacts go first.
//
// The caller never sees a 3xx. When nothing is left it gets the best
// final answer of every leg the call tried (the RFC 3261 §16.7 ranking
// forks use: 6xx, then 486, other 4xx, 480, 408, ..., a callee's 503 as
// 500), or 480 when no leg gave one (every target dropped, refused or
// unreachable): the caller learns that the callee cannot be reached now,
// not why (an untrusted network or the account's funds are not its
// business).

// DeliveryConfig tunes what happens beyond the called account's own
// delivery. Zero values take the defaults named on each field.
type DeliveryConfig struct {
	// Resolver looks up the host names of redirect targets, static
	// contacts, follow-me URIs and trusted domains (A and AAAA; no SRV or
	// NAPTR). nil: net.DefaultResolver.
	Resolver Resolver
	// ResolveTimeout bounds one look-up. 2 s when zero.
	ResolveTimeout time.Duration
	// ResolveCacheTTL is how long a look-up's answer is reused; a failure
	// is kept a tenth of it. 60 s when zero.
	ResolveCacheTTL time.Duration
	// Internal reports the addresses a 3xx may send a call to only when
	// the account's service policy trusts them explicitly. nil:
	// billing.Internal (private, loopback, link-local, unspecified,
	// multicast).
	Internal func(netip.Addr) bool
	// OwnRing is how long the called account's own phones (or static
	// contact, with its redirects) ring before its follow-me entries are
	// tried, when it has entries and none of them names the account
	// itself. 20 s when zero.
	OwnRing time.Duration
	// RedirectSilence is how long a 3xx target may send nothing at all
	// (not even 100 Trying) before it is given up (408) for the next
	// contact, rather than after Timer B (32 s). The last contact gets no
	// such limit. 5 s when zero.
	RedirectSilence time.Duration
}

// Resolver looks up host names; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

const (
	defaultResolveTimeout = 2 * time.Second
	defaultResolveTTL     = time.Minute
	defaultOwnRing        = 20 * time.Second
	defaultSilence        = 5 * time.Second

	maxRedirectContacts = 10 // Contacts read from one 3xx
	maxRedirectQueue    = 32 // contacts waiting in one delivery step
	maxDroppedRecords   = 24 // records of targets not followed, per call (fsm.MaxCallRedirects bounds all)
	hostCacheMax        = 1024
	domainLookups       = 8 // trusted domain names looked up at once
)

func (c DeliveryConfig) resolver() Resolver {
	if c.Resolver == nil {
		return net.DefaultResolver
	}
	return c.Resolver
}

func (c DeliveryConfig) internal(a netip.Addr) bool {
	if c.Internal == nil {
		return billing.Internal(a)
	}
	return c.Internal(a)
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// hostCache keeps recent look-ups of host names. The zero value is ready.
type hostCache struct {
	mu sync.Mutex
	m  map[string]hostEntry
}

type hostEntry struct {
	addrs []netip.Addr
	err   error
	until time.Time
}

var errNoAddress = errors.New("no address")

// lookupHost returns the addresses of host: itself for an IP literal,
// else a (cached) look-up bounded by ResolveTimeout.
func (b *B2BUA) lookupHost(host string) ([]netip.Addr, error) {
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap().WithZone("")}, nil
	}
	if host == "" {
		return nil, errNoAddress
	}
	hc := &b.calls.hosts
	now := time.Now()
	hc.mu.Lock()
	e, ok := hc.m[host]
	hc.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.addrs, e.err
	}
	dc := b.cfg.Delivery
	ctx, cancel := context.WithTimeout(b.ctx, orDefault(dc.ResolveTimeout, defaultResolveTimeout))
	found, err := dc.resolver().LookupNetIP(ctx, "ip", host)
	cancel()
	var addrs []netip.Addr
	for _, a := range found {
		a = a.Unmap().WithZone("")
		if a.IsValid() && !containsAddr(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	if err == nil && len(addrs) == 0 {
		err = errNoAddress
	}
	ttl := orDefault(dc.ResolveCacheTTL, defaultResolveTTL)
	if err != nil {
		addrs, ttl = nil, max(ttl/10, time.Second)
	}
	hc.mu.Lock()
	if hc.m == nil || len(hc.m) >= hostCacheMax {
		hc.m = map[string]hostEntry{} // crude, but bounded; names come back at once
	}
	hc.m[host] = hostEntry{addrs: addrs, err: err, until: now.Add(ttl)}
	hc.mu.Unlock()
	return addrs, err
}

// lookupDomains returns every address the names resolve to (those that
// fail are skipped), a few look-ups at a time.
func (b *B2BUA) lookupDomains(names []string) []netip.Addr {
	var (
		mu  sync.Mutex
		out []netip.Addr
		wg  sync.WaitGroup
	)
	sem := make(chan struct{}, domainLookups)
	for _, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			addrs, _ := b.lookupHost(n)
			mu.Lock()
			out = append(out, addrs...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if b == a {
			return true
		}
	}
	return false
}

// ownAddress reports whether ip:port reaches the switch itself: an open
// socket, or a configured main or alias address on one of its ports
// (which may be open on another node of the cluster). The unspecified
// address always is.
func (b *B2BUA) ownAddress(ip netip.Addr, port int) bool {
	ip = ip.Unmap().WithZone("")
	if ip.IsUnspecified() {
		return true
	}
	for _, name := range b.sockets.All() { // relay sockets too: addresses of other nodes
		_, hp, _ := strings.Cut(name, ":")
		if ap, err := netip.ParseAddrPort(hp); err == nil && ap.Addr().Unmap() == ip && int(ap.Port()) == port {
			return true
		}
	}
	for _, a := range b.cfg.Addresses {
		if transport.CanonicalIP(a) == ip.String() && containsPort(b.cfg.Ports, port) {
			return true
		}
	}
	for _, al := range b.state.Aliases() {
		if transport.CanonicalIP(al.IP) != ip.String() {
			continue
		}
		if containsPort(b.cfg.Ports, port) || containsPort(al.Ports.UDP, port) || containsPort(al.Ports.TCP, port) ||
			containsPort(al.Ports.TLS, port) {
			return true
		}
	}
	return false
}

func containsPort(ports []int, p int) bool {
	for _, q := range ports {
		if q != 0 && q == p {
			return true
		}
	}
	return false
}

// redirectContact is one Contact of a 3xx.
type redirectContact struct {
	uri sip.Uri
	q   int // thousandths; 1000 when absent
}

// followsRedirect tells the 3xx codes whose Contacts are followed. 305
// (Use Proxy) and 380 (Alternative Service) are not: they fail the leg.
func followsRedirect(code int) bool {
	return code == 300 || code == sip.StatusMovedPermanently || code == sip.StatusMovedTemporarily
}

// redirectContacts reads the Contacts of a 3xx: sip and sips URIs with a
// host, at most maxRedirectContacts distinct ones in message order, then
// ordered by q (highest first; ties keep message order).
func redirectContacts(msg interface{ GetHeaders(string) []sip.Header }) []redirectContact {
	var out []redirectContact
	seen := map[string]bool{}
	for _, name := range []string{"Contact", "m"} {
		for _, h := range msg.GetHeaders(name) {
			for _, e := range sipmsg.SplitList(h.Value()) {
				if len(out) == maxRedirectContacts {
					break
				}
				cs, err := sipmsg.ParseContact(e)
				if err != nil {
					continue
				}
				var u sip.Uri
				if sip.ParseUri(cs.URI, &u) != nil || u.Host == "" {
					continue
				}
				ruri, transport, port, ok := requestURI(u)
				if !ok {
					continue
				}
				key := transport + " " + strings.ToLower(ruri.Host) + fmt.Sprintf(":%d ", port) + ruri.User
				if seen[key] {
					continue
				}
				seen[key] = true
				q := cs.Q
				if q < 0 {
					q = 1000
				}
				out = append(out, redirectContact{uri: u, q: q})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].q > out[j].q })
	return out
}

// requestURI turns a sip or sips URI into the Request-URI the switch
// sends (user, host, port and a transport parameter only: no headers,
// maddr or method), its transport (the transport parameter; tls for
// sips) and port (the transport's default when absent).
func requestURI(u sip.Uri) (ruri sip.Uri, transport string, port int, ok bool) {
	scheme := strings.ToLower(u.Scheme)
	transport = "udp"
	if scheme == "sips" {
		transport = "tls"
	} else if scheme != "sip" {
		return sip.Uri{}, "", 0, false
	}
	if u.UriParams != nil {
		if t, has := u.UriParams.Get("transport"); has {
			transport = strings.ToLower(t)
		}
	}
	switch {
	case transport != "udp" && transport != "tcp" && transport != "tls",
		scheme == "sips" && transport != "tls",
		u.Host == "", u.Port < 0 || u.Port > 65535:
		return sip.Uri{}, "", 0, false
	}
	port = u.Port
	if port == 0 {
		port = sip.DefaultPort(transport)
	}
	ruri = sip.Uri{Scheme: scheme, User: u.User, Host: u.Host, Port: u.Port}
	if scheme == "sip" && transport != "udp" {
		ruri.UriParams = sip.NewParams()
		ruri.UriParams.Add("transport", transport)
	}
	return ruri, transport, port, true
}

// uriTarget makes a target of a sip or sips URI, sent from the main
// socket of its transport to the address its host resolves to (of the
// socket's IP family when there is one). It also returns every address
// the host resolves to.
func (b *B2BUA) uriTarget(u sip.Uri, desc string) (target, []netip.Addr, error) {
	ruri, transport, port, ok := requestURI(u)
	if !ok {
		return target{}, nil, fmt.Errorf("%s: not a sip or sips URI with a host and a known transport", u.String())
	}
	sock := b.sockets.Main(transport)
	if sock == nil {
		return target{}, nil, fmt.Errorf("%s: no %s socket to send from", u.String(), transport)
	}
	addrs, err := b.lookupHost(ruri.Host)
	if err != nil {
		return target{}, nil, fmt.Errorf("%s: %w: %w", ruri.Host, errUnresolvable, err)
	}
	ip := pickAddr(addrs, sock)
	dest := netip.AddrPortFrom(ip, uint16(port)).String()
	return target{uri: ruri, dest: dest, transport: transport, sock: sock, desc: desc + " " + ruri.String() + " via " + dest}, addrs, nil
}

var errUnresolvable = errors.New("unresolvable")

// pickAddr returns the first address of the socket's IP family, else the
// first.
func pickAddr(addrs []netip.Addr, sock *transport.Socket) netip.Addr {
	if own, err := netip.ParseAddr(sock.IP); err == nil {
		for _, a := range addrs {
			if a.Is4() == own.Unmap().Is4() {
				return a
			}
		}
	}
	return addrs[0]
}

// targetKeys name a target for loop detection: its transport and
// address, and with its user.
func targetKeys(t target) (addr, full string) {
	d := strings.ToLower(t.dest)
	if ap, err := netip.ParseAddrPort(t.dest); err == nil {
		d = netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()).String()
	}
	addr = t.transport + " " + d
	return addr, addr + " " + t.uri.User
}

// redirectFacts is what decides the fate of one 3xx target.
type redirectFacts struct {
	resolved  bool   // its host resolved
	own       bool   // it reaches the switch itself
	loop      bool   // already called in this call, or a redirector of it
	overLimit bool   // the call has followed max_redirects targets
	trusted   bool   // by the policy's trusted networks
	internal  bool   // private, loopback, ...
	action    string // the policy's untrusted_action; "" without a policy
}

// decideRedirect is the decision for a 3xx target, checked in this order.
func decideRedirect(f redirectFacts) string {
	switch {
	case !f.resolved:
		return billing.DecisionUnresolvable
	case f.own:
		return billing.DecisionOwnAddress
	case f.loop:
		return billing.DecisionLoop
	case f.overLimit:
		return billing.DecisionLimit
	case f.trusted:
		return billing.DecisionTrusted
	case f.internal:
		return billing.DecisionPrivate
	case f.action == billing.NewCallAuthorization:
		return billing.DecisionNewAuth
	}
	return billing.DecisionRejected
}

// trustedTarget applies trusted networks to a target: its host by name,
// the address it is called at by address and CIDR, then, if needed, by
// the addresses of the trusted domain names.
func (b *B2BUA) trustedTarget(tn billing.TrustedNetworks, host string, ip netip.Addr) bool {
	addrs := []netip.Addr{ip}
	host = strings.Trim(host, "[]")
	if tn.Trusted(host, addrs, nil) {
		return true
	}
	if len(tn.Domains) == 0 {
		return false
	}
	return tn.Trusted(host, addrs, b.lookupDomains(tn.Domains))
}

// nextRedirect decides the queued 3xx contacts of step st in turn until
// one is to be called, and returns it; ok is false when none is left. fl
// is set when the call cannot go on (a replicated write failed).
func (c *call) nextRedirect(st *step, queue *[]redirectContact) (t target, ok bool, fl *failure) {
	b := c.b
	var pol *fsm.RedirectPolicy
	if id := st.account.ServicePolicy; id != "" {
		if p, found := b.state.ServicePolicy(id); found {
			pol = &p.Redirect
		}
	}
	limit := billing.DefaultMaxRedirects
	var tn billing.TrustedNetworks
	action := ""
	if pol != nil {
		if pol.MaxRedirects > 0 {
			limit = pol.MaxRedirects
		}
		tn, _ = billing.ParseTrustedNetworks(pol.TrustedNetworks) // validated when stored
		action = pol.UntrustedAction
	}
	for len(*queue) > 0 {
		ct := (*queue)[0]
		*queue = (*queue)[1:]
		ruri, _, _, _ := requestURI(ct.uri)
		text := ruri.String()
		t, addrs, err := b.uriTarget(ct.uri, "redirect")
		facts := redirectFacts{resolved: err == nil, action: action}
		if err != nil && !errors.Is(err, errUnresolvable) {
			c.log.Warn("3xx contact cannot be called; skipping it", "target", text, "error", err)
			b.m.forkResults.WithLabelValues("skipped").Inc()
			continue
		}
		if err == nil {
			ip, _ := netip.ParseAddrPort(t.dest)
			for _, a := range addrs {
				facts.own = facts.own || b.ownAddress(a, int(ip.Port()))
			}
			addrKey, full := targetKeys(t)
			facts.loop = c.redirectors[addrKey] || c.tried[full]
			facts.overLimit = c.hops >= limit
			if !facts.own && !facts.loop && !facts.overLimit {
				facts.trusted = pol != nil && b.trustedTarget(tn, ruri.Host, ip.Addr())
				facts.internal = b.cfg.Delivery.internal(ip.Addr())
			}
		}
		decision := decideRedirect(facts)
		c.logDecision(st.account.ID, text, decision, "")
		switch decision {
		case billing.DecisionTrusted:
			if _, fl := c.record(text, decision, nil); fl != nil {
				return target{}, false, fl
			}
		case billing.DecisionNewAuth:
			charge := &fsm.ChargeRequest{Account: st.account.ID, Role: fsm.RoleOutgoing, Number: ruri.User}
			refused, fl := c.record(text, decision, charge)
			if fl != nil {
				return target{}, false, fl
			}
			if refused != nil {
				c.logDecision(st.account.ID, text, billing.DecisionNewAuthRefused, refused.Error())
				if _, fl := c.record(text, billing.DecisionNewAuthRefused, nil); fl != nil {
					return target{}, false, fl
				}
				continue
			}
		default:
			if c.dropped < maxDroppedRecords {
				c.dropped++
				if _, fl := c.record(text, decision, nil); fl != nil {
					return target{}, false, fl
				}
			}
			continue
		}
		c.hops++
		return t, true, nil
	}
	return target{}, false, nil
}

// logDecision logs and counts one decision about a target.
func (c *call) logDecision(account, target, decision, detail string) {
	c.b.m.redirects.WithLabelValues(decision).Inc()
	args := []any{"call_id", c.id, "account", account, "target", target, "decision", decision}
	if c.account != "" {
		args = append(args, "caller", c.account)
	}
	if detail != "" {
		args = append(args, "detail", detail)
	}
	c.b.log.Info("redirect decision", args...)
}

// record writes one RedirectCall. It returns the state machine's refusal
// (for a new authorization: the account may not call the target or cannot
// pay), or fl when the write failed: the call then ends (it could be
// neither billed nor recorded).
func (c *call) record(target, decision string, charge *fsm.ChargeRequest) (refused *fsm.Error, fl *failure) {
	res, err := c.b.proposeCall("redirect", &fsm.RedirectCall{ID: c.id, Index: c.nRedirects, Target: target,
		Decision: decision, Charge: charge, MaxSeconds: c.b.cfg.Calls.MaxCallSeconds})
	if err != nil {
		c.log.Error("redirect record could not be written; ending the call", "target", target, "decision", decision, "error", err)
		return nil, &failure{sip.StatusServiceUnavailable, statusText(503), BySystem}
	}
	if res.Err != nil {
		if charge == nil {
			c.log.Warn("redirect record refused by the state machine", "target", target, "decision", decision, "error", res.Err)
		}
		return res.Err, nil
	}
	if res.Call != nil {
		c.nRedirects = len(res.Call.Redirects)
		c.maxDur = res.Call.MaxDuration
	}
	return nil, nil
}
