package fsm

import "fmt"

// Proposing credentials. The admin API hands over a password as
// Credentials.Legacy, the only place a clear password travels inside a
// node; before a command enters the log, the node either hashes it
// (SecureCommand) or, while a voter still runs a build that stores clear
// passwords, turns the command into that build's version (LegacyCommand).
// The current commands refuse a Legacy value, so nothing else can store
// one.

// SecureCommand returns cmd with every clear password it carries replaced
// by its credentials for realm (the user name being the account id, the
// vendor's or the connection's user name). Other commands are returned as
// they are.
func SecureCommand(cmd Command, realm string) Command {
	secure := func(c *Credentials, user string) {
		if c.Legacy != "" && len(c.MD5) == 0 {
			*c = HashCredentials(user, realm, c.Legacy)
		}
	}
	switch c := cmd.(type) {
	case *CreateAccount:
		cp := *c
		cp.Account = c.Account.clone()
		secure(&cp.Account.Credentials, cp.Account.ID)
		return &cp
	case *CreateAccounts:
		cp := *c
		cp.Accounts = make([]Account, len(c.Accounts))
		for i := range c.Accounts {
			cp.Accounts[i] = c.Accounts[i].clone()
			secure(&cp.Accounts[i].Credentials, cp.Accounts[i].ID)
		}
		return &cp
	case *UpdateAccount:
		cp := *c
		if c.Patch.Credentials != nil {
			creds := c.Patch.Credentials.clone()
			secure(&creds, c.ID)
			cp.Patch.Credentials = &creds
		}
		return &cp
	case *PutVendor:
		cp := *c
		cp.Vendor = c.Vendor.clone()
		if cp.Vendor.Username == "" {
			cp.Vendor.Credentials = Credentials{} // nothing authenticates with it
		}
		secure(&cp.Vendor.Credentials, cp.Vendor.Username)
		return &cp
	case *PutConnection:
		cp := *c
		cp.Connection = c.Connection.clone()
		if cp.Connection.Username == "" {
			cp.Connection.Credentials = Credentials{}
		}
		secure(&cp.Connection.Credentials, cp.Connection.Username)
		return &cp
	}
	return cmd
}

// LegacyCommand returns cmd as the build before credentials understood it,
// for a cluster with a voter that runs it: the commands with credentials
// go back to their version 1 types, with clear passwords. It fails for a
// command that build has no version of, or credentials that are already
// hashed (their password is not known). Other commands are returned as
// they are.
func LegacyCommand(cmd Command) (Command, error) {
	tooNew := func(what string) error {
		return fmt.Errorf("%s: a node of the cluster runs an older version that cannot store it; finish the rolling upgrade first", what)
	}
	clear := func(c Credentials) (string, error) {
		if len(c.MD5) > 0 {
			return "", tooNew("hashed credentials")
		}
		return c.Legacy, nil
	}
	switch c := cmd.(type) {
	case *CreateAccount:
		if c.Account.DisplayName != "" {
			return nil, tooNew("display_name")
		}
		pw, err := clear(c.Account.Credentials)
		if err != nil {
			return nil, err
		}
		a := accountV1From(c.Account)
		a.Password = pw
		return &CreateAccountV1{Account: a, Now: c.Now}, nil
	case *CreateAccounts:
		out := &CreateAccountsV1{Now: c.Now, Accounts: make([]accountV1, len(c.Accounts))}
		for i, a := range c.Accounts {
			if a.DisplayName != "" {
				return nil, tooNew("display_name")
			}
			pw, err := clear(a.Credentials)
			if err != nil {
				return nil, err
			}
			out.Accounts[i] = accountV1From(a)
			out.Accounts[i].Password = pw
		}
		return out, nil
	case *UpdateAccount:
		p := c.Patch
		if p.DisplayName != nil {
			return nil, tooNew("display_name")
		}
		out := &UpdateAccountV1{ID: c.ID, Patch: accountPatchV1{Billing: p.Billing, CreditLimit: p.CreditLimit,
			TariffOut: p.TariffOut, TariffIn: p.TariffIn, ServicePolicy: p.ServicePolicy, MaxCalls: p.MaxCalls,
			Incoming: p.Incoming, FollowMe: p.FollowMe, Blocked: p.Blocked, MaxContacts: p.MaxContacts}}
		if p.Credentials != nil {
			pw, err := clear(*p.Credentials)
			if err != nil {
				return nil, err
			}
			out.Patch.Password = &pw
		}
		return out, nil
	case *PutVendor:
		pw, err := clear(c.Vendor.Credentials)
		if err != nil {
			return nil, err
		}
		return &PutVendorV1{Vendor: vendorV1{ID: c.Vendor.ID, Name: c.Vendor.Name, Username: c.Vendor.Username, Password: pw}}, nil
	case *PutConnection:
		if c.Connection.Credentials.Set() {
			return nil, tooNew("a connection's own password")
		}
		cn := c.Connection
		return &PutConnectionV1{Connection: connectionV1{ID: cn.ID, Vendor: cn.Vendor, Kind: cn.Kind, RemoteIPs: cn.RemoteIPs,
			Username: cn.Username, Tariff: cn.Tariff, TranslationCLD: cn.TranslationCLD, TranslationCLI: cn.TranslationCLI}}, nil
	case *Topup:
		v1 := TopupV1(*c)
		return &v1, nil
	case *InitRealm, *SecureCredentials:
		return nil, tooNew(fmt.Sprintf("%T", cmd))
	}
	return cmd, nil
}
