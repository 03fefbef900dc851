package b2bua

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/auth"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// Where a call goes: resolveDestination maps the dialed number to an
// account (the seam for number translation, vendors and off-net routes in
// later steps), deliveryTargets lists the addresses that account takes
// calls at.

// destination is what the Request-URI of an INVITE leads to.
type destination struct {
	cld    string       // the number called: as dialed, or a vendor call's after translation
	callee fsm.Account  // on-net: the account called
	vendor *vendorRoute // a call from a vendor (b2bua_vendor.go); nil for a customer's
}

// resolveDestination maps the INVITE's Request-URI user to a destination.
// A customer's call (today every one is on-net) must dial an account id,
// else 404. A vendor's call is translated by its connection's rules first
// and refused (404, or 500 when a rule fails) unless the result is an
// account; the refusal is logged, counted and recorded (see
// vendorDestination).
func (b *B2BUA) resolveDestination(p auth.Principal, req *sip.Request) (destination, *sipmsg.Reply) {
	if p.IsVendor() {
		return b.vendorDestination(p, req)
	}
	cld := req.Recipient.User
	if !fsm.ValidID(cld) {
		return destination{}, &sipmsg.Reply{Code: sip.StatusNotFound, Reason: "Not Found"}
	}
	acct, ok := b.state.Account(cld)
	if !ok {
		return destination{}, &sipmsg.Reply{Code: sip.StatusNotFound, Reason: "Not Found"}
	}
	return destination{cld: cld, callee: acct}, nil
}

// target is one address a call is offered to.
type target struct {
	uri       sip.Uri           // Request-URI of the INVITE
	dest      string            // host:port it is sent to
	transport string            // udp, tcp or tls
	sock      *transport.Socket // the socket it leaves from
	routes    []string          // Route headers (a binding's Path)
	desc      string            // for logs
}

// deliveryTargets lists where calls to acct go at now: its static contact,
// or every current binding (called in parallel). A binding is reached
// from the socket it registered through, at the address its REGISTER came
// from; a binding whose socket is not open on this node is skipped (and
// logged): a later step routes it through the node holding that socket.
// A static contact's host name is resolved here (lookupHost), so the
// redirect server's address is known for loop detection; one that does
// not resolve is skipped (and logged).
func (b *B2BUA) deliveryTargets(acct fsm.Account, cld string, now time.Time) []target {
	if acct.Incoming.Mode == fsm.DeliverStatic {
		in := acct.Incoming
		sock := b.sockets.Main(in.Transport)
		if sock == nil {
			b.log.Warn("no socket for the account's static delivery transport", "account", acct.ID, "transport", in.Transport)
			b.m.forkResults.WithLabelValues("skipped").Inc()
			return nil
		}
		u := sip.Uri{Scheme: "sip", User: cld, Host: transport.URIHost(in.Host), Port: in.Port}
		if in.Transport != "udp" {
			u.UriParams = sip.NewParams()
			u.UriParams.Add("transport", in.Transport)
		}
		dest := hostPort(in.Host, in.Port, in.Transport)
		if _, err := netip.ParseAddr(strings.Trim(in.Host, "[]")); err != nil {
			addrs, err := b.lookupHost(in.Host)
			if err != nil {
				b.log.Warn("the account's static delivery host does not resolve", "account", acct.ID, "host", in.Host, "error", err)
				b.m.forkResults.WithLabelValues("skipped").Inc()
				return nil
			}
			_, port, _ := net.SplitHostPort(dest)
			dest = net.JoinHostPort(pickAddr(addrs, sock).String(), port)
		}
		return []target{{uri: u, dest: dest, transport: in.Transport, sock: sock,
			desc: "static " + in.Transport + ":" + hostPort(in.Host, in.Port, in.Transport)}}
	}
	var out []target
	seen := map[string]bool{}
	for _, bn := range b.state.Bindings(acct.ID, now.UnixMilli()) {
		sock := b.sockets.Named(bn.Ingress)
		if sock == nil {
			b.log.Warn("binding's ingress socket is not open on this node; skipping it", "account", acct.ID,
				"contact", bn.Contact, "ingress", bn.Ingress)
			b.m.forkResults.WithLabelValues("skipped").Inc()
			continue
		}
		u, err := contactRequestURI(bn.Contact)
		if err != nil {
			b.log.Warn("binding's contact cannot be called; skipping it", "account", acct.ID, "contact", bn.Contact, "error", err)
			b.m.forkResults.WithLabelValues("skipped").Inc()
			continue
		}
		if _, _, err := net.SplitHostPort(bn.Source); err != nil {
			continue
		}
		key := bn.Source + " " + bn.Contact
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, target{uri: u, dest: bn.Source, transport: bn.Transport, sock: sock,
			routes: slices.Clone(bn.Path), desc: bn.Contact + " via " + bn.Ingress})
	}
	return out
}

// contactRequestURI is the Request-URI of a request to a registered
// contact: the contact's URI without the escaped headers it may carry
// (RFC 4475 regescrt: "?Route=..."), which a phone must not be able to
// inject into the switch's requests, and without a password.
func contactRequestURI(contact string) (sip.Uri, error) {
	var u sip.Uri
	if err := sip.ParseUri(contact, &u); err != nil {
		return u, err
	}
	if u.Host == "" {
		return u, errors.New("no host")
	}
	u.Headers, u.Password = nil, ""
	return u, nil
}

// calleeURIs returns the From and To the switch uses on a leg towards
// target: the caller's number and the dialed one, with host the leg's
// socket IP, so a phone registered through an alias sees only the alias.
func calleeURIs(t target, cli, cliName, cld string) (from, to nameAddr) {
	host := transport.URIHost(t.sock.IP)
	from = nameAddr{name: cliName, uri: sip.Uri{Scheme: "sip", User: cli, Host: host}}
	to = nameAddr{uri: sip.Uri{Scheme: "sip", User: cld, Host: host}}
	return from, to
}

// assertedIdentity is the P-Asserted-Identity (RFC 3325) of a callee
// leg: the identity the switch vouches for, which is its From.
func assertedIdentity(from nameAddr) sip.Header {
	v := "<" + from.uri.String() + ">"
	if from.name != "" {
		v = `"` + from.name + `" ` + v
	}
	return sip.NewHeader("P-Asserted-Identity", v)
}

// callerName is the name callees see for a call's caller: the account's
// own display name (the caller's From is the caller's word, never shown:
// a customer could present itself as anyone), or for a call from a
// vendor, the name the carrier presents, kept safe.
func callerName(caller fsm.Account, dest destination, fromName string) string {
	if dest.vendor != nil {
		return displayName(fromName)
	}
	return displayName(caller.DisplayName)
}

// displayName keeps a From display name safe to copy to another leg: no
// quotes, backslashes or control characters, at most 64 bytes.
func displayName(s string) string {
	s = strings.Trim(s, "\" ")
	if strings.ContainsAny(s, "\"\\") {
		return ""
	}
	return sipmsg.CleanText(s, 64)
}
