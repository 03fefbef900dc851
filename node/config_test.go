package node

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// loadExample loads the example configuration file example with its
// secret files (/etc/troika/cluster.key, /etc/troika/admin.token,
// /etc/troika/read.token) and its cluster certificates (/etc/troika/tls/:
// a CA and sip1 to sip3, made once per dir) written to dir instead.
func loadExample(t *testing.T, dir, example string) (Config, error) {
	t.Helper()
	key := filepath.Join(dir, "cluster.key")
	tok := filepath.Join(dir, "admin.token")
	read := filepath.Join(dir, "read.token")
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(dir, "tls")
	if _, err := os.Stat(tlsDir); err != nil {
		ca := newTestCA(t, tlsDir)
		for _, id := range []string{"sip1", "sip2", "sip3"} {
			writeTestCerts(t, ca, tlsDir, id)
		}
	}
	text := strings.NewReplacer("/etc/troika/cluster.key", key, "/etc/troika/admin.token", tok, "/etc/troika/read.token", read,
		"/etc/troika/tls/", tlsDir+"/").Replace(string(data))
	path := filepath.Join(dir, filepath.Base(example))
	for name, content := range map[string]string{key: "c2VjcmV0LWNsdXN0ZXIta2V5LTAxMjM0NTY3ODkK\n", tok: "0123456789abcdef0123\n",
		read: "read-0123456789abcdef\n", path: text} {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return LoadConfig(path)
}

func TestExampleConfigLoads(t *testing.T) {
	c, err := loadExample(t, t.TempDir(), "../deploy/troika.example.toml")
	if err != nil {
		t.Fatalf("the documented example does not load: %v", err)
	}
	peers, _ := c.ClusterPeers()
	if c.NodeID != "sip1" || len(peers) != 3 || c.Registrar.NonceTTL.Minutes() != 5 {
		t.Fatalf("loaded %+v", c)
	}
	want := []admin.Token{{Name: "ops", Scope: admin.ScopeAdmin, Secret: "0123456789abcdef0123"}, {Name: "noc", Scope: admin.ScopeRead, Secret: "read-0123456789abcdef"}}
	if got := c.Admin.APITokens(); !slices.Equal(got, want) || !c.Admin.TLS() {
		t.Fatalf("admin tokens %v, TLS %v", got, c.Admin.TLS())
	}
	if c.Billing != (BillingConfig{XDRRetentionCount: 1_000_000, IdempotencyWindow: 7 * 24 * time.Hour, MaxCallDuration: 4 * time.Hour,
		ReserveChunk: 5 * time.Minute}) {
		t.Fatalf("billing %+v", c.Billing)
	}
	if tc, err := c.ClusterTLS(time.Now()); err != nil || !tc.VerifyIncoming || !tc.VerifyOutgoing {
		t.Fatalf("the example's [cluster.tls]: %+v, %v", tc, err)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	base := soloConfig
	cases := map[string]string{
		"typo":           base + "[registrar]\nrelam = \"x\"\n",
		"bad address":    strings.Replace(base, `["127.0.0.1"]`, `["localhost"]`, 1),
		"short token":    strings.Replace(base, `token = "0123456789abcdef0123"`, `token = "x"`, 1),
		"peers w/o self": strings.Replace(base, "bootstrap = true", `peers = ["b=127.0.0.1:7001"]`, 1),
		"min > max":      base + "[registrar]\nmin_expires = 100\nmax_expires = 50\n",
		"bad duration":   base + "[registrar]\nnonce_ttl = \"5 minutes\"\n",
		"xdr retention":  base + "[billing]\nxdr_retention_count = -5\n",
		"short window":   base + "[billing]\nidempotency_window = \"10m\"\n",
		"days":           base + "[billing]\nidempotency_window = \"7d\"\n",
		"long calls":     base + "[billing]\nmax_call_duration = \"72h\"\n",
		"billing typo":   base + "[billing]\nmax_call_duraton = \"1h\"\n",
		"guesses":        base + "[registrar]\naccount_guesses_per_minute = -5\n",
		"tiny chunk":     base + "[billing]\nreserve_chunk = \"5s\"\n",
		"chunk > max":    base + "[billing]\nmax_call_duration = \"1h\"\nreserve_chunk = \"2h\"\n",
	}
	want := map[string]string{
		"typo": "registrar.relam", "bad address": "sip.addresses", "short token": "admin.token",
		"peers w/o self": "cluster.peers", "min > max": "registrar", "bad duration": "nonce_ttl",
		"xdr retention": "billing.xdr_retention_count", "short window": "billing.idempotency_window",
		"days": "idempotency_window", "long calls": "billing.max_call_duration", "billing typo": "billing.max_call_duraton",
		"guesses":    "registrar.account_guesses_per_minute",
		"tiny chunk": "billing.reserve_chunk", "chunk > max": "billing.reserve_chunk",
	}
	for name, text := range cases {
		_, err := loadText(t, text)
		if err == nil || !strings.Contains(err.Error(), want[name]) {
			t.Errorf("%s: error %v, want it to name %s", name, err, want[name])
		}
	}
	c, err := loadText(t, base)
	if err != nil {
		t.Fatalf("base config: %v", err)
	}
	if c.Billing.XDRRetentionCount != DefaultXDRRetention || c.Billing.IdempotencyWindow != DefaultIdempotencyWindow ||
		c.Billing.MaxCallDuration != DefaultMaxCallDuration || c.Billing.ReserveChunk != DefaultReserveChunk {
		t.Fatalf("billing defaults %+v", c.Billing)
	}
	// Phones that predate RFC 8760 fail on any challenge they do not
	// know: MD5 alone unless configured.
	if !slices.Equal(c.Registrar.Algorithms, []string{"MD5"}) {
		t.Fatalf("default digest algorithms %q, want MD5 alone", c.Registrar.Algorithms)
	}
}

// The leader's periodic trim keeps the configured number of xDRs and the
// keys of the configured window, and works on the real state machine.
func TestTrimCommand(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	cmd := trimCommand(BillingConfig{XDRRetentionCount: 2, IdempotencyWindow: time.Hour}, now)
	if cmd.MaxXDRs != 2 || cmd.KeepKeysAfter != now.Add(-time.Hour).UnixMilli() {
		t.Fatalf("trim %+v", cmd)
	}
	if d := trimCommand(BillingConfig{}, now); d.MaxXDRs != DefaultXDRRetention || d.KeepKeysAfter != now.Add(-DefaultIdempotencyWindow).UnixMilli() {
		t.Fatalf("trim with zero config %+v", d)
	}

	st := fsm.New()
	apply := func(c fsm.Command) fsm.Result {
		t.Helper()
		data, err := fsm.Encode(c) // as the leader proposes it
		if err != nil {
			t.Fatal(err)
		}
		res, err := st.Apply(data)
		if err != nil || res.Err != nil {
			t.Fatalf("%T: %v %v", c, err, res.Err)
		}
		return res
	}
	apply(&fsm.PutTariff{Tariff: fsm.Tariff{ID: "t", Currency: "USD", Rates: []fsm.Rate{{PerMinute: 60_000, FirstInterval: 1, NextInterval: 1}}}})
	apply(&fsm.CreateAccount{Account: fsm.Account{ID: "a", Credentials: testkit.Creds("a", "p"), Billing: fsm.Prepaid, Balance: 1_000_000, TariffOut: "t"}})
	old := now.Add(-2 * time.Hour).UnixMilli()
	apply(&fsm.Topup{Account: "a", Amount: 1, Key: "old", Now: old})
	apply(&fsm.Topup{Account: "a", Amount: 1, Key: "new", Now: now.UnixMilli()})
	for i := range 5 {
		id := fmt.Sprint("c", i)
		apply(&fsm.StartCall{ID: id, Direction: fsm.DirOutgoing, Account: "a", CLD: "1", MaxSeconds: 60, Now: old,
			Charges: []fsm.ChargeRequest{{Account: "a", Role: fsm.RoleOutgoing, Number: "1"}}})
		apply(&fsm.EndCall{ID: id, DisconnectAt: old + 1000, Cause: 487})
	}
	if res := apply(cmd); res.Purged != 3 || st.Counts().XDRs != 2 {
		t.Fatalf("trim dropped %d, kept %d", res.Purged, st.Counts().XDRs)
	}
	if xs := st.XDRs(fsm.XDRFilter{}); xs[0].CallID != "c3" {
		t.Fatalf("kept %+v, want the newest", xs)
	}
	// The old key is forgotten (a retry applies again), the new one is not.
	bal := func() int64 { a, _ := st.Account("a"); return a.Balance }
	b := bal()
	apply(&fsm.Topup{Account: "a", Amount: 1, Key: "new", Now: now.UnixMilli()})
	apply(&fsm.Topup{Account: "a", Amount: 1, Key: "old", Now: now.UnixMilli()})
	if bal() != b+1 {
		t.Fatalf("balance %d after retrying a kept and a trimmed key, want %d", bal(), b+1)
	}
}

func TestThreeNodeExampleConfigsLoad(t *testing.T) {
	dir := t.TempDir()
	paths, _ := filepath.Glob("../deploy/three-nodes/*.toml")
	if len(paths) != 3 {
		t.Fatalf("%d example node configs, want 3", len(paths))
	}
	for _, p := range paths {
		c, err := loadExample(t, dir, p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if peers, _ := c.ClusterPeers(); len(peers) != 3 {
			t.Fatalf("%s: %d peers", p, len(peers))
		}
		if tc, err := c.ClusterTLS(time.Now()); err != nil || tc == nil {
			t.Fatalf("%s: [cluster.tls]: %v", p, err)
		}
	}
}

// The [admin] section: tokens with scopes (admin.token keeps meaning an
// admin token), TLS files given together; errors name the key.
func TestAdminConfig(t *testing.T) {
	dir := t.TempDir()
	nocFile := filepath.Join(dir, "noc.token")
	os.WriteFile(nocFile, []byte("noc-token-0123456789\n"), 0o600)
	base := soloConfigNoAdmin
	load := func(admin string) (Config, error) {
		return loadText(t, base+"[admin]\n"+admin)
	}
	c, err := load(`tokens = [{name = "noc", scope = "read", token_file = "` + nocFile + `"}, {name = "ops", scope = "admin", token = "ops-token-0123456789"}]`)
	if err != nil {
		t.Fatal(err)
	}
	got := c.Admin.APITokens()
	if len(got) != 2 || got[0] != (admin.Token{Name: "noc", Scope: admin.ScopeRead, Secret: "noc-token-0123456789"}) ||
		got[1] != (admin.Token{Name: "ops", Scope: admin.ScopeAdmin, Secret: "ops-token-0123456789"}) {
		t.Fatalf("tokens %+v", got)
	}
	c, err = load(`token = "legacy-token-0123456789"`)
	if err != nil || len(c.Admin.APITokens()) != 1 || c.Admin.APITokens()[0].Scope != admin.ScopeAdmin {
		t.Fatalf("admin.token alone: %+v %v", c.Admin, err)
	}
	if _, err := load(`token = "legacy-token-0123456789"
tls_cert_file = "/etc/troika/admin.crt"
tls_key_file = "/etc/troika/admin.key"
tls_client_ca_file = "/etc/troika/admin-clients.crt"`); err != nil {
		t.Fatalf("TLS files (checked when the node starts): %v", err)
	}
	for admin, want := range map[string]string{
		``: "admin.token (or admin.token_file, or admin.tokens): required",
		`tokens = [{name = "noc", scope = "read", token = "noc-token-0123456789"}]`:                                                                  `no token of scope "admin"`,
		`tokens = [{name = "ops", scope = "write", token = "ops-token-0123456789"}]`:                                                                 `admin.tokens[0] (ops).scope: "write"`,
		`tokens = [{scope = "admin", token = "ops-token-0123456789"}]`:                                                                               "admin.tokens[0].name: required",
		`tokens = [{name = "ops", scope = "admin", token = "short"}]`:                                                                                "at least 16 characters",
		`tokens = [{name = "ops", scope = "admin"}]`:                                                                                                 "admin.tokens[0] (ops): token_file (or token) required",
		`tokens = [{name = "ops", scope = "admin", token_file = "/nonexistent/ops.token"}]`:                                                          "admin.tokens[0] (ops).token_file",
		`tokens = [{name = "ops", scope = "admin", token = "ops-token-0123456789", token_file = "` + nocFile + `"}]`:                                 "token or token_file, not both",
		`tokens = [{name = "ops", scope = "admin", token = "ops-token-0123456789"}, {name = "ops", scope = "read", token = "noc-token-0123456789"}]`: `"ops" is used by two tokens`,
		`token = "ops-token-0123456789"
tokens = [{name = "noc", scope = "read", token = "ops-token-0123456789"}]`: "the same token as admin.token",
		`token = "ops-token-0123456789"
tokens = [{name = "token", scope = "read", token = "noc-token-0123456789"}]`: `"token" names admin.token`,
		`tokens = [{name = "ops", scope = "admin", token = "ops-token-0123456789", secret = "x"}]`: "admin.tokens.secret",
		`token = "ops-token-0123456789"
tls_cert_file = "/etc/troika/admin.crt"`: "admin.tls_cert_file and admin.tls_key_file",
		`token = "ops-token-0123456789"
tls_client_ca_file = "/etc/troika/ca.crt"`: "admin.tls_client_ca_file: needs admin.tls_cert_file",
	} {
		if _, err := load(admin); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", admin, err, want)
		}
	}
}

// The three-node examples load, each with its admin API on a management
// address over TLS, with a read and an admin token.
func TestThreeNodeExamplesLoad(t *testing.T) {
	for i := 1; i <= 3; i++ {
		dir := t.TempDir()
		c, err := loadExample(t, dir, fmt.Sprintf("../deploy/three-nodes/sip%d.toml", i))
		if err != nil {
			t.Fatalf("sip%d.toml: %v", i, err)
		}
		a := c.Admin
		if !a.TLS() || a.TLSKeyFile == "" || !strings.HasPrefix(a.Listen, "198.51.100.") || strings.HasPrefix(c.SIP.Addresses[0], "198.51.100.") {
			t.Errorf("sip%d.toml: admin %+v, SIP %v: want TLS on a management address apart from SIP", i, a, c.SIP.Addresses)
		}
		scopes := map[admin.Scope]bool{}
		for _, tok := range a.APITokens() {
			scopes[tok.Scope] = true
		}
		if !scopes[admin.ScopeRead] || !scopes[admin.ScopeAdmin] {
			t.Errorf("sip%d.toml: tokens %v: want a read and an admin token", i, scopes)
		}
	}
}
