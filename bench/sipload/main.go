// Command sipload is the benchmarks' registration load: phones that
// register with digest authentication over UDP and retry like real
// phones, for what SIPp's sweep does not measure (bench/run.sh):
//
//   - rate: new registrations at a steady rate, in phases ("8s@4000,
//     8s@8000"): response times (p50, p99, max) of the REGISTERs answered
//     200 and of the challenges, and what the server shed (503) or never
//     answered, per phase;
//   - storm: N phones all wanting a binding at once (their first REGISTER
//     spread over a few seconds), each retrying as RFC 3261 and RFC 5626
//     say: retransmissions at T1 doubling to T2 until Timer F, then a
//     back-off (Retry-After when the server gave one); the time until
//     every phone holds a binding, and how many gave up.
//
// Phones are users u000000.. (-user, -pass: printf formats of the phone's
// number), each with its own Call-ID, sending from -sockets UDP sockets
// on -local. Each prints one line of key=value per phase (rate) or one
// summary line (storm) on stdout; progress goes to stderr.
package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// RFC 3261 timers for a non-INVITE transaction over UDP.
const (
	t1     = 500 * time.Millisecond
	t2     = 4 * time.Second
	timerF = 64 * t1
)

type config struct {
	target   *net.UDPAddr
	local    string
	sockets  int
	user     string
	pass     string
	first    int
	users    int // phone numbers wrap around after this many (0: never)
	port     int // first local port (0: any)
	expires  int
	backBase time.Duration // RFC 5626 §4.5 base-time
	backMax  time.Duration // and max-time
}

func main() {
	var (
		cfg      config
		target   = flag.String("target", "127.0.0.1:5060", "the registrar's address")
		mode     = flag.String("mode", "rate", "rate or storm")
		phases   = flag.String("phases", "8s@1000", "rate: phases DURATION@RATE, comma-separated")
		phones   = flag.Int("phones", 100000, "storm: phones")
		spread   = flag.Duration("spread", 10*time.Second, "storm: the phones' first REGISTERs are spread over this time")
		deadline = flag.Duration("deadline", 15*time.Minute, "storm: a phone without a binding by then has given up")
		drain    = flag.Duration("drain", timerF+time.Second, "rate: how long to wait for answers after the last phase")
	)
	flag.StringVar(&cfg.local, "local", "127.0.0.1", "local IP the phones send from")
	flag.IntVar(&cfg.sockets, "sockets", 16, "UDP sockets the phones share")
	flag.StringVar(&cfg.user, "user", "u%06d", "user name of phone i (printf format)")
	flag.StringVar(&cfg.pass, "pass", "Bench.pass.%06d", "password of phone i (printf format)")
	flag.IntVar(&cfg.first, "first", 0, "number of the first phone")
	flag.IntVar(&cfg.users, "users", 0, "rate: user numbers wrap around after this many accounts (0: never), each phone keeping its own Call-ID")
	flag.IntVar(&cfg.port, "port", 0, "first local UDP port of the sockets (0: any); fixed ports keep a phone's Contact the same across runs")
	flag.IntVar(&cfg.expires, "expires", 3600, "Expires of the registrations")
	flag.DurationVar(&cfg.backBase, "backoff-base", 30*time.Second, "storm: RFC 5626 base-time of the back-off after a failure")
	flag.DurationVar(&cfg.backMax, "backoff-max", 1800*time.Second, "storm: RFC 5626 max-time of the back-off")
	flag.Parse()
	var err error
	if cfg.target, err = net.ResolveUDPAddr("udp", *target); err != nil {
		fail(err)
	}
	l, err := newLoad(cfg)
	if err != nil {
		fail(err)
	}
	switch *mode {
	case "rate":
		ps, err := parsePhases(*phases)
		if err != nil {
			fail(err)
		}
		l.runRate(ps, *drain)
	case "storm":
		l.runStorm(*phones, *spread, *deadline)
	default:
		fail(fmt.Errorf("unknown mode %q", *mode))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sipload:", err)
	os.Exit(2)
}

type phase struct {
	d    time.Duration
	rate int
}

func parsePhases(s string) ([]phase, error) {
	var out []phase
	for p := range strings.SplitSeq(s, ",") {
		ds, rs, ok := strings.Cut(strings.TrimSpace(p), "@")
		d, err := time.ParseDuration(ds)
		r, err2 := strconv.Atoi(rs)
		if !ok || err != nil || err2 != nil || d <= 0 || r <= 0 {
			return nil, fmt.Errorf("phase %q: want DURATION@RATE, e.g. 8s@4000", p)
		}
		out = append(out, phase{d, r})
	}
	return out, nil
}

// load is the phones and their sockets.
type load struct {
	cfg    config
	run    string // tells this run's Call-IDs from another's
	socks  []*net.UDPConn
	mu     sync.Mutex
	phones []*phone // by number - cfg.first
	stats  *stats   // of the current phase
	start  time.Time

	sent, retrans, stale atomic.Int64
}

func newLoad(cfg config) (*load, error) {
	l := &load{cfg: cfg, run: strconv.FormatUint(rand.Uint64()&0xffffffffff, 36)}
	for i := range cfg.sockets {
		port := 0
		if cfg.port > 0 {
			port = cfg.port + i
		}
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(cfg.local), Port: port})
		if err != nil {
			return nil, err
		}
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
		l.socks = append(l.socks, c)
		go l.read(c)
	}
	return l, nil
}

