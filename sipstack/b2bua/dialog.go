package b2bua

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// dialog is one leg of a call: the dialog state of the switch's side
// (RFC 3261 §12) and where the leg's requests go. The fields above mu are
// set before the dialog is shared and never change.
type dialog struct {
	role      string // LegCaller or LegCallee
	sock      string // name of the socket the leg uses, e.g. "udp:127.0.0.2:5070"
	transport string // udp, tcp or tls
	// dest is the host:port requests are sent to: the phone's source
	// address (received/rport), which reaches it behind NAT, rather than
	// the address in its Contact.
	dest     string
	callID   string
	localTag string
	local    nameAddr // the switch as this leg sees it
	remote   nameAddr // the peer

	mu         sync.Mutex
	remoteTag  string
	target     sip.Uri  // the peer's Contact, refreshed by re-INVITE and UPDATE
	routes     []string // route set, in the order requests carry it
	localCSeq  uint32
	remoteCSeq uint32
}

// nameAddr is the name-addr of a From or To header, without its tag.
type nameAddr struct {
	name string
	uri  sip.Uri
}

func (d *dialog) peerTag() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.remoteTag
}

// setPeer records what the peer's 2xx says about the dialog.
func (d *dialog) setPeer(tag string, target sip.Uri, routes []string) {
	d.mu.Lock()
	d.remoteTag, d.target, d.routes = tag, target, routes
	d.mu.Unlock()
}

func (d *dialog) setTarget(u sip.Uri) {
	d.mu.Lock()
	d.target = u
	d.mu.Unlock()
}

// acceptCSeq checks an in-dialog request's CSeq against the last one
// from the peer (RFC 3261 §12.2.2: lower ones are out of order) and
// records it.
func (d *dialog) acceptCSeq(n uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.remoteCSeq != 0 && n < d.remoteCSeq {
		return false
	}
	d.remoteCSeq = n
	return true
}

// leg is the dialog as the fsm keeps it.
func (d *dialog) leg() fsm.Leg {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fsm.Leg{
		Role: d.role, CallID: d.callID, LocalTag: d.localTag, RemoteTag: d.remoteTag,
		LocalURI: d.local.uri.String(), RemoteURI: d.remote.uri.String(), RemoteTarget: d.target.String(),
		RouteSet: slices.Clone(d.routes), Ingress: d.sock, Destination: d.dest, Transport: d.transport,
		LocalCSeq: d.localCSeq, RemoteCSeq: d.remoteCSeq,
	}
}

// request builds a new in-dialog request with the next local CSeq.
func (d *dialog) request(b *B2BUA, method sip.RequestMethod) (*sip.Request, *transport.Socket, error) {
	d.mu.Lock()
	d.localCSeq++
	spec := d.specLocked(method, d.localCSeq)
	d.mu.Unlock()
	return b.buildRequest(spec)
}

// ackFor builds the ACK of a 2xx to the INVITE with CSeq n (RFC 3261
// §13.2.2.4: a transaction of its own, new branch, same CSeq number).
func (d *dialog) ackFor(b *B2BUA, n uint32) (*sip.Request, *transport.Socket, error) {
	d.mu.Lock()
	spec := d.specLocked(sip.ACK, n)
	d.mu.Unlock()
	return b.buildRequest(spec)
}

func (d *dialog) specLocked(method sip.RequestMethod, cseq uint32) reqSpec {
	return reqSpec{
		method: method, ruri: *d.target.Clone(), callID: d.callID, cseq: cseq,
		from: d.local, fromTag: d.localTag, to: d.remote, toTag: d.remoteTag,
		routes: slices.Clone(d.routes), sock: d.sock, dest: d.dest, transport: d.transport,
		contact: method == sip.INVITE || method == sip.UPDATE,
	}
}

// reqSpec describes a request the switch sends on a leg.
type reqSpec struct {
	method          sip.RequestMethod
	ruri            sip.Uri
	callID          string
	cseq            uint32
	from, to        nameAddr
	fromTag, toTag  string
	routes          []string
	sock            string // socket name
	dest, transport string
	branch          string // empty: a new one
	contact         bool   // add our Contact (INVITE, UPDATE)
	maxForwards     uint32 // 70 when zero
}

var errSocketGone = errors.New("the leg's socket is not open on this node")

