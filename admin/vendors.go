package admin

import (
	"net/http"

	"github.com/troika-sip/troika/fsm"
)

// Vendors (DESIGN.md §1.3, §7): carriers that hand calls in.

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
	out := fsm.Vendor{ID: v.ID, Name: v.Name, Username: v.Username, Password: v.Password}
	return out, out.Validate()
}

func vendorFromFSM(v fsm.Vendor) Vendor {
	return Vendor{ID: v.ID, Name: v.Name, Username: v.Username, HasPassword: v.Password != ""}
}

func (s *Server) listVendors(w http.ResponseWriter, r *http.Request) error {
	out := []Vendor{}
	for _, v := range s.state.Vendors() {
		out = append(out, vendorFromFSM(v))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getVendor(w http.ResponseWriter, r *http.Request) error {
	v, ok := s.state.Vendor(r.PathValue("id"))
	if !ok {
		return notFound("vendor", r.PathValue("id"))
	}
	writeJSON(w, http.StatusOK, vendorFromFSM(v))
	return nil
}

func (s *Server) putVendor(w http.ResponseWriter, r *http.Request) error {
	var in Vendor
	if err := decode(r, &in); err != nil {
		return err
	}
	v, err := in.toFSM()
	if err != nil {
		return invalid(err)
	}
	if _, err := s.propose(r, &fsm.PutVendor{Vendor: v}); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, vendorFromFSM(v))
	return nil
}

func (s *Server) deleteVendor(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.propose(r, &fsm.DeleteVendor{ID: r.PathValue("id")}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
