package fsm

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"sort"
)

// Credentials are what digest authentication needs of a password, never
// the password: HA1 = H(username ":" realm ":" password) for MD5 and for
// SHA-256 (RFC 7616 §3.4.2), made for the cluster's realm (State.Realm).
// With them a node verifies a phone's digest response; without the
// password, a copy of the state (raft.db, a snapshot) does not give away
// what to type into a phone.
type Credentials struct {
	MD5    []byte // 16 bytes
	SHA256 []byte // 32 bytes
	// Legacy is the clear password of a record written by a build that
	// stored passwords (version 1 commands and snapshots). It stays only
	// until the leader replaces it with the HA1 values (SecureCredentials)
	// and is never set by a current command.
	Legacy string
}

// HashCredentials makes the credentials of user's password in realm.
func HashCredentials(user, realm, password string) Credentials {
	in := []byte(user + ":" + realm + ":" + password)
	m := md5.Sum(in)
	s := sha256.Sum256(in)
	return Credentials{MD5: m[:], SHA256: s[:]}
}

// Set reports whether c holds anything to verify against.
func (c Credentials) Set() bool { return len(c.MD5) > 0 || c.Legacy != "" }

// HA1 returns the hex HA1 of c for a digest algorithm ("MD5" or
// "SHA-256") as it verifies user in realm: the stored value, or for a
// legacy record the one made from its password.
func (c Credentials) HA1(alg, user, realm string) (string, bool) {
	if c.Legacy != "" && len(c.MD5) == 0 {
		c = HashCredentials(user, realm, c.Legacy)
	}
	switch alg {
	case "MD5":
		return hex.EncodeToString(c.MD5), len(c.MD5) == md5.Size
	case "SHA-256":
		return hex.EncodeToString(c.SHA256), len(c.SHA256) == sha256.Size
	}
	return "", false
}

func (c Credentials) clone() Credentials {
	return Credentials{MD5: append([]byte(nil), c.MD5...), SHA256: append([]byte(nil), c.SHA256...), Legacy: c.Legacy}
}

// validate checks credentials a current command carries: both HA1 values
// and no clear password. required: they may not be empty.
func (c Credentials) validate(field string, required bool) error {
	switch {
	case c.Legacy != "":
		return fieldErr(field, "a clear password is never stored: send its digest HA1 values")
	case len(c.MD5) == 0 && len(c.SHA256) == 0 && !required:
		return nil
	case len(c.MD5) != md5.Size || len(c.SHA256) != sha256.Size:
		return fieldErr(field, "need the MD5 (16 bytes) and SHA-256 (32 bytes) HA1 values")
	}
	return nil
}

// legacyValid checks the clear password of a version 1 record.
func legacyValid(field, password string, required bool) error {
	switch {
	case password == "" && required:
		return fieldErr(field, "is required")
	case len(password) > 128 || !printable(password):
		return fieldErr(field, "must be at most 128 printable characters")
	}
	return nil
}

// LegacyDigest is what SecureCredentials records of the clear password it
// replaces: its SHA-256, in hex, so the log never holds the password again.
func LegacyDigest(password string) string {
	s := sha256.Sum256([]byte(password))
	return hex.EncodeToString(s[:])
}

// InitRealm records the digest realm the cluster's credentials are made
// for. The first one sticks: a different realm is refused, since every
// stored HA1 would stop verifying.
type InitRealm struct {
	Realm string
}

func (*InitRealm) Type() Type { return TypeInitRealm }

func (c *InitRealm) apply(s *State) Result {
	switch {
	case c.Realm == "" || len(c.Realm) > 128 || !printable(c.Realm):
		return refuse(CodeInvalid, "realm", "must be 1-128 printable characters")
	case s.realm == "":
		s.realm = c.Realm
	case s.realm != c.Realm:
		return refuse(CodeConflict, "realm", "the cluster's credentials are made for realm %q, not %q: set registrar.realm = %q on every node", s.realm, c.Realm, s.realm)
	}
	return Result{}
}

// Realm returns the digest realm of the cluster's credentials ("" until
// the first leader records it).
func (s *State) Realm() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.realm
}

// SecretUpdate replaces the clear password of one record with its
// credentials.
type SecretUpdate struct {
	ID          string // account, vendor or connection id
	LegacyHash  string // LegacyDigest of the password it replaces
	Credentials Credentials
}