// buildRequest turns spec into a request leaving from spec.sock: Via and
// Contact carry that socket's address, and for UDP the datagram leaves
// from it; for TCP and TLS sipgo reuses the connection the phone opened
// (transport.Socket.Laddr).
func (b *B2BUA) buildRequest(spec reqSpec) (*sip.Request, *transport.Socket, error) {
	sock := b.sockets.Named(spec.sock)
	if sock == nil {
		return nil, nil, fmt.Errorf("%s: %w", spec.sock, errSocketGone)
	}
	req := sip.NewRequest(spec.method, spec.ruri)
	branch := spec.branch
	if branch == "" {
		branch = sip.GenerateBranchN(16)
	}
	req.AppendHeader(sock.Via(branch))
	mf := sip.MaxForwardsHeader(70)
	if spec.maxForwards > 0 {
		mf = sip.MaxForwardsHeader(spec.maxForwards)
	}
	req.AppendHeader(&mf)
	for _, r := range spec.routes {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	from := &sip.FromHeader{DisplayName: spec.from.name, Address: spec.from.uri, Params: sip.NewParams()}
	from.Params.Add("tag", spec.fromTag)
	req.AppendHeader(from)
	to := &sip.ToHeader{DisplayName: spec.to.name, Address: spec.to.uri, Params: sip.NewParams()}
	if spec.toTag != "" {
		to.Params.Add("tag", spec.toTag)
	}
	req.AppendHeader(to)
	cid := sip.CallIDHeader(spec.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: spec.cseq, MethodName: spec.method})
	if spec.contact {
		req.AppendHeader(sock.Contact())
	}
	req.AppendHeader(sip.NewHeader("User-Agent", sipmsg.ServerName))
	req.SetTransport(sip.NetworkToUpper(spec.transport))
	req.SetDestination(spec.dest)
	req.Laddr = sock.Laddr()
	if sock.Relay && sock.Transport != "udp" {
		// A stream relay: its stack carries the leg as datagrams to the
		// node holding the stream (dispatch_stream.go); Via stays TCP/TLS.
		req.SetTransport("UDP")
	}
	req.SetBody(nil)
	return req, sock, nil
}

// do sends a non-INVITE request through sock's transaction layer and
// returns its final response (1xx are skipped). The transaction's own
// timer (64*T1) bounds it.
func (b *B2BUA) do(sock *transport.Socket, req *sip.Request) (*sip.Response, error) {
	ctx, cancel := context.WithTimeout(b.ctx, sip.Timer_F+sip.T1)
	defer cancel()
	tx, err := sock.UA.TransactionLayer().Request(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("send %s: %w", req.Method, err)
	}
	defer tx.Terminate()
	res, err := transport.FinalResponse(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", req.Method, err)
	}
	return res, nil
}

// sendAck writes an ACK (no transaction) through sock.
func (b *B2BUA) sendAck(sock *transport.Socket, ack *sip.Request) error {
	if err := sock.UA.TransportLayer().WriteMsg(ack); err != nil {
		return fmt.Errorf("send ACK: %w", err)
	}
	return nil
}

// routeSet returns the values of the Record-Route headers of msg, one
// entry each, in message order.
func routeSet(msg interface{ GetHeaders(string) []sip.Header }) []string {
	var out []string
	for _, h := range msg.GetHeaders("Record-Route") {
		for _, e := range sipmsg.SplitList(h.Value()) {
			if len(out) == maxRoutes {
				return out
			}
			if len(e) <= maxRouteEntry && sipmsg.SafeText(e) {
				out = append(out, e)
			}
		}
	}
	return out
}

// Bounds on a route set taken from a peer's message.
const (
	maxRoutes     = 8
	maxRouteEntry = 512
)

// contactURI parses the URI of a message's first Contact, as the remote
// target of a dialog. It must be a sip or sips URI with a host.
func contactURI(msg interface{ GetHeaders(string) []sip.Header }) (sip.Uri, bool) {
	for _, name := range []string{"Contact", "m"} {
		for _, h := range msg.GetHeaders(name) {
			entries := sipmsg.SplitList(h.Value())
			if len(entries) == 0 {
				continue
			}
			c, err := sipmsg.ParseContact(entries[0])
			if err != nil {
				return sip.Uri{}, false
			}
			var u sip.Uri
			if sip.ParseUri(c.URI, &u) != nil {
				return sip.Uri{}, false
			}
			return u, true
		}
	}
	return sip.Uri{}, false
}

// hostPort joins a host and port for a destination; port 0 means the
// transport's default.
func hostPort(host string, port int, transport string) string {
	if port == 0 {
		port = sip.DefaultPort(transport)
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port))
}
