package admin

import (
	"github.com/troika-sip/troika/fsm"
)

// Vendors (docs/API.md): carriers that hand calls in.

// Vendor is a vendor as the API shows and accepts it. Password is
// write-only: answers leave it out and say whether one is set, but for the
// one answer to a POST with GeneratePassword, which holds the password
// generated. POST replaces the whole vendor, so send the password again
// (or generate a new one) when changing a vendor that has one.
type Vendor struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Username string `json:"username"` // SIP digest user name for its calls (optional)
	// Password is the digest password of Username, required with it; only
	// its digest credentials are stored.
	Password string `json:"password,omitempty"`
	// GeneratePassword asks the API to generate the password and return
	// it, once, in its answer.
	GeneratePassword bool `json:"generate_password,omitempty"`
	HasPassword      bool `json:"has_password"` // read-only
}

func (v *Vendor) toFSM() (fsm.Vendor, error) {
	out := fsm.Vendor{ID: v.ID, Name: v.Name, Username: v.Username, Credentials: fsm.Credentials{Legacy: v.Password}}
	return out, out.Validate()
}

func vendorFromFSM(v fsm.Vendor) Vendor {
	return Vendor{ID: v.ID, Name: v.Name, Username: v.Username, HasPassword: v.Credentials.Set()}
}

func (v *Vendor) passwordFields() passwordFields {
	return passwordFields{id: v.ID, username: v.Username, password: &v.Password, generate: v.GeneratePassword}
}

// vendors: a vendor's password (with a username only) passes the policy
// or is generated (createWithPassword).
var vendors = resource[Vendor, fsm.Vendor]{what: "vendor", key: "id", all: (*fsm.State).Vendors, one: (*fsm.State).Vendor,
	view: vendorFromFSM, in: (*Vendor).toFSM, put: func(v fsm.Vendor) fsm.Command { return &fsm.PutVendor{Vendor: v} },
	password: (*Vendor).passwordFields, del: func(id string) fsm.Command { return &fsm.DeleteVendor{ID: id} }}
