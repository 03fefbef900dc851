package admin

import (
	"slices"

	"github.com/troika-sip/troika/billing"
	"github.com/troika-sip/troika/fsm"
)

// Service policies (docs/API.md): how 3xx redirects of an account's
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

var servicePolicies = resource[ServicePolicy, fsm.ServicePolicy]{what: "service policy", key: "id", all: (*fsm.State).ServicePolicies,
	one: (*fsm.State).ServicePolicy, view: servicePolicyFromFSM, in: (*ServicePolicy).toFSM,
	put: func(p fsm.ServicePolicy) fsm.Command { return &fsm.PutServicePolicy{Policy: p} },
	del: func(id string) fsm.Command { return &fsm.DeleteServicePolicy{ID: id} }}