// phone is one registering phone.
type phone struct {
	l      *load
	n      int
	sock   *net.UDPConn
	user   string
	ha1    string
	callID string

	mu        sync.Mutex
	cseq      int
	branch    int
	msg       []byte    // the request of the transaction in progress
	txStart   time.Time // its first sending
	regStart  time.Time // the first REGISTER of this attempt
	interval  time.Duration
	gen       int // of the transaction in progress; timers of older ones do nothing
	authed    bool
	done      bool // holds a binding
	failures  int  // consecutive failed attempts
	attempts  int
	stats     *stats // the phase the registration started in
	onSuccess func(*phone)
	onFailure func(p *phone, retryAfter time.Duration) // nil: the phone does not retry
}

func (l *load) newPhone(n int) *phone {
	acct := n
	if l.cfg.users > 0 {
		acct = l.cfg.first + (n-l.cfg.first)%l.cfg.users
	}
	user := fmt.Sprintf(l.cfg.user, acct)
	pass := fmt.Sprintf(l.cfg.pass, acct)
	return &phone{l: l, n: n, sock: l.socks[acct%len(l.socks)], user: user,
		ha1: md5hex(user + ":troika:" + pass), callID: strconv.Itoa(n) + "-" + l.run + "@sipload"}
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// begin starts a registration attempt: a REGISTER without credentials.
func (p *phone) begin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts++
	p.regStart = time.Now()
	p.authed = false
	p.send(nil)
}

// send starts a new transaction with the REGISTER, answering chal when
// not nil. p.mu is held.
func (p *phone) send(chal *challenge) {
	p.cseq++
	p.branch++
	p.gen++
	local := p.sock.LocalAddr().(*net.UDPAddr)
	host := p.l.cfg.target.String()
	b := make([]byte, 0, 640)
	b = fmt.Appendf(b, "REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%s-%d-%d;rport\r\n", host, local, p.l.run, p.n, p.branch)
	b = fmt.Appendf(b, "From: <sip:%s@%s>;tag=%d\r\nTo: <sip:%s@%s>\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\n",
		p.user, host, p.n, p.user, host, p.callID, p.cseq)
	b = fmt.Appendf(b, "Contact: <sip:%s@%s>\r\nMax-Forwards: 70\r\nExpires: %d\r\nUser-Agent: sipload\r\n", p.user, local, p.l.cfg.expires)
	if chal != nil {
		uri := "sip:" + host
		cnonce := strconv.FormatUint(rand.Uint64(), 16)
		nc := "00000001"
		ha2 := md5hex("REGISTER:" + uri)
		resp := md5hex(p.ha1 + ":" + chal.nonce + ":" + nc + ":" + cnonce + ":auth:" + ha2)
		b = fmt.Appendf(b, "Authorization: Digest username=\"%s\",realm=\"%s\",nonce=\"%s\",uri=\"%s\",response=\"%s\",algorithm=MD5,cnonce=\"%s\",qop=auth,nc=%s\r\n",
			p.user, chal.realm, chal.nonce, uri, resp, cnonce, nc)
		p.authed = true
	}
	b = append(b, "Content-Length: 0\r\n\r\n"...)
	p.msg = b
	p.txStart = time.Now()
	p.interval = t1
	p.write()
	gen := p.gen
	time.AfterFunc(t1, func() { p.retransmit(gen) })
}

func (p *phone) write() {
	if _, err := p.sock.WriteToUDP(p.msg, p.l.cfg.target); err == nil {
		p.l.sent.Add(1)
	}
}

// retransmit is Timer E (and F) of transaction gen.
func (p *phone) retransmit(gen int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if gen != p.gen || p.done {
		return
	}
	if time.Since(p.txStart) >= timerF {
		p.gen++ // the transaction timed out
		p.stats.timeouts.Add(1)
		p.failed(0)
		return
	}
	p.write()
	p.l.retrans.Add(1)
	p.stats.retrans.Add(1)
	p.interval = min(2*p.interval, t2)
	wait := min(p.interval, timerF-time.Since(p.txStart))
	time.AfterFunc(max(wait, time.Millisecond), func() { p.retransmit(gen) })
}

