package sipstack

import (
	"net/netip"

	"github.com/troika-sip/troika/sipstack/auth"
)

// AuthBlocks lists the sources this node's authentication blocks and the
// user names it throttles (auth.Authenticator.Blocks).
func (s *Server) AuthBlocks() ([]auth.BlockedSource, []auth.ThrottledUser) {
	return s.auth.Blocks(s.cfg.Now())
}

// UnblockSource lifts this node's block of ip.
func (s *Server) UnblockSource(ip netip.Addr) bool { return s.auth.UnblockSource(ip) }

// UnthrottleUser refills user's guesses on this node.
func (s *Server) UnthrottleUser(user string) bool { return s.auth.UnthrottleUser(user, s.cfg.Now()) }
