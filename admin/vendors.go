package admin

import "github.com/troika-sip/troika/fsm"

// Vendors (docs/API.md): carriers that hand calls in.

// Vendor is a vendor as the API shows and accepts it. Password is
// write-only: answers leave it out and say whether one is set. POST
// replaces the whole vendor, so send the password again when changing a
// vendor that has one.
type Vendor struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Username    string `json:"username"` // SIP digest user name for its calls (optional)
	Password    string `json:"password,omitempty"`
	HasPassword bool   `json:"has_password"` // read-only
}

func (v *Vendor) toFSM() (fsm.Vendor, error) {
	out := fsm.Vendor{ID: v.ID, Name: v.Name, Username: v.Username, Credentials: fsm.Credentials{Legacy: v.Password}}
	return out, out.Validate()
}

func vendorFromFSM(v fsm.Vendor) Vendor {
	return Vendor{ID: v.ID, Name: v.Name, Username: v.Username, HasPassword: v.Credentials.Set()}
}

var vendors = resource[Vendor, fsm.Vendor]{what: "vendor", key: "id", all: (*fsm.State).Vendors, one: (*fsm.State).Vendor,
	view: vendorFromFSM, in: (*Vendor).toFSM, put: func(v fsm.Vendor) fsm.Command { return &fsm.PutVendor{Vendor: v} },
	del: func(id string) fsm.Command { return &fsm.DeleteVendor{ID: id} }}
