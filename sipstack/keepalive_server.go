package sipstack

import (
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack/keepalive"
)

// KeepaliveConfig configures the NAT keepalive (keepalive.Config).
type KeepaliveConfig = keepalive.Config

// KeepaliveStatus is what this node's keepalive knows of a binding
// (keepalive.Status).
type KeepaliveStatus = keepalive.Status

// KeepaliveStatus returns what this node's keepalive knows of b: false
// when this node does not ping it (another node holds the socket it
// registered through, the keepalive is off, or b is new to it).
func (s *Server) KeepaliveStatus(b fsm.Binding) (KeepaliveStatus, bool) { return s.keep.Status(b) }
