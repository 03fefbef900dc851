package registrar

import (
	"context"
	"crypto/md5"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/auth"
	"github.com/troika-sip/troika/sipstack/sipmsg"
	"github.com/troika-sip/troika/sipstack/transport"
)

// Benchmarks of a REGISTER's way through one node, without sockets and
// without raft: parsing the datagram (as sipgo does, with troika's
// parser), verifying its digest, and the registrar's whole decision with
// the write applied straight to a state machine. Run with
//
//	go test ./sipstack/registrar -run '^$' -bench . -benchmem

const (
	benchRealm    = "troika"
	benchAccounts = 2000
	benchSource   = "127.0.0.28:5060"
)

// directStore applies proposals to a state at once, through their
// encoding, as a one-node cluster's leader does after its commit.
type directStore struct{ s *fsm.State }

func (d directStore) Propose(_ context.Context, c fsm.Command) (fsm.Result, error) {
	data, err := fsm.Encode(c)
	if err != nil {
		return fsm.Result{}, err
	}
	return d.s.Apply(data)
}

type benchNode struct {
	state *fsm.State
	auth  *auth.Authenticator
	reg   *Registrar
	sock  *transport.Socket
	now   time.Time
}

func newBenchNode(b *testing.B) *benchNode {
	b.Helper()
	s := fsm.New()
	apply := func(c fsm.Command) {
		data, err := fsm.Encode(c)
		if err != nil {
			b.Fatal(err)
		}
		if r, err := s.Apply(data); err != nil || r.Err != nil {
			b.Fatal(err, r.Err)
		}
	}
	apply(&fsm.InitNonceSecret{Secret: []byte("0123456789abcdef0123456789abcdef")})
	apply(&fsm.InitRealm{Realm: benchRealm})
	apply(&fsm.PutTariff{Tariff: fsm.Tariff{ID: "demo", Currency: "USD", Rates: []fsm.Rate{{PerMinute: 10_000, FirstInterval: 1, NextInterval: 1}}}})
	var accts []fsm.Account
	for i := range benchAccounts {
		id := fmt.Sprintf("u%06d", i)
		accts = append(accts, fsm.Account{ID: id, Credentials: fsm.HashCredentials(id, benchRealm, "Bench.pass."+id[1:]),
			Billing: fsm.Prepaid, TariffOut: "demo"})
	}
	apply(&fsm.CreateAccounts{Now: 1, Accounts: accts})
	log := slog.New(slog.DiscardHandler)
	a, err := auth.New(auth.Config{Realm: benchRealm, Algorithms: []string{auth.MD5}, NonceTTL: time.Minute,
		Metrics: prometheus.NewRegistry(), Logger: log}, s)
	if err != nil {
		b.Fatal(err)
	}
	n := &benchNode{state: s, auth: a, now: time.UnixMilli(1_700_000_000_000)}
	reg, err := New(Config{DefaultExpires: 3600, MinExpires: 60, MaxExpires: 7200, MaxContacts: 10,
		ProposeTimeout: 5 * time.Second, MaxInFlight: 1000, Metrics: prometheus.NewRegistry(), Logger: log,
		Now: func() time.Time { return n.now }}, s, directStore{s}, a)
	if err != nil {
		b.Fatal(err)
	}
	sock, err := transport.NewSocket("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 30), Port: 5060},
		transport.StackOptions{Parser: transport.NewParser(), Log: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sock.Close)
	n.reg, n.sock = reg, sock
	return n
}

// register is the datagram SIPp's reg scenario sends for user i: without
// credentials when nonce is "", else answering nonce.
func registerBytes(i int, cseq int, nonce string) []byte {
	id := fmt.Sprintf("u%06d", i)
	callID := fmt.Sprintf("%d-4242@127.0.0.28", i)
	authz := ""
	if nonce != "" {
		uri := "sip:127.0.0.30:5060"
		cnonce, nc := "6b8b4567", "00000001"
		resp := auth.Response(md5.New, id, benchRealm, "Bench.pass."+id[1:], "REGISTER", uri, nonce, nc, cnonce, "auth")
		authz = fmt.Sprintf("Authorization: Digest username=\"%s\",realm=\"%s\",cnonce=\"%s\",nc=%s,qop=auth,uri=\"%s\",nonce=\"%s\",response=\"%s\",algorithm=MD5\r\n",
			id, benchRealm, cnonce, nc, uri, nonce, resp)
	}
	return fmt.Appendf(nil, "REGISTER sip:127.0.0.30:5060 SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.28:5060;branch=z9hG4bK-4242-%d-%d\r\n"+
		"From: <sip:%s@127.0.0.30>;tag=4242SIPpTag00%d\r\n"+
		"To: <sip:%s@127.0.0.30>\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: %d REGISTER\r\n"+
		"Contact: <sip:%s@127.0.0.28:5060>\r\n"+
		"Max-Forwards: 70\r\n"+
		"Expires: 3600\r\n"+
		"User-Agent: SIPp\r\n"+
		"%s"+
		"Content-Length: 0\r\n\r\n", i, cseq, id, i, id, callID, cseq, id, authz)
}

// parse reads data as sipgo's UDP transport does.
func parse(b *testing.B, p *sip.Parser, data []byte) *sip.Request {
	msg, err := p.ParseSIP(data)
	if err != nil {
		b.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetTransport("UDP")
	req.SetSource(benchSource)
	return req
}

// BenchmarkRegister: the two requests of a registration with digest.
//
//   - parse: sipgo's parse of the datagram with credentials;
//   - parse+verify: the same, then its digest verified (nonce, nc, HA1);
//   - challenge: the first REGISTER parsed and answered 401, the
//     response serialized;
//   - register: the second one parsed, verified and its binding written
//     (encoded, decoded and applied to the state), the 200 serialized.
func BenchmarkRegister(b *testing.B) {
	n := newBenchNode(b)
	p := transport.NewParser()
	first := make([][]byte, benchAccounts)
	second := make([][]byte, benchAccounts)
	// round makes the second REGISTERs of a round of registrations: a
	// nonce issued now, a CSeq above the last round's.
	round := func(r int) {
		for i := range benchAccounts {
			nonce := auth.MintNonce([]byte("0123456789abcdef0123456789abcdef"), benchRealm,
				auth.Binding{Source: netip.MustParseAddrPort(benchSource).Addr(), CallID: fmt.Sprintf("%d-4242@127.0.0.28", i)}, n.now)
			second[i] = registerBytes(i, 2+r, nonce)
		}
	}
	for i := range benchAccounts {
		first[i] = registerBytes(i, 1, "")
	}
	round(0)
	b.Run("parse", func(b *testing.B) {
		eachIteration(b, func(i int) { parse(b, p, second[i%benchAccounts]) })
	})
	b.Run("parse+verify", func(b *testing.B) {
		eachIteration(b, func(i int) {
			req := parse(b, p, second[i%benchAccounts])
			id := fmt.Sprintf("u%06d", i%benchAccounts)
			if _, r := n.auth.Authenticate(n.sock.Name, req, auth.WWW, id, n.now); r != nil {
				b.Fatalf("%d %s", r.Code, r.Reason)
			}
		})
	})
	b.Run("challenge", func(b *testing.B) {
		eachIteration(b, func(i int) { n.handle(b, p, first[i%benchAccounts], 401) })
	})
	b.Run("register", func(b *testing.B) {
		eachIteration(b, func(i int) {
			if i > 0 && i%benchAccounts == 0 {
				// A new round: a later time, new nonces and CSeqs.
				b.StopTimer()
				n.now = n.now.Add(time.Millisecond)
				round(i / benchAccounts)
				b.StartTimer()
			}
			n.handle(b, p, second[i%benchAccounts], 200)
		})
	})
}

// eachIteration runs f for every iteration of b's loop with its index,
// reporting allocations.
func eachIteration(b *testing.B, f func(i int)) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f(i)
	}
}

// handle parses data, has the registrar answer it with the status want
// and serializes the response.
func (n *benchNode) handle(b *testing.B, p *sip.Parser, data []byte, want int) {
	req := parse(b, p, data)
	r := n.reg.Handle(context.Background(), n.sock, req)
	if r.Code != want {
		b.Fatalf("%d %s", r.Code, r.Reason)
	}
	_ = respond(req, r).String()
}

// respond builds the response as sipmsg.Respond does.
func respond(req *sip.Request, r sipmsg.Reply) *sip.Response {
	res := sip.NewResponseFromRequest(req, r.Code, r.Reason, nil)
	for _, h := range r.Headers {
		res.AppendHeader(h)
	}
	res.AppendHeader(sip.NewHeader("Server", "troika"))
	return res
}
