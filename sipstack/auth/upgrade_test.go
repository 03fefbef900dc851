package auth

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/sipmsg"
)

// oneAccount is the replicated state with account 1001 alone.
type oneAccount struct{}

func (oneAccount) NonceSecret() []byte { return testSecret }
func (oneAccount) Realm() string       { return "troika" }
func (oneAccount) Account(id string) (fsm.Account, bool) {
	if id != "1001" {
		return fsm.Account{}, false
	}
	return fsm.Account{ID: "1001", Credentials: fsm.HashCredentials("1001", "troika", "correct horse 1001")}, true
}
func (oneAccount) ConnectionForUser(string) (fsm.Connection, fsm.Vendor, bool) {
	return fsm.Connection{}, fsm.Vendor{}, false
}
func (oneAccount) ConnectionForSource(netip.Addr) (fsm.Connection, bool) {
	return fsm.Connection{}, false
}
func (oneAccount) Vendor(string) (fsm.Vendor, bool) { return fsm.Vendor{}, false }

// oldNonce is a nonce as builds before bound nonces issue them.
func oldNonce(now time.Time) string { return mintUnboundNonce(testSecret, "troika", now) }

// upgradeAuthenticator is an MD5 authenticator for oneAccount with nonces
// valid a minute, accepting unbound nonces as unboundNonces says (never
// when nil).
func upgradeAuthenticator(t *testing.T, unboundNonces func() bool) *Authenticator {
	t.Helper()
	a, err := New(Config{Realm: "troika", Algorithms: []string{MD5}, NonceTTL: time.Minute, UnboundNonces: unboundNonces}, oneAccount{})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// registerWith is a REGISTER of 1001 from src answering nonce with nc.
func registerWith(t *testing.T, src, nonce string, nc int) *sip.Request {
	t.Helper()
	uri := sip.Uri{Scheme: "sip", Host: "192.0.2.100"}
	req := sip.NewRequest(sip.REGISTER, uri)
	req.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP "+src+";branch=z9hG4bK-"+nonce[:8]))
	req.AppendHeader(sip.NewHeader("From", "<sip:1001@192.0.2.100>;tag=f1"))
	req.AppendHeader(sip.NewHeader("To", "<sip:1001@192.0.2.100>"))
	req.AppendHeader(sip.NewHeader("Call-ID", "reg-1@phone"))
	req.AppendHeader(sip.NewHeader("CSeq", "2 REGISTER"))
	cred, err := digest.Digest(&digest.Challenge{Realm: "troika", Nonce: nonce, Algorithm: "MD5", QOP: []string{"auth"}},
		digest.Options{Method: "REGISTER", URI: uri.String(), Username: "1001", Password: "correct horse 1001", Count: nc})
	if err != nil {
		t.Fatal(err)
	}
	req.AppendHeader(sip.NewHeader("Authorization", cred.String()))
	req.SetSource(src)
	return req
}

// During a rolling upgrade from a build whose nonces are bound to nothing,
// a phone challenged by an old node may answer the new node that took its
// address over: its nonce is accepted while an old build may run, and
// afterwards if issued before then; never when no old build was seen.
func TestUnboundNoncesDuringUpgrade(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	oldRuns := true
	a := upgradeAuthenticator(t, func() bool { return oldRuns })
	strict := upgradeAuthenticator(t, nil)
	before := oldNonce(t0)
	steps := []struct {
		name  string
		a     *Authenticator
		nonce string
		nc    int
		at    time.Time
		old   bool
		want  int // 0: accepted
	}{
		{"no old build ever: refused", strict, before, 1, t0.Add(time.Second), false, sip.StatusUnauthorized},
		{"an old build runs: accepted", a, before, 1, t0.Add(time.Second), true, 0},
		{"upgrade done, issued before: accepted", a, before, 2, t0.Add(2 * time.Second), false, 0},
		{"issued after the upgrade: refused", a, oldNonce(t0.Add(1500 * time.Millisecond)), 1, t0.Add(3 * time.Second), false, sip.StatusUnauthorized},
		{"past its TTL: challenged again", a, before, 3, t0.Add(2 * time.Minute), false, sip.StatusUnauthorized},
		{"a forged one while an old build runs: refused", a, before[:20] + "AAAAAAAAAAAA", 1, t0.Add(time.Second), true, sip.StatusUnauthorized},
	}
	for _, s := range steps {
		oldRuns = s.old
		_, r := s.a.Authenticate("udp", registerWith(t, "192.0.2.7:5060", s.nonce, s.nc), WWW, "1001", s.at)
		got := 0
		if r != nil {
			got = r.Code
		}
		if got != s.want {
			t.Errorf("%s: got %d, want %d", s.name, got, s.want)
		}
	}
}

// While an old build may run, a challenge carries a nonce that build can
// verify (bound to nothing): a phone challenged by a new node and answering
// an old one is not refused. Once every voter binds nonces, challenges are
// bound again.
func TestChallengesDuringUpgradeAreVerifiableByTheOldBuild(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	oldRuns := true
	a := upgradeAuthenticator(t, func() bool { return oldRuns })
	nonceOf := func(r *sipmsg.Reply) string {
		t.Helper()
		if r == nil || r.Code != sip.StatusUnauthorized || len(r.Headers) == 0 {
			t.Fatalf("want a 401 challenge, got %+v", r)
		}
		ch, err := digest.ParseChallenge(r.Headers[0].Value())
		if err != nil {
			t.Fatal(err)
		}
		return ch.Nonce
	}
	unsigned := func(src string) *sip.Request {
		req := registerWith(t, src, oldNonce(t0), 1)
		req.RemoveHeader("Authorization")
		return req
	}

	_, r := a.Authenticate("udp", unsigned("192.0.2.7:5060"), WWW, "1001", t0)
	during := nonceOf(r)
	if st, _, _ := checkUnboundNonce(testSecret, "troika", during, t0, time.Minute); st != nonceValid {
		t.Fatalf("a challenge during the upgrade: the old build finds its nonce %v, want valid", st)
	}
	if _, r := a.Authenticate("udp", registerWith(t, "192.0.2.7:5060", during, 1), WWW, "1001", t0.Add(time.Second)); r != nil {
		t.Fatalf("answering a challenge of the upgrade: got %d, want accepted", r.Code)
	}

	oldRuns = false
	_, r = a.Authenticate("udp", unsigned("192.0.2.7:5060"), WWW, "1001", t0.Add(2*time.Second))
	after := nonceOf(r)
	if st, _, _ := checkUnboundNonce(testSecret, "troika", after, t0.Add(2*time.Second), time.Minute); st != nonceInvalid {
		t.Fatalf("a challenge after the upgrade is %v as an unbound nonce, want bound (invalid unbound)", st)
	}
	if _, r := a.Authenticate("udp", registerWith(t, "192.0.2.8:5060", after, 1), WWW, "1001", t0.Add(3*time.Second)); r == nil {
		t.Fatal("a bound nonce answered from another source was accepted")
	}
	if _, r := a.Authenticate("udp", registerWith(t, "192.0.2.7:5060", after, 1), WWW, "1001", t0.Add(3*time.Second)); r != nil {
		t.Fatalf("a bound nonce answered from its source: got %d, want accepted", r.Code)
	}
}

// An unbound nonce is the same for every phone challenged in its
// millisecond: phones answering one are each accepted, and a captured
// answer replayed with another Call-ID is still refused.
func TestUnboundNonceSharedByPhones(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	a := upgradeAuthenticator(t, func() bool { return true })
	shared := oldNonce(t0)
	for i, src := range []string{"192.0.2.7:5060", "192.0.2.8:5060", "192.0.2.7:5062"} {
		req := registerWith(t, src, shared, 1)
		*req.CallID() = sip.CallIDHeader(fmt.Sprintf("phone-%d@%s", i, src))
		if _, r := a.Authenticate("udp", req, WWW, "1001", t0.Add(time.Second)); r != nil {
			t.Fatalf("phone %d answering the shared nonce with nc 1: got %d, want accepted", i, r.Code)
		}
	}
	captured := registerWith(t, "192.0.2.9:5060", shared, 1)
	if _, r := a.Authenticate("udp", captured, WWW, "1001", t0.Add(time.Second)); r != nil {
		t.Fatalf("a fourth phone: got %d, want accepted", r.Code)
	}
	*captured.CallID() = "replayed@attacker"
	if _, r := a.Authenticate("udp", captured, WWW, "1001", t0.Add(2*time.Second)); r == nil || r.Result != sipmsg.ResultReplayed {
		t.Fatalf("a captured answer replayed with another Call-ID: got %+v, want refused as a replay", r)
	}
}
