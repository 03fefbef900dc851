package fsm

// Commands and records of builds that stored clear passwords (command
// types 0x01, 0x02, 0x0b, 0x13, 0x15; snapshot format 1). Their logs and
// snapshots still replay: each decodes into its old layout and applies as
// the current command would, keeping the password as Credentials.Legacy
// until the leader replaces it with HA1 values (SecureCredentials). A
// current build proposes them only while a voter cannot apply the new
// types (a rolling upgrade).

// accountV1 is Account as version 1 stored it.
type accountV1 struct {
	ID            string
	Password      string
	Billing       string
	Balance       int64
	CreditLimit   int64
	TariffOut     string
	TariffIn      string
	ServicePolicy string
	MaxCalls      int
	Incoming      Incoming
	FollowMe      []FollowMeTarget
	Blocked       bool
	MaxContacts   int
	CreatedAt     int64
}

func (a *accountV1) current() Account {
	return Account{ID: a.ID, Credentials: Credentials{Legacy: a.Password}, Billing: a.Billing, Balance: a.Balance,
		CreditLimit: a.CreditLimit, TariffOut: a.TariffOut, TariffIn: a.TariffIn, ServicePolicy: a.ServicePolicy,
		MaxCalls: a.MaxCalls, Incoming: a.Incoming, FollowMe: a.FollowMe, Blocked: a.Blocked,
		MaxContacts: a.MaxContacts, CreatedAt: a.CreatedAt}
}

// accountV1From is a's version 1 layout: a current build proposes it
// while a voter cannot apply the current types.
func accountV1From(a Account) accountV1 {
	return accountV1{ID: a.ID, Password: a.Credentials.Legacy, Billing: a.Billing, Balance: a.Balance,
		CreditLimit: a.CreditLimit, TariffOut: a.TariffOut, TariffIn: a.TariffIn, ServicePolicy: a.ServicePolicy,
		MaxCalls: a.MaxCalls, Incoming: a.Incoming, FollowMe: a.FollowMe, Blocked: a.Blocked,
		MaxContacts: a.MaxContacts, CreatedAt: a.CreatedAt}
}

// CreateAccountV1 is CreateAccount with a clear password (type 0x01).
type CreateAccountV1 struct {
	Account accountV1
	Now     int64
}

func (*CreateAccountV1) Type() Type { return TypeCreateAccountV1 }

func (c *CreateAccountV1) apply(s *State) Result {
	if err := legacyValid("password", c.Account.Password, true); err != nil {
		return refuseInvalid(err)
	}
	return s.createAccount(c.Account.current(), c.Now)
}

// CreateAccountsV1 is CreateAccounts with clear passwords (type 0x0b).
type CreateAccountsV1 struct {
	Accounts []accountV1
	Now      int64
}

func (*CreateAccountsV1) Type() Type { return TypeCreateAccountsV1 }

func (c *CreateAccountsV1) apply(s *State) Result {
	accts := make([]Account, len(c.Accounts))
	for i := range c.Accounts {
		if err := legacyValid("password", c.Accounts[i].Password, true); err != nil {
			r := refuseInvalid(err)
			r.Err.Field = fieldName("accounts", i, r.Err.Field)
			return r
		}
		accts[i] = c.Accounts[i].current()
	}
	return s.createAccounts(accts, c.Now)
}

