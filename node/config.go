package node

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/fsm"
)

// Config is a node's configuration file (TOML). deploy/troika.example.toml
// documents every key.
type Config struct {
	NodeID   string `toml:"node_id"`
	DataDir  string `toml:"data_dir"`
	LogLevel string `toml:"log_level"`
	// LogFormat is "json" (the default: one object per line, for a log
	// collector) or "text" (key=value, for a person reading it).
	LogFormat string          `toml:"log_format"`
	Cluster   ClusterConfig   `toml:"cluster"`
	SIP       SIPConfig       `toml:"sip"`
	Registrar RegistrarConfig `toml:"registrar"`
	Admin     AdminConfig     `toml:"admin"`
	Billing   BillingConfig   `toml:"billing"`
	Runtime   RuntimeConfig   `toml:"runtime"`
	// LogLevelVar, when set, is the level of the node's logger (NewLogger):
	// the admin API's /v1/log-level reads and sets it.
	LogLevelVar *slog.LevelVar `toml:"-"`
	// VIP, when the [vip] section is present, makes the node manage the
	// cluster's virtual IPs and IP aliases (vip.go).
	VIP *VIPConfig `toml:"vip"`
}

// ClusterConfig is the [cluster] section.
type ClusterConfig struct {
	Bind      string   `toml:"bind"`
	Advertise string   `toml:"advertise"`
	Key       string   `toml:"key"`
	KeyFile   string   `toml:"key_file"`
	Peers     []string `toml:"peers"`
	Bootstrap bool     `toml:"bootstrap"`
	Join      []string `toml:"join"`
	// AwaitAdd: this node joins a running cluster when an operator adds
	// it (`troika operator raft add-voter`), as the replacement of a dead
	// server does.
	AwaitAdd bool `toml:"await_add"`

	// Raft timing (timing.go has the defaults, tuned for failover on a LAN).
	HeartbeatTimeout   time.Duration `toml:"heartbeat_timeout"`
	ElectionTimeout    time.Duration `toml:"election_timeout"`
	LeaderLeaseTimeout time.Duration `toml:"leader_lease_timeout"`

	// Gossip (memberlist): failure detection and node metadata.
	GossipBind      string   `toml:"gossip_bind"`      // default: bind's host, bind's port + 1
	GossipAdvertise string   `toml:"gossip_advertise"` // default: advertise's (or bind's) host, the gossip port
	GossipJoin      []string `toml:"gossip_join"`      // default: every peer's (or join) host, port + 1

	// TLS, the [cluster.tls] section, encrypts the cluster port
	// (clustertls.go).
	TLS *ClusterTLSConfig `toml:"tls"`
}

// SIPConfig is the [sip] section.
type SIPConfig struct {
	Addresses    []string `toml:"addresses"`
	UDPPorts     []int    `toml:"udp_ports"`
	TCPPorts     []int    `toml:"tcp_ports"`
	TLSPorts     []int    `toml:"tls_ports"`
	TLSCert      string   `toml:"tls_cert"`
	TLSKey       string   `toml:"tls_key"`
	ServeAliases bool     `toml:"serve_aliases"`
	// RingTimeout ends calls no callee answered (Timer C).
	RingTimeout time.Duration `toml:"ring_timeout"`
	// MaxCalls bounds the calls in progress on this node.
	MaxCalls int `toml:"max_calls"`
	// Dispatch: this node's dispatcher hands the UDP datagrams of the
	// addresses it holds to the processing node of their Call-ID
	// (dispatch.go). Default: on when the cluster has more than one node
	// (cluster.peers lists several, or cluster.join or await_add is set).
	Dispatch *bool `toml:"dispatch"`
	// DispatchQueue bounds the frames waiting for one peer on the
	// dispatch link. Default 4096.
	DispatchQueue int `toml:"dispatch_queue"`
}

