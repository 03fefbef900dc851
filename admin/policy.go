package admin

import (
	"net/http"
	"slices"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
)

// Service policies (DESIGN.md §1.1, §7): how 3xx redirects of an account's
// incoming calls are followed.

// ServicePolicy is a service policy as the API shows and accepts it.
type ServicePolicy struct {
	ID       string         `json:"id"`
	Redirect RedirectPolicy `json:"redirect"`
}

// RedirectPolicy says which redirect targets are followed and how.
type RedirectPolicy struct {
	// TrustedNetworks are IPv4/IPv6 addresses, CIDRs and domain names whose
	// targets are called directly, with no new authorization.
	TrustedNetworks []string `json:"trusted_networks"`
	// UntrustedAction is "new_call_authorization" or "reject".
	UntrustedAction string `json:"untrusted_action"`
	// MaxRedirects bounds the hops; 0 or absent means the default (3).
	// Answers show the value in effect.
	MaxRedirects int `json:"max_redirects"`
}

func (p *ServicePolicy) toFSM() (fsm.ServicePolicy, error) {
	out := fsm.ServicePolicy{ID: p.ID, Redirect: fsm.RedirectPolicy{
		TrustedNetworks: slices.Clone(p.Redirect.TrustedNetworks),
		UntrustedAction: p.Redirect.UntrustedAction,
		MaxRedirects:    p.Redirect.MaxRedirects,
	}}
	return out, out.Validate()
}

func servicePolicyFromFSM(p fsm.ServicePolicy) ServicePolicy {
	out := ServicePolicy{ID: p.ID, Redirect: RedirectPolicy{
		TrustedNetworks: slices.Clone(p.Redirect.TrustedNetworks),
		UntrustedAction: p.Redirect.UntrustedAction,
		MaxRedirects:    p.Redirect.MaxRedirects,
	}}
	if out.Redirect.TrustedNetworks == nil {
		out.Redirect.TrustedNetworks = []string{}
	}
	if out.Redirect.MaxRedirects == 0 {
		out.Redirect.MaxRedirects = billing.DefaultMaxRedirects
	}
	return out
}

func (s *Server) listServicePolicies(w http.ResponseWriter, r *http.Request) error {
	out := []ServicePolicy{}
	for _, p := range s.state.ServicePolicies() {
		out = append(out, servicePolicyFromFSM(p))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getServicePolicy(w http.ResponseWriter, r *http.Request) error {
	p, ok := s.state.ServicePolicy(r.PathValue("id"))
	if !ok {
		return notFound("service policy", r.PathValue("id"))
	}
	writeJSON(w, http.StatusOK, servicePolicyFromFSM(p))
	return nil
}

func (s *Server) putServicePolicy(w http.ResponseWriter, r *http.Request) error {
	var in ServicePolicy
	if err := decode(r, &in); err != nil {
		return err
	}
	p, err := in.toFSM()
	if err != nil {
		return invalid(err)
	}
	if _, err := s.propose(r, &fsm.PutServicePolicy{Policy: p}); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, servicePolicyFromFSM(p))
	return nil
}

func (s *Server) deleteServicePolicy(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.propose(r, &fsm.DeleteServicePolicy{ID: r.PathValue("id")}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
