package keepalive

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/emiago/sipgo/sip"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// options builds the OPTIONS that pings b from sock: to b's contact, sent
// to the address its REGISTER came from (the NAT's public side), through
// its Path, with Via and From naming sock. For UDP it leaves from sock
// itself; for TCP and TLS sipgo finds the phone's own connection by its
// source address (transport.Socket.Laddr, as the B2BUA's legs do).
func options(b fsm.Binding, sock *transport.Socket, callID string) (*sip.Request, error) {
	var ruri sip.Uri
	if err := sip.ParseUri(b.Contact, &ruri); err != nil {
		return nil, fmt.Errorf("contact %q: %w", b.Contact, err)
	}
	if ruri.Host == "" {
		return nil, fmt.Errorf("contact %q: no host", b.Contact)
	}
	ruri.Headers, ruri.Password = nil, "" // never copy a phone's escaped headers into a request
	if _, _, err := net.SplitHostPort(b.Source); err != nil {
		return nil, fmt.Errorf("source %q: %w", b.Source, err)
	}
	host := transport.URIHost(sock.IP)
	req := sip.NewRequest(sip.OPTIONS, ruri)
	req.AppendHeader(sock.Via(sip.GenerateBranchN(16)))
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	for _, r := range b.Path {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "keepalive", Host: host}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	to := ruri
	to.UriParams, to.Headers = nil, nil
	req.AppendHeader(&sip.ToHeader{Address: to})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	req.AppendHeader(sip.NewHeader("User-Agent", sipmsg.ServerName))
	req.SetTransport(sip.NetworkToUpper(b.Transport))
	req.SetDestination(b.Source)
	req.Laddr = sock.Laddr()
	req.SetBody(nil)
	return req, nil
}

// hasFlow reports whether sock has the connection b's phone opened: a
// TCP or TLS binding is reached only over it (a connection the switch
// would open to a phone behind NAT goes nowhere). UDP always has one.
func hasFlow(b fsm.Binding, sock *transport.Socket) bool {
	if !transport.IsStream(b.Transport) {
		return true
	}
	_, err := sock.UA.TransportLayer().GetConnection(b.Transport, b.Source)
	return err == nil
}

// send runs the OPTIONS transaction and says what became of it. A
// transport error on a stream is the phone's connection failing; on UDP
// it is this node's socket.
func send(ctx context.Context, sock *transport.Socket, req *sip.Request) (outcome, error) {
	failed := outcomeSendError
	if transport.IsStream(sip.NetworkToLower(req.Transport())) {
		failed = outcomeNoFlow
	}
	tx, err := sock.UA.TransactionLayer().Request(ctx, req)
	if err != nil {
		return failed, fmt.Errorf("send OPTIONS: %w", err)
	}
	defer tx.Terminate()
	if _, err := transport.FinalResponse(ctx, tx); err != nil {
		if errors.Is(err, sip.ErrTransactionTransport) {
			return failed, fmt.Errorf("OPTIONS: %w", err)
		}
		return outcomeTimeout, err
	}
	return outcomeOK, nil
}