// RegistrarConfig is the [registrar] section.
type RegistrarConfig struct {
	Realm          string        `toml:"realm"`
	DefaultExpires int           `toml:"default_expires"`
	MinExpires     int           `toml:"min_expires"`
	MaxExpires     int           `toml:"max_expires"`
	MaxContacts    int           `toml:"max_contacts"`
	NonceTTL       time.Duration `toml:"nonce_ttl"`
	Algorithms     []string      `toml:"algorithms"`
	// AuthFailuresPerMinute failed authentications from one source block
	// it for AuthBlockFor (20, 2 minutes; -1 turns the limit off).
	AuthFailuresPerMinute int           `toml:"auth_failures_per_minute"`
	AuthBlockFor          time.Duration `toml:"auth_block_for"`
	// AccountGuessesPerMinute and AccountGuessBurst bound the failed
	// authentications of one user name from sources it has not
	// authenticated from within TrustSourceFor (20, 10, 24 h; -1 turns
	// the guard off). See docs/SECURITY.md.
	AccountGuessesPerMinute int           `toml:"account_guesses_per_minute"`
	AccountGuessBurst       int           `toml:"account_guess_burst"`
	TrustSourceFor          time.Duration `toml:"trust_source_for"`
	// NAT keepalive (keepalive.go, docs/keepalive.md): OPTIONS to every
	// binding from the socket it registered through, by the node
	// holding that socket. KeepaliveInterval "0" turns it off.
	KeepaliveInterval          *time.Duration `toml:"keepalive_interval"`
	KeepaliveTimeout           time.Duration  `toml:"keepalive_timeout"`
	KeepaliveFailures          int            `toml:"keepalive_failures"`
	KeepaliveRemoveUnreachable bool           `toml:"keepalive_remove_unreachable"`
	KeepaliveMaxPerSecond      int            `toml:"keepalive_max_per_second"`
}

// BillingConfig is the [billing] section.
type BillingConfig struct {
	// XDRRetentionCount is how many xDRs the replicated state keeps; the
	// leader drops the oldest beyond it (export them before).
	XDRRetentionCount int `toml:"xdr_retention_count"`
	// IdempotencyWindow is how long money transactions' idempotency keys
	// (top-ups) are remembered: a retry within it is applied at most once.
	IdempotencyWindow time.Duration `toml:"idempotency_window"`
	// MaxCallDuration is the longest call the switch allows, whatever the
	// balance.
	MaxCallDuration time.Duration `toml:"max_call_duration"`
	// ReserveChunk is how much call time a call reserves at a time (its
	// first chunk at setup, the next before one runs out), so that many
	// calls of one account share its balance. Equal to MaxCallDuration: a
	// call reserves all it may use at setup.
	ReserveChunk time.Duration `toml:"reserve_chunk"`
}

// Defaults and bounds of the [billing] section.
const (
	DefaultXDRRetention      = 1_000_000
	DefaultIdempotencyWindow = 7 * 24 * time.Hour
	DefaultMaxCallDuration   = 4 * time.Hour
	DefaultReserveChunk      = 5 * time.Minute
	maxXDRRetention          = 100_000_000
)

// AdminConfig is the [admin] section.
type AdminConfig struct {
	Listen string `toml:"listen"`
	// Token (or TokenFile) is a token of scope admin: the single token of
	// configurations from before scopes.
	Token     string `toml:"token"`
	TokenFile string `toml:"token_file"`
	// Tokens are named tokens with a scope, read or admin.
	Tokens []AdminToken `toml:"tokens"`
	// TLS: the API's certificate chain and key (PEM). Without them the
	// API is plain HTTP.
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	// TLSClientCAFile, if set, makes every client show a certificate
	// signed by one of its CAs (PEM).
	TLSClientCAFile string `toml:"tls_client_ca_file"`
}

// AdminToken is one entry of admin.tokens.
type AdminToken struct {
	Name      string `toml:"name"`
	Scope     string `toml:"scope"`
	Token     string `toml:"token"`
	TokenFile string `toml:"token_file"`
}

// APITokens are the admin API's tokens: admin.token (scope admin) and
// admin.tokens.
func (a AdminConfig) APITokens() []admin.Token {
	var out []admin.Token
	if a.Token != "" {
		out = append(out, admin.Token{Name: admin.LegacyTokenName, Scope: admin.ScopeAdmin, Secret: a.Token})
	}
	for _, t := range a.Tokens {
		out = append(out, admin.Token{Name: t.Name, Scope: admin.Scope(t.Scope), Secret: t.Token})
	}
	return out
}

// TLS reports whether the admin API is served over TLS.
func (a AdminConfig) TLS() bool { return a.TLSCertFile != "" }

