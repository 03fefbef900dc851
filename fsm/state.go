package fsm

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
)

// State is the replicated state machine. Apply changes it; the query
// methods read it from any goroutine. Stored records are never modified in
// place: a change stores a new copy, so a snapshot can share them.
type State struct {
	mu          sync.RWMutex
	accounts    map[string]*Account
	tariffs     map[string]*Tariff
	aliases     map[string]*Alias
	policies    map[string]*ServicePolicy
	vendors     map[string]*Vendor
	connections map[string]*Connection
	bindings    map[string][]*Binding // by AOR
	nBindings   int
	nonceSecret []byte
	realm       string        // of the stored credentials (InitRealm)
	aliasWatch  chan struct{} // closed and replaced when aliases change

	calls       map[string]*Call      // in progress, by ID (write with putCall, dropCall)
	callByLeg   map[string]string     // a leg's Call-ID -> its call's ID (derived from calls)
	quotas      map[string]*CallQuota // calls reserved by chunks, by call ID (quota.go)
	reserved    map[string]int64      // per account: money held by its calls (derived from calls)
	activeCalls map[string]int        // per account: calls it takes part in (derived from calls)
	xdrs        xdrLog                // finished calls, oldest first
	xdrByCall   map[string]uint64     // call ID -> xDR seq, for idempotent EndCall
	xdrSeq      uint64                // last xDR seq issued
	txKeys      map[string]int64      // idempotency keys of money transactions -> when applied
	strs        map[string]string     // interned values of stored records (intern.go)

	own ownership // who holds each managed address (ownership.go)
}

// New returns an empty state.
func New() *State {
	return &State{
		accounts:    map[string]*Account{},
		tariffs:     map[string]*Tariff{},
		aliases:     map[string]*Alias{},
		policies:    map[string]*ServicePolicy{},
		vendors:     map[string]*Vendor{},
		connections: map[string]*Connection{},
		bindings:    map[string][]*Binding{},
		aliasWatch:  make(chan struct{}),
		calls:       map[string]*Call{},
		callByLeg:   map[string]string{},
		quotas:      map[string]*CallQuota{},
		reserved:    map[string]int64{},
		activeCalls: map[string]int{},
		xdrByCall:   map[string]uint64{},
		txKeys:      map[string]int64{},
		strs:        map[string]string{},
		own:         newOwnership(),
	}
}

// Apply decodes and applies one encoded command. The returned error is for
// input this replica cannot apply at all (undecodable, unknown type); a
// command that was applied but refused reports it in Result.Err.
func (s *State) Apply(data []byte) (Result, error) {
	_, c, err := Decode(data)
	if err != nil {
		return Result{}, err
	}
	return s.ApplyCommand(c), nil
}

// ApplyCommand applies a decoded command.
func (s *State) ApplyCommand(c Command) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.apply(s)
}

func (s *State) aliasesChanged() {
	close(s.aliasWatch)
	s.aliasWatch = make(chan struct{})
}

// AliasesChanged returns a channel that is closed at the next change of the
// alias set.
func (s *State) AliasesChanged() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.aliasWatch
}

// copyOf returns a copy, made by clone, of the record stored under key in
// the map *m points at. m points at a field of s: Restore replaces the maps,
// so the field is read under the lock.
func copyOf[T any](s *State, m *map[string]*T, key string, clone func(*T) T) (T, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := (*m)[key]
	if !ok {
		var zero T
		return zero, false
	}
	return clone(v), true
}

type keyed[T any] struct {
	key string
	v   T
}

// sortedCopies returns copies, made by clone, of every record in the map
// *m points at, ordered by their key. It holds the lock only while
// copying.
func sortedCopies[T any](s *State, m *map[string]*T, clone func(*T) T) []T {
	s.mu.RLock()
	es := make([]keyed[T], 0, len(*m))
	for k, v := range *m {
		es = append(es, keyed[T]{k, clone(v)})
	}
	s.mu.RUnlock()
	slices.SortFunc(es, func(a, b keyed[T]) int { return strings.Compare(a.key, b.key) })
	out := make([]T, len(es))
	for i, e := range es {
		out[i] = e.v
	}
	return out
}