// accountPatchV1 is AccountPatch as version 1 had it.
type accountPatchV1 struct {
	Password      *string
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

// UpdateAccountV1 is UpdateAccount with a clear password (type 0x02).
type UpdateAccountV1 struct {
	ID    string
	Patch accountPatchV1
}

func (*UpdateAccountV1) Type() Type { return TypeUpdateAccountV1 }

func (c *UpdateAccountV1) apply(s *State) Result {
	p := c.Patch
	cur := AccountPatch{Billing: p.Billing, CreditLimit: p.CreditLimit, TariffOut: p.TariffOut, TariffIn: p.TariffIn,
		ServicePolicy: p.ServicePolicy, MaxCalls: p.MaxCalls, Incoming: p.Incoming, FollowMe: p.FollowMe,
		Blocked: p.Blocked, MaxContacts: p.MaxContacts}
	if p.Password != nil {
		if err := legacyValid("password", *p.Password, true); err != nil {
			return refuseInvalid(err)
		}
		cur.Credentials = &Credentials{Legacy: *p.Password}
	}
	return s.updateAccount(c.ID, cur)
}

// vendorV1 is Vendor as version 1 stored it.
type vendorV1 struct {
	ID       string
	Name     string
	Username string
	Password string
}

func (v *vendorV1) current() Vendor {
	return Vendor{ID: v.ID, Name: v.Name, Username: v.Username, Credentials: Credentials{Legacy: v.Password}}
}

// PutVendorV1 is PutVendor with a clear password (type 0x13). As in
// version 1, a connection with its own user name authenticates with its
// vendor's password: it takes the new one.
type PutVendorV1 struct {
	Vendor vendorV1
}

func (*PutVendorV1) Type() Type { return TypePutVendorV1 }

func (c *PutVendorV1) apply(s *State) Result {
	if err := legacyValid("password", c.Vendor.Password, c.Vendor.Username != ""); err != nil {
		return refuseInvalid(err)
	}
	r := s.putVendor(c.Vendor.current())
	if r.Err == nil {
		for id, cn := range s.connections {
			if cn.Vendor == c.Vendor.ID && cn.Username != "" && len(cn.Credentials.MD5) == 0 {
				cp := cn.clone()
				cp.Credentials = Credentials{Legacy: c.Vendor.Password}
				s.connections[id] = &cp
			}
		}
	}
	return r
}

// connectionV1 is Connection as version 1 stored it: a user name of its
// own authenticated with the vendor's password.
type connectionV1 struct {
	ID             string
	Vendor         string
	Kind           string
	RemoteIPs      []string
	Username       string
	Tariff         string
	TranslationCLD string
	TranslationCLI string
}

func (c *connectionV1) current(vendorPassword string) Connection {
	cn := Connection{ID: c.ID, Vendor: c.Vendor, Kind: c.Kind, RemoteIPs: c.RemoteIPs, Username: c.Username,
		Tariff: c.Tariff, TranslationCLD: c.TranslationCLD, TranslationCLI: c.TranslationCLI}
	if c.Username != "" {
		cn.Credentials = Credentials{Legacy: vendorPassword}
	}
	return cn
}

// PutConnectionV1 is PutConnection without credentials of its own (type
// 0x15): its user name takes its vendor's password.
type PutConnectionV1 struct {
	Connection connectionV1
}

func (*PutConnectionV1) Type() Type { return TypePutConnectionV1 }

func (c *PutConnectionV1) apply(s *State) Result {
	password := ""
	if v, ok := s.vendors[c.Connection.Vendor]; ok {
		password = v.Credentials.Legacy
		if c.Connection.Username != "" && password == "" {
			return refuse(CodeInvalid, "username", "vendor %s has no clear password for this connection's user name: "+
				"give the connection a password of its own", v.ID)
		}
	}
	return s.putConnection(c.Connection.current(password))
}

// Snapshot records of format 1.

func restoreAccountV1(r *restore, a *accountV1) error {
	cur := a.current()
	r.s.internAccount(&cur)
	return store(r.s.accounts, &cur, &r.got.Accounts)
}

func restoreVendorV1(r *restore, v *vendorV1) error {
	cur := v.current()
	return store(r.s.vendors, &cur, &r.got.Vendors)
}

// restoreConnectionV1 gives a connection with a user name its vendor's
// password (vendors come before connections in a snapshot).
func restoreConnectionV1(r *restore, c *connectionV1) error {
	password := ""
	if v, ok := r.s.vendors[c.Vendor]; ok {
		password = v.Credentials.Legacy
	}
	cur := c.current(password)
	return store(r.s.connections, &cur, &r.got.Connections)
}