// LoadConfig reads a TOML file. Unknown keys are errors (a typo must not
// silently fall back to a default); missing keys take defaults.
func LoadConfig(path string) (Config, error) {
	var c Config
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("config %s: unknown keys %s (see deploy/troika.example.toml)", path, strings.Join(keys, ", "))
	}
	c.applyDefaults()
	if err := c.resolveSecrets(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func (c *Config) applyDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.LogFormat == "" {
		c.LogFormat = "json"
	}
	if len(c.SIP.UDPPorts) == 0 && len(c.SIP.TCPPorts) == 0 && len(c.SIP.TLSPorts) == 0 {
		c.SIP.UDPPorts, c.SIP.TCPPorts = []int{5060}, []int{5060}
	}
	if c.SIP.RingTimeout == 0 {
		c.SIP.RingTimeout = 60 * time.Second
	}
	def(&c.SIP.MaxCalls, 10000)
	if c.Registrar.Realm == "" {
		c.Registrar.Realm = "troika"
	}
	def(&c.Registrar.DefaultExpires, 3600)
	def(&c.Registrar.MinExpires, 60)
	def(&c.Registrar.MaxExpires, 7200)
	def(&c.Registrar.MaxContacts, 10)
	if len(c.Registrar.Algorithms) == 0 {
		// MD5 alone: phones that predate RFC 8760 (libre-based ones such
		// as baresip 1.0, older firmware) give up on a 401 carrying a
		// challenge they do not know, even next to an MD5 one; SIPp reads
		// only the first. Offer SHA-256 where every phone supports it.
		c.Registrar.Algorithms = []string{"MD5"}
	}
	if c.Registrar.NonceTTL == 0 {
		c.Registrar.NonceTTL = 5 * time.Minute
	}
	c.applyKeepaliveDefaults()
	if c.Admin.Listen == "" {
		c.Admin.Listen = "127.0.0.1:8080"
	}
	def(&c.Billing.XDRRetentionCount, DefaultXDRRetention)
	if c.Billing.IdempotencyWindow == 0 {
		c.Billing.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if c.Billing.MaxCallDuration == 0 {
		c.Billing.MaxCallDuration = DefaultMaxCallDuration
	}
	if c.Billing.ReserveChunk == 0 {
		c.Billing.ReserveChunk = min(DefaultReserveChunk, c.Billing.MaxCallDuration)
	}
	c.applyRaftTimingDefaults()
	c.applyVIPDefaults()
}

func (c *Config) resolveSecrets() error {
	if c.Cluster.Key == "" && c.Cluster.KeyFile != "" {
		b, err := os.ReadFile(c.Cluster.KeyFile)
		if err != nil {
			return fmt.Errorf("cluster.key_file: %w", err)
		}
		c.Cluster.Key = strings.TrimSpace(string(b))
	}
	if c.Admin.Token == "" && c.Admin.TokenFile != "" {
		b, err := os.ReadFile(c.Admin.TokenFile)
		if err != nil {
			return fmt.Errorf("admin.token_file: %w", err)
		}
		c.Admin.Token = strings.TrimSpace(string(b))
	}
	for i := range c.Admin.Tokens {
		t := &c.Admin.Tokens[i]
		if t.Token != "" && t.TokenFile != "" {
			return fmt.Errorf("admin.tokens[%d] (%s): token or token_file, not both", i, t.Name)
		}
		if t.TokenFile != "" {
			b, err := os.ReadFile(t.TokenFile)
			if err != nil {
				return fmt.Errorf("admin.tokens[%d] (%s).token_file: %w", i, t.Name, err)
			}
			t.Token = strings.TrimSpace(string(b))
		}
	}
	return nil
}

// Validate reports the first configuration error, naming the key.
func (c *Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("node_id: required (a short unique name such as sip1)")
	case c.DataDir == "":
		return errors.New("data_dir: required (e.g. /var/lib/troika)")
	case c.Cluster.Bind == "":
		return errors.New("cluster.bind: required (host:port for the internal link, e.g. 10.0.0.1:7000)")
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		return fmt.Errorf("log_level: %w", err)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return fmt.Errorf("log_format: %q is not json or text", c.LogFormat)
	}
	if _, err := c.Runtime.Resolve(1<<30, "", ""); err != nil {
		return err
	}
	if _, err := c.ClusterKey(); err != nil {
		return err
	}
	if _, err := c.ClusterPeers(); err != nil {
		return err
	}
	if err := c.validateClusterTLS(); err != nil {
		return err
	}
	if err := c.validateAwaitAdd(); err != nil {
		return err
	}
	if len(c.Cluster.Peers) == 0 && !c.Cluster.Bootstrap && len(c.Cluster.Join) == 0 && !c.Cluster.AwaitAdd {
		return errors.New("cluster: set peers (static cluster), join (add to a running cluster), await_add = true (added by an operator) or bootstrap = true (a single node)")
	}
	if len(c.SIP.Addresses) == 0 {
		return errors.New("sip.addresses: at least one address (the node's or the cluster's virtual IP)")
	}
	for _, a := range c.SIP.Addresses {
		if _, err := netip.ParseAddr(a); err != nil {
			return fmt.Errorf("sip.addresses: %q is not an IP address", a)
		}
	}
	for name, ports := range map[string][]int{"udp_ports": c.SIP.UDPPorts, "tcp_ports": c.SIP.TCPPorts, "tls_ports": c.SIP.TLSPorts} {
		for _, p := range ports {
			if p < 1 || p > 65535 {
				return fmt.Errorf("sip.%s: %d is not a port", name, p)
			}
		}
	}
	if c.SIP.RingTimeout < time.Second || c.SIP.RingTimeout > 10*time.Minute {
		return errors.New("sip.ring_timeout: must be between 1s and 10m")
	}
	if c.SIP.MaxCalls < 1 {
		return errors.New("sip.max_calls: must be at least 1")
	}
	if c.SIP.DispatchQueue < 0 || c.SIP.DispatchQueue > 1<<20 {
		return errors.New("sip.dispatch_queue: 0 (default 4096) to 1048576")
	}
	if len(c.SIP.TLSPorts) > 0 && (c.SIP.TLSCert == "" || c.SIP.TLSKey == "") {
		return errors.New("sip.tls_cert and sip.tls_key: required when sip.tls_ports is set")
	}
	r := c.Registrar
	switch {
	case r.MinExpires < 1 || r.MaxExpires < r.MinExpires:
		return errors.New("registrar: need 1 <= min_expires <= max_expires")
	case r.DefaultExpires < r.MinExpires || r.DefaultExpires > r.MaxExpires:
		return errors.New("registrar.default_expires: must lie between min_expires and max_expires")
	case r.MaxContacts < 1 || r.MaxContacts > 100:
		return errors.New("registrar.max_contacts: must be 1-100")
	case r.NonceTTL < 10*time.Second:
		return errors.New("registrar.nonce_ttl: at least 10s")
	case r.AuthFailuresPerMinute < -1:
		return errors.New("registrar.auth_failures_per_minute: a count, or -1 for no limit (default 20)")
	case r.AuthBlockFor < 0:
		return errors.New(`registrar.auth_block_for: a duration such as "2m" (the default)`)
	case r.AccountGuessesPerMinute < -1 || r.AccountGuessBurst < 0:
		return errors.New("registrar.account_guesses_per_minute and account_guess_burst: counts (defaults 20 and 10), -1 guesses for no guard")
	case r.TrustSourceFor < 0:
		return errors.New(`registrar.trust_source_for: a duration such as "24h" (the default)`)
	}
	for _, a := range r.Algorithms {
		if a != "MD5" && a != "SHA-256" {
			return fmt.Errorf("registrar.algorithms: %q is not MD5 or SHA-256", a)
		}
	}
	if err := c.validateKeepalive(); err != nil {
		return err
	}
	b := c.Billing
	switch {
	case b.XDRRetentionCount < 1 || b.XDRRetentionCount > maxXDRRetention:
		return fmt.Errorf("billing.xdr_retention_count: must be 1-%d (default %d)", maxXDRRetention, DefaultXDRRetention)
	case b.IdempotencyWindow < time.Hour:
		return errors.New(`billing.idempotency_window: at least "1h" (default "168h", 7 days): a client's retry must fall inside it`)
	case b.MaxCallDuration < time.Minute || b.MaxCallDuration > 48*time.Hour:
		return errors.New(`billing.max_call_duration: must be between "1m" and "48h" (default "4h")`)
	case b.MaxCallDuration%time.Second != 0:
		return errors.New("billing.max_call_duration: whole seconds")
	case b.ReserveChunk < 10*time.Second || b.ReserveChunk > b.MaxCallDuration || b.ReserveChunk%time.Second != 0:
		return errors.New(`billing.reserve_chunk: whole seconds between "10s" and billing.max_call_duration (default "5m")`)
	}
	if err := c.Admin.validate(); err != nil {
		return err
	}
	if err := c.validateRaftTiming(); err != nil {
		return err
	}
	if _, err := c.GossipAddrs(); err != nil {
		return err
	}
	return c.validateVIP()
}