// failed ends an attempt. p.mu is held.
func (p *phone) failed(retryAfter time.Duration) {
	p.failures++
	if p.onFailure != nil {
		p.onFailure(p, retryAfter)
	}
}

// answer takes a response to the phone's transaction in progress.
func (p *phone) answer(r *response, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.cseq != p.cseq || p.done || p.gen == 0 {
		p.l.stale.Add(1) // a retransmitted answer, or one to an older transaction
		return
	}
	lat := at.Sub(p.txStart)
	st := p.stats
	switch {
	case r.code < 200:
		return
	case r.code == 401 && !p.authed && r.chal != nil:
		st.challenge.add(lat)
		p.send(r.chal)
	case r.code == 200 && p.authed:
		p.gen++
		p.done = true
		p.failures = 0
		st.ok.Add(1)
		st.okLat.add(lat)
		st.regLat.add(at.Sub(p.regStart))
		if p.onSuccess != nil {
			p.onSuccess(p)
		}
	default:
		p.gen++
		switch {
		case r.code == 503:
			st.unavailable.Add(1)
			st.shedLat.add(lat)
		case r.code == 401:
			st.rechallenged.Add(1)
		default:
			st.otherCodes.Add(1)
			st.noteCode(r.code)
		}
		p.failed(r.retryAfter)
	}
}

// read takes the responses arriving on c.
func (l *load) read(c *net.UDPConn) {
	buf := make([]byte, 65536)
	for {
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		at := time.Now()
		r, ok := parseResponse(buf[:n])
		if !ok {
			continue
		}
		num, rest, ok := strings.Cut(r.callID, "-")
		if !ok || !strings.HasPrefix(rest, l.run+"@") {
			continue
		}
		i, err := strconv.Atoi(num)
		if err != nil {
			continue
		}
		l.mu.Lock()
		var p *phone
		if j := i - l.cfg.first; j >= 0 && j < len(l.phones) {
			p = l.phones[j]
		}
		l.mu.Unlock()
		if p != nil {
			p.answer(r, at)
		}
	}
}

type challenge struct{ realm, nonce string }

type response struct {
	code       int
	callID     string
	cseq       int
	chal       *challenge
	retryAfter time.Duration
}

// parseResponse reads what the phones need of a response.
func parseResponse(b []byte) (*response, bool) {
	line, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok || !bytes.HasPrefix(line, []byte("SIP/2.0 ")) || len(line) < 11 {
		return nil, false
	}
	code, err := strconv.Atoi(string(line[8:11]))
	if err != nil {
		return nil, false
	}
	r := &response{code: code}
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v := string(bytes.TrimSpace(value))
		switch strings.ToLower(string(bytes.TrimSpace(name))) {
		case "call-id", "i":
			r.callID = v
		case "cseq":
			n, _, _ := strings.Cut(v, " ")
			r.cseq, _ = strconv.Atoi(n)
		case "retry-after":
			n, _, _ := strings.Cut(v, ";")
			if s, err := strconv.Atoi(strings.TrimSpace(n)); err == nil {
				r.retryAfter = time.Duration(s) * time.Second
			}
		case "www-authenticate":
			if c := parseChallenge(v); c != nil && r.chal == nil {
				r.chal = c
			}
		}
	}
	return r, r.callID != ""
}

// parseChallenge reads an MD5 qop=auth digest challenge (nil for another).
func parseChallenge(v string) *challenge {
	rest, ok := strings.CutPrefix(v, "Digest ")
	if !ok {
		return nil
	}
	c := &challenge{}
	alg := "MD5"
	for p := range strings.SplitSeq(rest, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		val = strings.Trim(val, `"`)
		switch strings.ToLower(k) {
		case "realm":
			c.realm = val
		case "nonce":
			c.nonce = val
		case "algorithm":
			alg = strings.ToUpper(val)
		}
	}
	if alg != "MD5" || c.nonce == "" {
		return nil
	}
	return c
}

// stats are the counts and times of one phase.
type stats struct {
	started                            atomic.Int64
	ok, unavailable, timeouts, retrans atomic.Int64
	rechallenged, otherCodes           atomic.Int64
	okLat, challenge, regLat, shedLat  latencies
	codesMu                            sync.Mutex
	codes                              map[int]int
}

func (s *stats) noteCode(c int) {
	s.codesMu.Lock()
	if s.codes == nil {
		s.codes = map[int]int{}
	}
	s.codes[c]++
	s.codesMu.Unlock()
}

type latencies struct {
	mu sync.Mutex
	us []int32
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.us = append(l.us, int32(min(d.Microseconds(), math.MaxInt32)))
	l.mu.Unlock()
}

// pct returns the p-th percentile in ms ("-" when empty).
func (l *latencies) pct(p float64) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.us) == 0 {
		return "-"
	}
	s := slices.Clone(l.us)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return strconv.FormatFloat(float64(s[max(i, 0)])/1000, 'f', 1, 64)
}