// Account returns a copy of an account.
func (s *State) Account(id string) (Account, bool) {
	return copyOf(s, &s.accounts, id, (*Account).clone)
}

// Accounts returns copies of all accounts ordered by id.
func (s *State) Accounts() []Account { return sortedCopies(s, &s.accounts, (*Account).clone) }

// Tariff returns a copy of a tariff.
func (s *State) Tariff(id string) (Tariff, bool) { return copyOf(s, &s.tariffs, id, (*Tariff).clone) }

// Tariffs returns copies of all tariffs ordered by id.
func (s *State) Tariffs() []Tariff { return sortedCopies(s, &s.tariffs, (*Tariff).clone) }

// Alias returns a copy of an alias.
func (s *State) Alias(ip string) (Alias, bool) { return copyOf(s, &s.aliases, ip, (*Alias).clone) }

// Aliases returns copies of all aliases ordered by address (as text).
func (s *State) Aliases() []Alias { return sortedCopies(s, &s.aliases, (*Alias).clone) }

// Bindings returns the AOR's bindings unexpired at unix ms now.
func (s *State) Bindings(aor string, now int64) []Binding {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return live(s.bindings[aor], now)
}

// AllBindings returns every binding unexpired at unix ms now, ordered by
// AOR and then registration order.
func (s *State) AllBindings(now int64) []Binding {
	s.mu.RLock()
	aors := make([]string, 0, len(s.bindings))
	for aor := range s.bindings {
		aors = append(aors, aor)
	}
	s.mu.RUnlock()
	sort.Strings(aors)
	var out []Binding
	for _, aor := range aors {
		out = append(out, s.Bindings(aor, now)...)
	}
	return out
}

// BindingCount returns the number of stored bindings, expired ones not yet
// purged included.
func (s *State) BindingCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.nBindings
}

// XDRSeq returns the sequence number of the last xDR the state filed:
// how many xDRs the cluster has written, trimmed ones included.
func (s *State) XDRSeq() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.xdrSeq
}

// NonceSecret returns the cluster's digest-nonce secret, nil until the first
// leader has stored one.
func (s *State) NonceSecret() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.nonceSecret)
}

// Counts summarises the state for status pages and checks.
type Counts struct {
	Accounts, Tariffs, Aliases, Bindings, Calls, XDRs, ServicePolicies, Vendors, Connections int
}

// Counts returns how many records of each kind the state holds.
func (s *State) Counts() Counts {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Counts{Accounts: len(s.accounts), Tariffs: len(s.tariffs), Aliases: len(s.aliases), Bindings: s.nBindings,
		Calls: len(s.calls), XDRs: s.xdrs.len(), ServicePolicies: len(s.policies), Vendors: len(s.vendors), Connections: len(s.connections)}
}

// Call returns a copy of a call in progress.
func (s *State) Call(id string) (Call, bool) { return copyOf(s, &s.calls, id, (*Call).clone) }

