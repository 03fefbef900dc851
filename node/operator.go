package node

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/sipstack"
)

var _ admin.Operator = (*Node)(nil)

// HangupCall implements admin.Operator.
func (n *Node) HangupCall(id string) error {
	switch err := n.sip.HangupCall(id); {
	case errors.Is(err, sipstack.ErrCallNotHere):
		return fmt.Errorf("%w: %v", admin.ErrCallNotHere, err)
	case errors.Is(err, sipstack.ErrCallNotAnswered):
		return fmt.Errorf("%w: %v", admin.ErrCallNotAnswered, err)
	default:
		return err
	}
}

// AuthBlocks implements admin.Operator.
func (n *Node) AuthBlocks() admin.AuthBlocks {
	srcs, users := n.sip.AuthBlocks()
	out := admin.AuthBlocks{Sources: make([]admin.BlockedSource, 0, len(srcs)), Users: make([]admin.ThrottledUser, 0, len(users))}
	for _, s := range srcs {
		out.Sources = append(out.Sources, admin.BlockedSource{Source: s.Source, Until: s.Until.UTC().Format(time.RFC3339)})
	}
	for _, u := range users {
		out.Users = append(out.Users, admin.ThrottledUser{User: u.User, RetryAt: u.RetryAt.UTC().Format(time.RFC3339)})
	}
	return out
}

// UnblockSource implements admin.Operator.
func (n *Node) UnblockSource(ip netip.Addr) bool { return n.sip.UnblockSource(ip) }

// UnthrottleUser implements admin.Operator.
func (n *Node) UnthrottleUser(user string) bool { return n.sip.UnthrottleUser(user) }
