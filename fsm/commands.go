package fsm

import (
	"fmt"
	"reflect"
	"slices"
)

// CreateAccount adds an account. Applying the same command again succeeds
// without change (a retried write); a different account with the same id
// is refused.
type CreateAccount struct {
	Account Account
	Now     int64 // unix ms, stamped by the proposer
}

func (*CreateAccount) Type() Type { return TypeCreateAccount }

func (c *CreateAccount) apply(s *State) Result {
	if err := c.Account.Credentials.validate("password", true); err != nil {
		return refuseInvalid(err)
	}
	return s.createAccount(c.Account, c.Now)
}

func (s *State) createAccount(acct Account, now int64) Result {
	a := acct.clone()
	a.CreatedAt = now
	if err := a.Validate(); err != nil {
		return refuseInvalid(err)
	}
	if old, ok := s.accounts[a.ID]; ok {
		if sameAccount(old, &a) {
			return accountResult(old)
		}
		return refuse(CodeExists, "id", "account %s already exists", a.ID)
	}
	if r := s.checkAccountRefs(&a); r.Err != nil {
		return r
	}
	s.internAccount(&a)
	s.accounts[a.ID] = &a
	return accountResult(&a)
}

func accountResult(a *Account) Result {
	c := a.clone()
	return Result{Account: &c}
}

// CreateAccounts adds many accounts at once, all or none: a bulk import.
// Accounts identical to existing ones are accepted unchanged, so a retried
// or re-run import succeeds.
type CreateAccounts struct {
	Accounts []Account
	Now      int64
}

func (*CreateAccounts) Type() Type { return TypeCreateAccounts }

func (c *CreateAccounts) apply(s *State) Result {
	for i := range c.Accounts {
		if err := c.Accounts[i].Credentials.validate("password", true); err != nil {
			r := refuseInvalid(err)
			r.Err.Field = fieldName("accounts", i, r.Err.Field)
			return r
		}
	}
	return s.createAccounts(c.Accounts, c.Now)
}

// fieldName names field of item i of list: "accounts[3].password".
func fieldName(list string, i int, field string) string {
	return fmt.Sprintf("%s[%d].%s", list, i, field)
}

func (s *State) createAccounts(accts []Account, now int64) Result {
	fresh := make([]*Account, 0, len(accts))
	ids := make(map[string]bool, len(accts))
	for i := range accts {
		a := accts[i].clone()
		a.CreatedAt = now
		field := func(f string) string { return fieldName("accounts", i, f) }
		if err := a.Validate(); err != nil {
			r := refuseInvalid(err)
			r.Err.Field = field(r.Err.Field)
			return r
		}
		if ids[a.ID] {
			return refuse(CodeInvalid, field("id"), "account %s is listed twice", a.ID)
		}
		ids[a.ID] = true
		if old, ok := s.accounts[a.ID]; ok {
			if sameAccount(old, &a) {
				continue
			}
			return refuse(CodeExists, field("id"), "account %s already exists", a.ID)
		}
		if r := s.checkAccountRefs(&a); r.Err != nil {
			r.Err.Field = field(r.Err.Field)
			return r
		}
		fresh = append(fresh, &a)
	}
	for _, a := range fresh {
		s.internAccount(a)
		s.accounts[a.ID] = a
	}
	return Result{}
}

func sameAccount(a, b *Account) bool {
	x, y := a.clone(), b.clone()
	if len(x.FollowMe) == 0 && len(y.FollowMe) == 0 {
		x.FollowMe, y.FollowMe = nil, nil
	}
	return reflect.DeepEqual(x, y)
}

func (s *State) checkAccountRefs(a *Account) Result {
	if owner := s.usernameOwner(a.ID); owner != "" && owner != "account "+a.ID {
		return refuse(CodeConflict, "id", "%s is already the SIP user name of %s", a.ID, owner)
	}
	if a.ServicePolicy != "" {
		if _, ok := s.policies[a.ServicePolicy]; !ok {
			return refuse(CodeInvalid, "service_policy", "no service policy %s", a.ServicePolicy)
		}
	}
	if a.TariffOut != "" {
		if _, ok := s.tariffs[a.TariffOut]; !ok {
			return refuse(CodeInvalid, "tariff_out", "no tariff %s", a.TariffOut)
		}
	}
	if a.TariffIn != "" {
		if _, ok := s.tariffs[a.TariffIn]; !ok {
			return refuse(CodeInvalid, "tariff_in", "no tariff %s", a.TariffIn)
		}
	}
	return Result{}
}

// AccountPatch lists the account fields an update changes; nil leaves a
// field as it is. The balance is not here: money moves only through
// commands that record why.
type AccountPatch struct {
	Credentials   *Credentials
	DisplayName   *string
	Billing       *string
	CreditLimit   *int64
	TariffOut     *string
	TariffIn      *string
	ServicePolicy *string
	MaxCalls      *int
	Incoming      *Incoming
	FollowMe      *[]FollowMeTarget
	Blocked       *bool
	MaxContacts   *int
}

// UpdateAccount changes some fields of an account. It is idempotent.
type UpdateAccount struct {
	ID    string
	Patch AccountPatch
}

func (*UpdateAccount) Type() Type { return TypeUpdateAccount }

func (c *UpdateAccount) apply(s *State) Result {
	if c.Patch.Credentials != nil {
		if err := c.Patch.Credentials.validate("password", true); err != nil {
			return refuseInvalid(err)
		}
	}
	return s.updateAccount(c.ID, c.Patch)
}