// Calls returns copies of the calls in progress, oldest first.
func (s *State) Calls() []Call {
	s.mu.RLock()
	out := make([]Call, 0, len(s.calls))
	for _, c := range s.calls {
		out = append(out, c.clone())
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].SetupAt != out[j].SetupAt {
			return out[i].SetupAt < out[j].SetupAt
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// CallQuota returns how a call in progress reserves its money by chunks;
// false for a call that reserved its whole length at setup (or none).
func (s *State) CallQuota(callID string) (CallQuota, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	q, ok := s.quotas[callID]
	if !ok {
		return CallQuota{}, false
	}
	return *q, true
}

// Reserved returns the money the account's calls in progress hold.
func (s *State) Reserved(account string) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.reserved[account]
}

// XDRFilter selects xDRs.
type XDRFilter struct {
	Account  string // "" for all
	AfterSeq uint64 // only xDRs with a higher Seq
	Since    int64  // only xDRs disconnected at or after (unix ms)
	Limit    int    // at most this many (0: all)
}

// XDRs returns copies of the xDRs matching f, oldest first.
func (s *State) XDRs(f XDRFilter) []XDR {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []XDR
	s.xdrs.after(f.AfterSeq, func(x *XDR) bool {
		if (f.Account == "" || x.Account == f.Account || x.charges(f.Account)) && x.DisconnectAt >= f.Since {
			out = append(out, x.clone())
		}
		return f.Limit == 0 || len(out) < f.Limit
	})
	return out
}

// XDRForCall returns the xDR of a finished call, while it is retained.
func (s *State) XDRForCall(callID string) (XDR, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	seq, ok := s.xdrByCall[callID]
	if !ok {
		return XDR{}, false
	}
	x, ok := s.xdrs.get(seq)
	if !ok {
		return XDR{}, false
	}
	return x.clone(), true
}

func live(bs []*Binding, now int64) []Binding {
	out := make([]Binding, 0, len(bs))
	for _, b := range bs {
		if b.ExpiresAt > now {
			out = append(out, b.clone())
		}
	}
	return out
}

func (s *State) setBindings(aor string, bs []*Binding) {
	s.nBindings += len(bs) - len(s.bindings[aor])
	if len(bs) == 0 {
		delete(s.bindings, aor)
		return
	}
	s.bindings[aor] = bs
}

// id is a record's key in its State map, and its order in snapshots.
func (a *Account) id() string    { return a.ID }
func (t *Tariff) id() string     { return t.ID }
func (a *Alias) id() string      { return a.IP }
func (c *Call) id() string       { return c.ID }
func (a *Assignment) id() string { return a.IP }

func (a *Account) clone() Account {
	c := *a
	c.FollowMe = slices.Clone(a.FollowMe)
	return c
}

func (t *Tariff) clone() Tariff {
	c := *t
	c.Rates = slices.Clone(t.Rates)
	return c
}

func (a *Alias) clone() Alias {
	c := *a
	c.Ports = AliasPorts{UDP: slices.Clone(a.Ports.UDP), TCP: slices.Clone(a.Ports.TCP), TLS: slices.Clone(a.Ports.TLS)}
	return c
}

func (c *Call) clone() Call {
	cp := *c
	cp.Parties = slices.Clone(c.Parties)
	cp.Charges = slices.Clone(c.Charges)
	cp.Legs = cloneLegs(c.Legs)
	cp.Redirects = cloneRedirects(c.Redirects)
	if c.VendorRate != nil {
		r := *c.VendorRate
		cp.VendorRate = &r
	}
	return cp
}

func cloneLegs(ls []Leg) []Leg {
	out := slices.Clone(ls)
	for i := range out {
		out[i].RouteSet = slices.Clone(ls[i].RouteSet)
	}
	return out
}

func cloneRedirects(rs []Redirect) []Redirect { return slices.Clone(rs) }

func (x *XDR) clone() XDR {
	cp := *x
	cp.Charges = slices.Clone(x.Charges)
	cp.Redirects = cloneRedirects(x.Redirects)
	return cp
}

// charges reports whether the xDR charges account.
func (x *XDR) charges(account string) bool {
	return slices.ContainsFunc(x.Charges, func(c XDRCharge) bool { return c.Account == account })
}

func (b *Binding) clone() Binding {
	c := *b
	c.Path = slices.Clone(b.Path)
	return c
}

// String gives a one-line summary, for logs.
func (c Counts) String() string {
	return fmt.Sprintf("accounts=%d tariffs=%d aliases=%d bindings=%d", c.Accounts, c.Tariffs, c.Aliases, c.Bindings)
}
