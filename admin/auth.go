package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Bearer tokens and their scopes. Every /v1/ endpoint and the profiles
// need a token; a GET needs scope read (or admin), anything else (a
// write, a dry run, a drain) and the profiles need scope admin. /healthz
// and /metrics need none.

// Scope is what a token may do.
type Scope string

// The scopes, from least to most.
const (
	// ScopeRead reads: every GET under /v1/.
	ScopeRead Scope = "read"
	// ScopeAdmin reads and changes everything: writes, drains, profiles.
	ScopeAdmin Scope = "admin"
)

// MinTokenLength is the shortest token the API accepts.
const MinTokenLength = 16

// Token is one bearer token of the API.
type Token struct {
	Name   string // names the token in logs and answers; never the secret
	Scope  Scope
	Secret string // at least MinTokenLength characters
}

// LegacyTokenName names Config.Token: the single admin token of
// configurations from before scopes.
const LegacyTokenName = "token"

// tokenEntry is a token as the server keeps it: the secret only as its
// SHA-256, so every comparison takes the same time whatever the secret's
// length.
type tokenEntry struct {
	name  string
	scope Scope
	sum   [sha256.Size]byte
}

// newTokenSet checks the tokens: at least one of scope admin, names and
// secrets distinct, secrets long enough.
func newTokenSet(ts []Token) ([]tokenEntry, error) {
	var out []tokenEntry
	admin := false
	names := map[string]bool{}
	for _, t := range ts {
		switch {
		case t.Name == "":
			return nil, errors.New("admin: every token needs a name")
		case names[t.Name]:
			return nil, fmt.Errorf("admin: two tokens are named %q", t.Name)
		case t.Scope != ScopeRead && t.Scope != ScopeAdmin:
			return nil, fmt.Errorf("admin: token %q: scope %q is not %q or %q", t.Name, t.Scope, ScopeRead, ScopeAdmin)
		case len(t.Secret) < MinTokenLength:
			return nil, fmt.Errorf("admin: token %q: the API token must be at least %d characters", t.Name, MinTokenLength)
		}
		sum := sha256.Sum256([]byte(t.Secret))
		for _, o := range out {
			if o.sum == sum {
				return nil, fmt.Errorf("admin: tokens %q and %q are the same secret: give each its own", o.name, t.Name)
			}
		}
		names[t.Name] = true
		admin = admin || t.Scope == ScopeAdmin
		out = append(out, tokenEntry{name: t.Name, scope: t.Scope, sum: sum})
	}
	if !admin {
		return nil, errors.New("admin: no token of scope admin: nobody could change the switch or drain the node; add one")
	}
	return out, nil
}

// lookup finds the token an Authorization header carries. It compares the
// secret's hash with every token's, in constant time and without stopping
// at a match.
func lookup(tokens []tokenEntry, header string) (tokenEntry, bool) {
	secret, ok := strings.CutPrefix(header, "Bearer ")
	sum := sha256.Sum256([]byte(secret))
	var found tokenEntry
	hit := 0
	for _, t := range tokens {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			found, hit = t, 1
		}
	}
	return found, ok && hit == 1
}

// needs is the scope a request needs: read for a GET, admin for anything
// else.
func needs(method string) Scope {
	if method == http.MethodGet || method == http.MethodHead {
		return ScopeRead
	}
	return ScopeAdmin
}

type tokenNameKey struct{}

// TokenName is the name of the token that authenticated the request whose
// context ctx is ("" outside an authenticated request).
func TokenName(ctx context.Context) string {
	name, _ := ctx.Value(tokenNameKey{}).(string)
	return name
}

// checkToken answers 401 or 403 and returns false when r may not do what
// it asks with need; otherwise it returns r with the token's name in its
// context.
func (s *Server) checkToken(w http.ResponseWriter, r *http.Request, need Scope) (*http.Request, bool) {
	tok, ok := lookup(s.tokens, r.Header.Get("Authorization"))
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="troika"`)
		writeJSON(w, http.StatusUnauthorized, Error{Error: "missing or wrong bearer token: pass the token the node printed at start (Authorization: Bearer TOKEN, or TROIKA_TOKEN for the CLI)"})
		return r, false
	}
	if need == ScopeAdmin && tok.scope != ScopeAdmin {
		writeJSON(w, http.StatusForbidden, Error{Error: fmt.Sprintf(
			"this token is read-only: %s %s needs a token of scope admin (this one is %q, scope %s); use an admin token (admin.tokens with scope = \"admin\", or admin.token)",
			r.Method, r.URL.Path, tok.name, tok.scope)})
		return r, false
	}
	return r.WithContext(context.WithValue(r.Context(), tokenNameKey{}, tok.name)), true
}
