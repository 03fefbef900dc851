package admin

import (
	"net/http"
	"slices"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
)

// Vendor connections (docs/API.md): how a vendor's calls are
// recognised (source address, SIP user name), translated and costed; and a
// dry run of a connection's translation rules.

// Connection is a vendor connection as the API shows and accepts it.
type Connection struct {
	ID        string   `json:"id"`
	Vendor    string   `json:"vendor"`
	Kind      string   `json:"kind"`       // "from_vendor_sip" (the default)
	RemoteIPs []string `json:"remote_ips"` // addresses and CIDRs the vendor sends from
	Username  string   `json:"username"`   // digest user name; "": the vendor's
	// Password is the digest password of Username (write-only: only
	// its digest credentials are stored; answers leave it out, but for the
	// one answer to a POST with GeneratePassword, which holds the password
	// generated). It passes the password policy.
	Password         string      `json:"password,omitempty"`
	GeneratePassword bool        `json:"generate_password,omitempty"`
	HasPassword      bool        `json:"has_password"` // read-only
	Tariff           string      `json:"tariff"`       // the vendor's cost tariff
	Translation      Translation `json:"translation"`
}

// Translation holds a connection's number translation rules: Perl
// substitutions such as "s/^00/+/; s/^\+44/44/", applied in order.
type Translation struct {
	CLD string `json:"cld"` // rules for the called number
	CLI string `json:"cli"` // rules for the calling number
}

// TranslateRequest is the body of POST /v1/connections/{id}/translate:
// numbers as a vendor would send them. At least one is required.
type TranslateRequest struct {
	CLD string `json:"cld,omitempty"`
	CLI string `json:"cli,omitempty"`
}

// TranslateResult is what the connection's rules make of the numbers
// (those not sent stay empty), and the account the translated called
// number reaches: null when it is no account, and the call would be
// refused with 404.
type TranslateResult struct {
	CLD        string  `json:"cld"`
	CLI        string  `json:"cli"`
	CLDAccount *string `json:"cld_account"`
}

func (c *Connection) toFSM() (fsm.Connection, error) {
	out := fsm.Connection{
		ID: c.ID, Vendor: c.Vendor, Kind: c.Kind, RemoteIPs: slices.Clone(c.RemoteIPs), Username: c.Username, Tariff: c.Tariff,
		TranslationCLD: c.Translation.CLD, TranslationCLI: c.Translation.CLI,
		Credentials: fsm.Credentials{Legacy: c.Password}, // hashed by the node (fsm.SecureCommand)
	}
	if out.Kind == "" {
		out.Kind = fsm.ConnectionFromVendorSIP
	}
	return out, out.Validate()
}

func connectionFromFSM(c fsm.Connection) Connection {
	out := Connection{
		ID: c.ID, Vendor: c.Vendor, Kind: c.Kind, RemoteIPs: slices.Clone(c.RemoteIPs), Username: c.Username, Tariff: c.Tariff,
		Translation: Translation{CLD: c.TranslationCLD, CLI: c.TranslationCLI}, HasPassword: c.Credentials.Set(),
	}
	if out.RemoteIPs == nil {
		out.RemoteIPs = []string{}
	}
	return out
}

func (c *Connection) passwordFields() passwordFields {
	return passwordFields{id: c.ID, username: c.Username, password: &c.Password, generate: c.GeneratePassword}
}

// connections: a connection's password (with a username only) passes the
// policy or is generated (createWithPassword).
var connections = resource[Connection, fsm.Connection]{what: "connection", key: "id", all: (*fsm.State).Connections,
	one: (*fsm.State).Connection, view: connectionFromFSM, in: (*Connection).toFSM,
	put: func(c fsm.Connection) fsm.Command { return &fsm.PutConnection{Connection: c} }, password: (*Connection).passwordFields,
	del: func(id string) fsm.Command { return &fsm.DeleteConnection{ID: id} }}

// translate runs a connection's rules on the numbers in the body, as the
// switch would on a call from the vendor, and changes nothing. A rule that
// fails on the input (times out, makes too long a number) is a 422 naming
// the rule.
func (s *Server) translate(w http.ResponseWriter, r *http.Request) error {
	var in TranslateRequest
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.CLD == "" && in.CLI == "" {
		return badRequest("cld", "give a called number (cld), a calling number (cli) or both")
	}
	for _, f := range []struct{ name, v string }{{"cld", in.CLD}, {"cli", in.CLI}} {
		if len(f.v) > billing.MaxNumberLength || !printableText(f.v) {
			return badRequest(f.name, "must be at most %d printable characters", billing.MaxNumberLength)
		}
	}
	c, ok := s.state.Connection(r.PathValue("id"))
	if !ok {
		return notFound("connection", r.PathValue("id"))
	}
	var out TranslateResult
	var err error
	if out.CLD, err = applyRules("translation.cld", c.TranslationCLD, in.CLD); err != nil {
		return err
	}
	if out.CLI, err = applyRules("translation.cli", c.TranslationCLI, in.CLI); err != nil {
		return err
	}
	if out.CLD != "" {
		if a, ok := s.state.Account(out.CLD); ok {
			out.CLDAccount = &a.ID
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// applyRules translates number ("" stays "") by the rule set src, stored
// under field.
func applyRules(field, src, number string) (string, error) {
	if number == "" {
		return "", nil
	}
	rules, err := billing.ParseRules(src)
	if err == nil {
		number, err = rules.Apply(number)
	}
	if err != nil {
		return "", &httpError{status: http.StatusUnprocessableEntity, body: Error{Field: field, Error: fieldMsg(field, err.Error())}}
	}
	return number, nil
}
