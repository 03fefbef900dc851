package fsm

// Interning. A million accounts name a handful of tariffs and billing
// modes, and their phones a handful of transports, ingress sockets and
// user agents; decoded from a command or a snapshot, each record has its
// own copy of each. Records stored in the state share one copy instead
// (the values are the same; only memory changes).

// maxInterned bounds the interned strings of a State: values a phone
// chooses (its User-Agent) must not grow the table without end; past the
// bound a value is kept as it came.
const maxInterned = 1 << 14

// intern returns the state's copy of v.
func (s *State) intern(v string) string {
	if v == "" {
		return v
	}
	if c, ok := s.strs[v]; ok {
		return c
	}
	if len(s.strs) >= maxInterned {
		return v
	}
	s.strs[v] = v
	return v
}

// internBinding makes b share its AOR with its account's id and its
// transport, ingress and user agent with other records.
func (s *State) internBinding(b *Binding) {
	if a, ok := s.accounts[b.AOR]; ok {
		b.AOR = a.ID
	}
	b.Transport = s.intern(b.Transport)
	b.Ingress = s.intern(b.Ingress)
	b.UserAgent = s.intern(b.UserAgent)
}

// internAccount makes a share its billing mode, tariffs, policy and
// delivery mode with other records.
func (s *State) internAccount(a *Account) {
	a.Billing = s.intern(a.Billing)
	a.TariffOut = s.intern(a.TariffOut)
	a.TariffIn = s.intern(a.TariffIn)
	a.ServicePolicy = s.intern(a.ServicePolicy)
	a.Incoming.Mode = s.intern(a.Incoming.Mode)
	a.Incoming.Transport = s.intern(a.Incoming.Transport)
}