// ClusterKey returns the cluster key: cluster.key decoded from base64 when
// it is valid base64 of at least 16 bytes, else its raw text.
func (c *Config) ClusterKey() ([]byte, error) {
	k := c.Cluster.Key
	if k == "" {
		return nil, errors.New("cluster.key (or cluster.key_file): required, the same on every node (e.g. `openssl rand -base64 32`)")
	}
	if b, err := base64.StdEncoding.DecodeString(k); err == nil && len(b) >= 16 {
		return b, nil
	}
	if len(k) < 16 {
		return nil, errors.New("cluster.key: at least 16 bytes")
	}
	return []byte(k), nil
}

// Peer is one static cluster member.
type Peer struct{ ID, Addr string }

// ClusterPeers parses cluster.peers entries of the form "id=host:port".
func (c *Config) ClusterPeers() ([]Peer, error) {
	var out []Peer
	self := false
	for _, p := range c.Cluster.Peers {
		id, addr, ok := strings.Cut(p, "=")
		if !ok || id == "" {
			return nil, fmt.Errorf("cluster.peers: %q must look like sip1=10.0.0.1:7000", p)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("cluster.peers: %q: %w", p, err)
		}
		self = self || id == c.NodeID
		out = append(out, Peer{ID: id, Addr: addr})
	}
	if len(out) > 0 && !self {
		return nil, fmt.Errorf("cluster.peers: must include this node (%s)", c.NodeID)
	}
	return out, nil
}