func (s *State) updateAccount(id string, p AccountPatch) Result {
	old, ok := s.accounts[id]
	if !ok {
		return refuse(CodeNotFound, "id", "no account %s", id)
	}
	a := old.clone()
	setIf(&a.Credentials, p.Credentials)
	setIf(&a.DisplayName, p.DisplayName)
	setIf(&a.Billing, p.Billing)
	setIf(&a.CreditLimit, p.CreditLimit)
	setIf(&a.TariffOut, p.TariffOut)
	setIf(&a.TariffIn, p.TariffIn)
	setIf(&a.ServicePolicy, p.ServicePolicy)
	setIf(&a.MaxCalls, p.MaxCalls)
	setIf(&a.Incoming, p.Incoming)
	setIf(&a.Blocked, p.Blocked)
	setIf(&a.MaxContacts, p.MaxContacts)
	if p.FollowMe != nil {
		a.FollowMe = slices.Clone(*p.FollowMe)
	}
	if err := a.Validate(); err != nil {
		return refuseInvalid(err)
	}
	if r := s.checkAccountRefs(&a); r.Err != nil {
		return r
	}
	s.internAccount(&a)
	s.accounts[a.ID] = &a
	return accountResult(&a)
}

func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// DeleteAccount removes an account and its registrations.
type DeleteAccount struct {
	ID string
}

func (*DeleteAccount) Type() Type { return TypeDeleteAccount }

func (c *DeleteAccount) apply(s *State) Result {
	return remove(s.accounts, "id", "account", c.ID, nil, func() { s.setBindings(c.ID, nil) })
}

// PutTariff creates or replaces a tariff.
type PutTariff struct {
	Tariff Tariff
}

func (*PutTariff) Type() Type { return TypePutTariff }

func (c *PutTariff) apply(s *State) Result { return put(s.tariffs, c.Tariff.clone()) }

// put validates r and stores it under its id, replacing the record there:
// the whole of a create-or-replace command whose record refers to nothing.
func put[T any, P interface {
	*T
	Validate() error
	id() string
}](m map[string]*T, r T) Result {
	if err := P(&r).Validate(); err != nil {
		return refuseInvalid(err)
	}
	m[P(&r).id()] = &r
	return Result{}
}

// DeleteTariff removes a tariff no account uses.
type DeleteTariff struct {
	ID string
}

func (*DeleteTariff) Type() Type { return TypeDeleteTariff }

func (c *DeleteTariff) apply(s *State) Result {
	return remove(s.tariffs, "id", "tariff", c.ID, func() Result {
		if users := s.accountsWhere(func(a *Account) bool { return a.TariffIn == c.ID || a.TariffOut == c.ID }); len(users) > 0 {
			return refuse(CodeConflict, "id", "tariff %s is used by accounts %v: change them first", c.ID, users)
		}
		for _, cn := range s.connections {
			if cn.Tariff == c.ID {
				return refuse(CodeConflict, "id", "tariff %s is the cost tariff of connection %s: change it first", c.ID, cn.ID)
			}
		}
		return Result{}
	}, nil)
}

// remove is the whole of a delete command: not found when m has no key
// (a record called what, the key under field), refused with what inUse
// refuses with (nil: nothing can refer to the record), else deleted and
// then removed called (nil: nothing else changes).
func remove[T any](m map[string]T, field, what, key string, inUse func() Result, removed func()) Result {
	if _, ok := m[key]; !ok {
		return refuse(CodeNotFound, field, "no %s %s", what, key)
	}
	if inUse != nil {
		if r := inUse(); r.Err != nil {
			return r
		}
	}
	delete(m, key)
	if removed != nil {
		removed()
	}
	return Result{}
}

// PutAlias creates or replaces an IP alias.
type PutAlias struct {
	Alias Alias
}

func (*PutAlias) Type() Type { return TypePutAlias }

func (c *PutAlias) apply(s *State) Result {
	if r := put(s.aliases, c.Alias.clone()); r.Err != nil {
		return r
	}
	s.aliasesChanged()
	return Result{}
}

// DeleteAlias removes an IP alias.
type DeleteAlias struct {
	IP string
}

func (*DeleteAlias) Type() Type { return TypeDeleteAlias }

func (c *DeleteAlias) apply(s *State) Result {
	return remove(s.aliases, "ip", "alias", c.IP, nil, s.aliasesChanged)
}

// InitNonceSecret stores the cluster's digest-nonce secret. Only the first
// one applied takes effect, so every leader may propose one at start.
type InitNonceSecret struct {
	Secret []byte
}

func (*InitNonceSecret) Type() Type { return TypeInitNonceSecret }

func (c *InitNonceSecret) apply(s *State) Result {
	if len(c.Secret) < 16 {
		return refuse(CodeInvalid, "secret", "must be at least 16 bytes")
	}
	if s.nonceSecret == nil {
		s.nonceSecret = slices.Clone(c.Secret)
	}
	return Result{}
}

// PurgeExpired removes bindings expired at Now. The leader proposes it
// periodically; reads already hide expired bindings.
type PurgeExpired struct {
	Now int64
}

func (*PurgeExpired) Type() Type { return TypePurgeExpired }

func (c *PurgeExpired) apply(s *State) Result {
	purged := 0
	for aor, bs := range s.bindings {
		keep := bs[:0:0]
		for _, b := range bs {
			if b.ExpiresAt > c.Now {
				keep = append(keep, b)
			}
		}
		if len(keep) != len(bs) {
			purged += len(bs) - len(keep)
			s.setBindings(aor, keep)
		}
	}
	return Result{Purged: purged}
}