// SecureCredentials replaces the clear passwords that records written by
// older builds still hold with their HA1 values, computed by the leader in
// the cluster's realm. An update whose record is gone or whose password
// changed meanwhile (LegacyHash) is skipped: the leader tries again.
type SecureCredentials struct {
	Realm       string
	Accounts    []SecretUpdate
	Vendors     []SecretUpdate
	Connections []SecretUpdate
}

func (*SecureCredentials) Type() Type { return TypeSecureCredentials }

func (c *SecureCredentials) apply(s *State) Result {
	if s.realm == "" || c.Realm != s.realm {
		return refuse(CodeConflict, "realm", "credentials for realm %q, the cluster's is %q", c.Realm, s.realm)
	}
	for _, list := range [][]SecretUpdate{c.Accounts, c.Connections} {
		for _, u := range list {
			if err := u.Credentials.validate("credentials", true); err != nil {
				return refuseInvalid(err)
			}
		}
	}
	for _, u := range c.Vendors { // empty for a vendor without a user name: its password only goes
		if err := u.Credentials.validate("credentials", false); err != nil {
			return refuseInvalid(err)
		}
	}
	for _, u := range c.Accounts {
		if a, ok := s.accounts[u.ID]; ok && a.Credentials.Legacy != "" && LegacyDigest(a.Credentials.Legacy) == u.LegacyHash {
			cp := a.clone()
			cp.Credentials = u.Credentials.clone()
			s.accounts[u.ID] = &cp
		}
	}
	for _, u := range c.Vendors {
		if v, ok := s.vendors[u.ID]; ok && v.Credentials.Legacy != "" && LegacyDigest(v.Credentials.Legacy) == u.LegacyHash {
			cp := v.clone()
			cp.Credentials = u.Credentials.clone()
			s.vendors[u.ID] = &cp
		}
	}
	for _, u := range c.Connections {
		if cn, ok := s.connections[u.ID]; ok && cn.Credentials.Legacy != "" && LegacyDigest(cn.Credentials.Legacy) == u.LegacyHash {
			cp := cn.clone()
			cp.Credentials = u.Credentials.clone()
			s.connections[u.ID] = &cp
		}
	}
	return Result{}
}

// LegacySecret is a record that still holds a clear password.
type LegacySecret struct {
	Kind     string // "account", "vendor" or "connection"
	ID       string
	User     string // the digest user name its credentials are for ("" for a vendor without one: nothing to keep)
	Password string
}

// SecureLegacy is the SecureCredentials that replaces the clear passwords
// of legacy with their digests in realm (a record without a user name
// keeps no credentials).
func SecureLegacy(realm string, legacy []LegacySecret) *SecureCredentials {
	cmd := &SecureCredentials{Realm: realm}
	for _, l := range legacy {
		u := SecretUpdate{ID: l.ID, LegacyHash: LegacyDigest(l.Password)}
		if l.User != "" {
			u.Credentials = HashCredentials(l.User, realm, l.Password)
		}
		switch l.Kind {
		case "account":
			cmd.Accounts = append(cmd.Accounts, u)
		case "vendor":
			cmd.Vendors = append(cmd.Vendors, u)
		case "connection":
			cmd.Connections = append(cmd.Connections, u)
		}
	}
	return cmd
}

// LegacySecrets lists the records that still hold a clear password, for
// the leader to convert (SecureCredentials), ordered by kind and id.
func (s *State) LegacySecrets() []LegacySecret {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []LegacySecret
	for _, a := range s.accounts {
		if a.Credentials.Legacy != "" {
			out = append(out, LegacySecret{Kind: "account", ID: a.ID, User: a.ID, Password: a.Credentials.Legacy})
		}
	}
	for _, v := range s.vendors {
		if v.Credentials.Legacy != "" {
			out = append(out, LegacySecret{Kind: "vendor", ID: v.ID, User: v.Username, Password: v.Credentials.Legacy})
		}
	}
	for _, c := range s.connections {
		if c.Credentials.Legacy != "" && c.Username != "" {
			out = append(out, LegacySecret{Kind: "connection", ID: c.ID, User: c.Username, Password: c.Credentials.Legacy})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].ID < out[j].ID
	})
	return out
}
