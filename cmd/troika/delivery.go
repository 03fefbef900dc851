package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
)

// deliveryFlags are the flags of `account create` and `account update` for
// where an account's incoming calls go: registered phones or a static SIP
// contact (such as a redirect server), then the follow-me targets.
type deliveryFlags struct {
	static     string
	registered bool
	followMe   []string
}

func (d *deliveryFlags) add(cmd *cobra.Command, update bool) {
	f := cmd.Flags()
	f.StringVar(&d.static, "incoming-static", "", "deliver incoming calls to this SIP contact, [udp|tcp|tls:]HOST[:PORT], e.g. udp:55.55.5.6:5060 (default transport udp, port 5060, 5061 for tls)")
	f.BoolVar(&d.registered, "incoming-registered", false, "deliver incoming calls to the account's registered phones (the default)")
	fmHelp := "follow-me target TARGET:TIMEOUT_S, tried in order when the phones do not take a call, e.g. 1002:20 or sip:desk@pbx.example.com:30 (repeatable)"
	if update {
		fmHelp += `; replaces the list, --follow-me "" clears it`
	}
	f.StringArrayVar(&d.followMe, "follow-me", nil, fmHelp)
	cmd.MarkFlagsMutuallyExclusive("incoming-static", "incoming-registered")
}

// incoming returns the delivery the flags ask for, or nil if they name none.
func (d *deliveryFlags) incoming(cmd *cobra.Command) (*admin.Incoming, error) {
	fl := cmd.Flags()
	switch {
	case fl.Changed("incoming-static"):
		in, err := parseStaticContact(d.static)
		if err != nil {
			return nil, fmt.Errorf("--incoming-static %q: %w", d.static, err)
		}
		return &in, nil
	case fl.Changed("incoming-registered"):
		if !d.registered {
			return nil, errors.New("--incoming-registered=false: to deliver to a static contact use --incoming-static")
		}
		return &admin.Incoming{Mode: "registered"}, nil
	}
	return nil, nil
}

// followMeList returns the follow-me list the flags give (empty for a single
// --follow-me ""), or nil if --follow-me was not given.
func (d *deliveryFlags) followMeList(cmd *cobra.Command) (*[]admin.FollowMeTarget, error) {
	if !cmd.Flags().Changed("follow-me") {
		return nil, nil
	}
	out := []admin.FollowMeTarget{} // not nil: an empty list clears
	if len(d.followMe) == 1 && d.followMe[0] == "" {
		return &out, nil
	}
	for _, spec := range d.followMe {
		t, err := parseFollowMe(spec)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return &out, nil
}

// parseStaticContact reads [transport:]host[:port].
func parseStaticContact(s string) (admin.Incoming, error) {
	in := admin.Incoming{Mode: "static", Transport: "udp"}
	rest := strings.TrimSpace(s)
	if t, r, ok := strings.Cut(rest, ":"); ok {
		switch strings.ToLower(t) {
		case "udp", "tcp", "tls":
			in.Transport, rest = strings.ToLower(t), r
		case "sip", "sips":
			return in, errors.New("write transport:host:port, e.g. udp:55.55.5.6:5060, not a SIP URI")
		}
	}
	port := ""
	if h, p, err := net.SplitHostPort(rest); err == nil {
		rest, port = h, p
	} else if strings.Contains(rest, ":") { // only an IPv6 address without a port
		a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(rest, "["), "]"))
		if err != nil || a.Zone() != "" {
			return in, errors.New("write [udp|tcp|tls:]HOST[:PORT], e.g. udp:55.55.5.6:5060 or tcp:[2001:db8::1]:5060")
		}
		rest = a.String()
	}
	if rest == "" {
		return in, errors.New("no host: write [udp|tcp|tls:]HOST[:PORT], e.g. udp:55.55.5.6:5060")
	}
	in.Host = rest
	switch {
	case port != "":
		n, err := strconv.Atoi(port)
		if err != nil {
			return in, fmt.Errorf("port %q is not a number", port)
		}
		in.Port = n
	case in.Transport == "tls":
		in.Port = 5061
	default:
		in.Port = 5060
	}
	return in, nil
}

// parseFollowMe reads TARGET:TIMEOUT_S. The timeout is after the last
// colon, so targets may be SIP URIs with ports.
func parseFollowMe(spec string) (admin.FollowMeTarget, error) {
	i := strings.LastIndexByte(spec, ':')
	if i > 0 {
		if n, err := strconv.Atoi(spec[i+1:]); err == nil {
			return admin.FollowMeTarget{Target: spec[:i], TimeoutS: n}, nil
		}
	}
	return admin.FollowMeTarget{}, fmt.Errorf("--follow-me %q: write TARGET:TIMEOUT_S, e.g. 1002:20 or sip:desk@pbx.example.com:30", spec)
}

// incomingText is an account's delivery as the account table shows it.
func incomingText(in admin.Incoming) string {
	if in.Mode != "static" {
		return in.Mode
	}
	return fmt.Sprintf("static %s:%s", in.Transport, net.JoinHostPort(in.Host, strconv.Itoa(in.Port)))
}

// followMeText is a follow-me list as the account table shows it.
func followMeText(fm []admin.FollowMeTarget) string {
	if len(fm) == 0 {
		return "-"
	}
	s := make([]string, len(fm))
	for i, f := range fm {
		s[i] = fmt.Sprintf("%s:%d", f.Target, f.TimeoutS)
	}
	return strings.Join(s, ",")
}