// RandomToken returns n random bytes, base64url-encoded.
func RandomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails: crypto/rand crashes the program rather than return weak bytes
	return base64.RawURLEncoding.EncodeToString(b)
}

// validate checks the [admin] section: the tokens (at least one of scope
// admin, each at least 16 characters, names and secrets distinct), the
// listen address, and the TLS files given together.
func (a *AdminConfig) validate() error {
	const gen = "e.g. `openssl rand -hex 24`"
	if a.Token == "" && len(a.Tokens) == 0 {
		return fmt.Errorf("admin.token (or admin.token_file, or admin.tokens): required, at least %d characters (%s)", admin.MinTokenLength, gen)
	}
	if a.Token != "" && len(a.Token) < admin.MinTokenLength {
		return fmt.Errorf("admin.token (or admin.token_file): at least %d characters (%s)", admin.MinTokenLength, gen)
	}
	names := map[string]bool{}
	secrets := map[string]string{}
	if a.Token != "" {
		secrets[a.Token] = "admin.token"
	}
	adminScope := a.Token != ""
	for i, t := range a.Tokens {
		key := fmt.Sprintf("admin.tokens[%d]", i)
		switch {
		case !fsm.ValidID(t.Name):
			return fmt.Errorf("%s.name: required: 1-64 letters, digits, '_', '.', '+' or '-' (e.g. \"noc\"); it names the token in logs", key)
		case t.Name == admin.LegacyTokenName && a.Token != "":
			return fmt.Errorf("%s.name: %q names admin.token: choose another name", key, t.Name)
		case names[t.Name]:
			return fmt.Errorf("%s.name: %q is used by two tokens", key, t.Name)
		case t.Scope != string(admin.ScopeRead) && t.Scope != string(admin.ScopeAdmin):
			return fmt.Errorf("%s (%s).scope: %q: use \"read\" (GET endpoints) or \"admin\" (everything)", key, t.Name, t.Scope)
		case t.Token == "":
			return fmt.Errorf("%s (%s): token_file (or token) required (%s)", key, t.Name, gen)
		case len(t.Token) < admin.MinTokenLength:
			return fmt.Errorf("%s (%s): the token must be at least %d characters (%s)", key, t.Name, admin.MinTokenLength, gen)
		}
		if other, ok := secrets[t.Token]; ok {
			return fmt.Errorf("%s (%s): the same token as %s: give each token its own secret", key, t.Name, other)
		}
		names[t.Name], secrets[t.Token] = true, key
		adminScope = adminScope || t.Scope == string(admin.ScopeAdmin)
	}
	if !adminScope {
		return errors.New(`admin.tokens: no token of scope "admin": nobody could change the switch or drain the node; add one (or admin.token_file)`)
	}
	if _, _, err := net.SplitHostPort(a.Listen); err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	switch {
	case (a.TLSCertFile == "") != (a.TLSKeyFile == ""):
		return errors.New("admin.tls_cert_file and admin.tls_key_file: give both (PEM files) for TLS, or neither for plain HTTP")
	case a.TLSClientCAFile != "" && a.TLSCertFile == "":
		return errors.New("admin.tls_client_ca_file: needs admin.tls_cert_file and admin.tls_key_file (client certificates are checked only over TLS)")
	}
	return nil
}
